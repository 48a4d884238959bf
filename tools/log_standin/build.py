#!/usr/bin/env python3
"""Build the bench-only stand-in .debs of Loki, Grafana Alloy and Promtail (see standin.py) in upstream's
package layouts.

    python3 tools/log_standin/build.py <output directory>

Writes <name>_<version>_all.deb and <name>.deb.sha256 for loki, alloy and promtail into the directory
(molecule's artifact directory: outside the repository, never committed). Each package carries the
one stand-in program under the binary's name and, verbatim from upstream (tests/reference/logs), the
packaged unit, the maintainer script that creates the user, and the default configuration, at
upstream's paths: Loki and Promtail as their nfpm packages lay them out (the unit in
/etc/systemd/system, a postinst that enables and restarts it), Alloy as its deb does (the unit in
/usr/lib/systemd/system, /etc/default/alloy, a postinst that adds alloy to adm and systemd-journal).
So the roles install them exactly as they install the real packages, by the same tasks.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REFERENCE = HERE.parents[1] / "tests" / "reference" / "logs"
VERSION = "0.0.0+monstack.standin"


def _control(name: str, depends: str, what: str) -> str:
    return f"""\
Package: {name}
Version: {VERSION}
Architecture: all
Maintainer: monstack test bench <bench@monstack.invalid>
Depends: {depends}
Section: default
Priority: optional
Description: Bench-only stand-in for {what} (NOT {what})
 Answers the readiness and metrics paths on the port and TLS settings of the
 configuration the monstack role rendered, so the molecule scenario can test
 the role where {what} cannot be obtained. Never install it anywhere else.
"""


def _nfpm_layout(name: str, what: str, default_config: str) -> tuple:
    """Loki's and Promtail's packages (nfpm): the unit in /etc/systemd/system, the configuration in
    /etc/<name>/config.yml, a postinst that adds the user and enables and restarts the unit."""
    return ("python3, python3-yaml, adduser", what, {
        f"usr/bin/{name}": (None, 0o755),
        f"etc/systemd/system/{name}.service": (f"{name}/packaging/{name}.service", 0o644),
        f"etc/{name}/config.yml": (default_config, 0o644),
        "DEBIAN/postinst": (f"{name}/packaging/{name}-postinstall.sh", 0o755),
    }, [f"/etc/{name}/config.yml"])


# name -> (Depends, what it stands in for, {path in package: (reference file or None, mode)}, conffiles)
PACKAGES = {
    "loki": _nfpm_layout("loki", "Grafana Loki", "loki/loki-local-config.yaml.txt"),
    "promtail": _nfpm_layout("promtail", "Promtail", "promtail/packaging/promtail-minimal-config.yaml.txt"),
    "alloy": ("python3, passwd", "Grafana Alloy", {
        "usr/bin/alloy": (None, 0o755),
        "usr/lib/systemd/system/alloy.service": ("alloy/packaging/deb/alloy.service", 0o644),
        "etc/default/alloy": ("alloy/packaging/environment-file", 0o644),
        "etc/alloy/config.alloy": ("alloy/packaging/config.alloy", 0o644),
        "DEBIAN/postinst": ("alloy/packaging/deb/control/postinst", 0o755),
    }, ["/etc/default/alloy", "/etc/alloy/config.alloy"]),
}


def build_one(name: str, out_dir: Path) -> Path:
    depends, what, files, conffiles = PACKAGES[name]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "root"
        for relative, (reference, mode) in files.items():
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            source = HERE / "standin.py" if reference is None else REFERENCE / reference
            path.write_bytes(source.read_bytes())
            path.chmod(mode)
        (root / "DEBIAN/control").write_text(_control(name, depends, what))
        (root / "DEBIAN/conffiles").write_text("".join(f"{path}\n" for path in conffiles))
        deb = out_dir / f"{name}_{VERSION}_all.deb"
        subprocess.run(["fakeroot", "dpkg-deb", "--build", "-Zgzip", str(root), str(deb)] if shutil.which("fakeroot")
                       else ["dpkg-deb", "--root-owner-group", "--build", "-Zgzip", str(root), str(deb)],
                       check=True, capture_output=True)
    (out_dir / f"{name}.deb.sha256").write_text(hashlib.sha256(deb.read_bytes()).hexdigest() + "\n")
    return deb


def build(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    return [build_one(name, out_dir) for name in sorted(PACKAGES)]


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    for deb in build(Path(sys.argv[1])):
        print(deb)
