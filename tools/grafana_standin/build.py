#!/usr/bin/env python3
"""Build the bench-only Grafana stand-in .deb (see grafana.py) in upstream's package layout.

    python3 tools/grafana_standin/build.py <output directory>

Writes grafana_<version>_all.deb and grafana.deb.sha256 into the directory (molecule's artifact
directory: outside the repository, never committed). The layout follows upstream's Debian package
(tests/reference/grafana/packaging): /usr/share/grafana/{bin/grafana,conf/defaults.ini},
/usr/sbin/grafana-server, /etc/default/grafana-server, grafana-server.service, a postinst that
creates the grafana user and group and /var/lib/grafana, /var/log/grafana and /etc/grafana the way
upstream's does, and that never starts the service. So the role installs it exactly as it installs
the real package, by the same tasks.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
VERSION = "0.0.0+monstack.standin"

CONTROL = f"""\
Package: grafana
Version: {VERSION}
Architecture: all
Maintainer: monstack test bench <bench@monstack.invalid>
Depends: python3, adduser
Section: default
Priority: optional
Description: Bench-only stand-in for Grafana (NOT Grafana)
 Answers /api/health and /metrics on the port and TLS settings of grafana.ini,
 so the monstack molecule scenario can test the role where Grafana cannot be
 obtained. Never install it anywhere else.
"""

# Upstream's /etc/default/grafana-server, plus the provisioning directory newer packages name.
DEFAULTS = """\
GRAFANA_USER=grafana
GRAFANA_GROUP=grafana
GRAFANA_HOME=/usr/share/grafana
LOG_DIR=/var/log/grafana
DATA_DIR=/var/lib/grafana
MAX_OPEN_FILES=10000
CONF_DIR=/etc/grafana
CONF_FILE=/etc/grafana/grafana.ini
RESTART_ON_UPGRADE=true
PLUGINS_DIR=/var/lib/grafana/plugins
PROVISIONING_CFG_DIR=/etc/grafana/provisioning
PID_FILE_DIR=/var/run/grafana
"""

# Upstream's packaged unit (tests/reference/grafana/packaging/grafana-server.service), not hardened;
# the role's unit in /etc/systemd/system replaces it.
UNIT = """\
[Unit]
Description=Grafana instance (bench stand-in)
Wants=network-online.target
After=network-online.target

[Service]
EnvironmentFile=/etc/default/grafana-server
User=grafana
Group=grafana
Type=simple
Restart=on-failure
WorkingDirectory=/usr/share/grafana
ExecStart=/usr/sbin/grafana-server --config=${CONF_FILE} --homepath=${GRAFANA_HOME} --packaging=deb

[Install]
WantedBy=multi-user.target
"""

# What upstream's postinst does on configure (user, group, directories, owners, modes), without the
# sample files; like upstream, it does not start the service on a first install.
POSTINST = """\
#!/bin/sh
set -e
[ -f /etc/default/grafana-server ] && . /etc/default/grafana-server
if [ "$1" = configure ]; then
  if ! getent group "$GRAFANA_GROUP" > /dev/null 2>&1; then
    addgroup --system "$GRAFANA_GROUP" --quiet
  fi
  if ! id "$GRAFANA_USER" > /dev/null 2>&1; then
    adduser --system --home "$GRAFANA_HOME" --no-create-home --ingroup "$GRAFANA_GROUP" \\
      --disabled-password --shell /bin/false "$GRAFANA_USER"
  fi
  mkdir -p /var/log/grafana "$DATA_DIR" "$PROVISIONING_CFG_DIR/dashboards" "$PROVISIONING_CFG_DIR/datasources"
  chown -R "$GRAFANA_USER":"$GRAFANA_GROUP" /var/log/grafana "$DATA_DIR"
  chmod 755 /var/log/grafana "$DATA_DIR"
  [ -f "$CONF_FILE" ] || cp "$GRAFANA_HOME/conf/sample.ini" "$CONF_FILE"
  chown -Rh root:"$GRAFANA_GROUP" /etc/grafana/*
  chmod 755 /etc/grafana
  find /etc/grafana -type f -exec chmod 640 {} ';'
fi
"""

WRAPPER = """\
#!/bin/sh
# As upstream's /usr/sbin/grafana-server since 10.x: the single binary's server command.
exec /usr/share/grafana/bin/grafana server "$@"
"""


def build(out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "root"
        files = {
            "DEBIAN/control": (CONTROL, 0o644),
            "DEBIAN/postinst": (POSTINST, 0o755),
            "etc/default/grafana-server": (DEFAULTS, 0o644),
            "usr/lib/systemd/system/grafana-server.service": (UNIT, 0o644),
            "usr/sbin/grafana-server": (WRAPPER, 0o755),
            "usr/share/grafana/bin/grafana": ((HERE / "grafana.py").read_text(), 0o755),
            "usr/share/grafana/conf/defaults.ini":
                ((REPO / "tests/reference/grafana/defaults.ini").read_text(), 0o644),
            "usr/share/grafana/conf/sample.ini": ("; see /usr/share/grafana/conf/defaults.ini\n", 0o644),
        }
        for relative, (content, mode) in files.items():
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
            path.chmod(mode)
        (root / "DEBIAN/conffiles").write_text("/etc/default/grafana-server\n")
        deb = out_dir / f"grafana_{VERSION}_all.deb"
        subprocess.run(["fakeroot", "dpkg-deb", "--build", "-Zgzip", str(root), str(deb)] if shutil.which("fakeroot")
                       else ["dpkg-deb", "--root-owner-group", "--build", "-Zgzip", str(root), str(deb)],
                       check=True, capture_output=True)
    (out_dir / "grafana.deb.sha256").write_text(hashlib.sha256(deb.read_bytes()).hexdigest() + "\n")
    return deb


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    print(build(Path(sys.argv[1])))
