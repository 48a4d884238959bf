#!/usr/bin/env python3
"""Put one program of a Debian package into a directory, without installing the package.

    tools/debian_tool.py prometheus promtool .venv/bin

The controller's tests need promtool (`promtool test rules`), which PyPI does not carry; Debian's
archive, which this project may reach, does. The package is downloaded with `apt-get download`
(refreshing the package lists once if they are missing or stale), unpacked with `dpkg-deb -x`, and
only the program is copied out. Prints the program's version.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

TIMEOUT = 600  # seconds for one apt-get call


def run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT, check=False,
                          stdin=subprocess.DEVNULL)


def download(package: str, workdir: Path) -> Path:
    fetched = run(["apt-get", "download", package], cwd=workdir)
    if fetched.returncode != 0:
        refreshed = run(["apt-get", "update", "-qq"])
        if refreshed.returncode != 0:
            sys.exit(f"debian_tool: apt-get update failed:\n{refreshed.stderr}")
        fetched = run(["apt-get", "download", package], cwd=workdir)
    debs = sorted(workdir.glob(f"{package}_*.deb"))
    if fetched.returncode != 0 or not debs:
        sys.exit(f"debian_tool: apt-get download {package} failed:\n{fetched.stderr}")
    return debs[0]


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        sys.exit(__doc__)
    package, program, dest_dir = argv
    with tempfile.TemporaryDirectory(prefix="debian-tool-") as tmp:
        workdir = Path(tmp)
        deb = download(package, workdir)
        unpacked = run(["dpkg-deb", "-x", str(deb), str(workdir / "root")])
        if unpacked.returncode != 0:
            sys.exit(f"debian_tool: dpkg-deb -x {deb.name} failed:\n{unpacked.stderr}")
        source = workdir / "root" / "usr" / "bin" / program
        if not source.is_file():
            sys.exit(f"debian_tool: {deb.name} has no usr/bin/{program}")
        target = Path(dest_dir) / program
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
        target.chmod(0o755)
    version = run([str(target), "--version"])
    print(f"{target}: {(version.stdout or version.stderr).splitlines()[0]} (from {deb.name})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
