#!/usr/bin/env python3
"""Put programs of a Debian package into a directory, without installing the package.

    tools/debian_tool.py PACKAGE PROGRAM [PROGRAM...] DEST_DIR
    tools/debian_tool.py prometheus promtool .venv/bin
    tools/debian_tool.py prometheus-alertmanager amtool .venv/bin
    tools/debian_tool.py victoria-metrics victoria-metrics vmbackup vmrestore .venv/bin

The controller's tests need promtool and amtool, which PyPI does not carry; Debian's archive does.
The package is fetched with `apt-get download` into a temporary directory (after `apt-get update`
only when the package lists are missing or do not know the package), unpacked with `dpkg-deb -x`,
and each usr/bin/PROGRAM is copied to DEST_DIR. Prints each program's version. Standard library only.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

TIMEOUT = 600  # seconds for one apt-get call
# What apt-get download says when its package lists are missing or predate the package.
LISTS_MISSING = ("Unable to locate package", "has no installation candidate", "Can't select candidate version",
                 "No packages found")


def run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT, check=False,
                          stdin=subprocess.DEVNULL)


def download(package: str, workdir: Path) -> Path:
    fetched = run(["apt-get", "download", package], cwd=workdir)
    if fetched.returncode != 0 and any(text in fetched.stderr for text in LISTS_MISSING):
        refreshed = run(["apt-get", "update", "-qq"])
        if refreshed.returncode != 0:
            sys.exit(f"debian_tool: the package lists do not know {package}, and apt-get update failed "
                     f"(it needs root):\n{refreshed.stderr}")
        fetched = run(["apt-get", "download", package], cwd=workdir)
    debs = sorted(workdir.glob(f"{package}_*.deb"))
    if fetched.returncode != 0 or not debs:
        sys.exit(f"debian_tool: apt-get download {package} failed:\n{fetched.stderr}")
    return debs[0]


def install(root: Path, deb: Path, program: str, dest_dir: str) -> None:
    target = Path(dest_dir) / program
    source = root / "usr" / "bin" / program
    if not source.is_file():
        sys.exit(f"debian_tool: {deb.name} has no usr/bin/{program}")
    target.parent.mkdir(parents=True, exist_ok=True)
    # Copied beside the target and renamed once it runs: make never takes a broken or half-written
    # program for an up-to-date one. A fresh modification time (not the package's) is what tells
    # make that the target is newer than this script.
    partial = target.with_name(f".{program}.partial")
    shutil.copyfile(source, partial)
    partial.chmod(0o755)
    version = run([str(partial), "--version"])
    if version.returncode != 0:
        partial.unlink()
        sys.exit(f"debian_tool: {program} --version failed:\n{version.stdout}{version.stderr}")
    partial.replace(target)
    # Debian's VictoriaMetrics programs print an empty version.
    first_line = ((version.stdout or version.stderr).strip().splitlines() or ["no version printed"])[0]
    print(f"{target}: {first_line} (from {deb.name})")


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        sys.exit(__doc__)
    package, programs, dest_dir = argv[0], argv[1:-1], argv[-1]
    with tempfile.TemporaryDirectory(prefix="debian-tool-") as tmp:
        workdir = Path(tmp)
        deb = download(package, workdir)
        unpacked = run(["dpkg-deb", "-x", str(deb), str(workdir / "root")])
        if unpacked.returncode != 0:
            sys.exit(f"debian_tool: dpkg-deb -x {deb.name} failed:\n{unpacked.stderr}")
        for program in programs:
            install(workdir / "root", deb, program, dest_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
