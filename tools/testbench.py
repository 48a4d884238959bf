#!/usr/bin/env python3
"""The test bench: a running Docker engine and Debian base images that boot systemd as PID 1.

Used by `make lab`, `make test` and CI. Every step is idempotent:
  engine   make sure a Docker engine answers (install Debian's docker.io, start dockerd)
  images   build each base image with debootstrap + `docker import`, only when its recipe changed
  all      both of the above

The Debian mirror is the one this machine's apt already uses (override with DEBIAN_MIRROR).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

IMAGE_REPOSITORY = "monstack/debian"
RECIPE_LABEL = "io.monstack.recipe"
SUITES = ("bookworm", "trixie")
ENGINE_START_TIMEOUT = 90  # seconds for dockerd to answer after it is started
DOCKERD_LOG = Path("/var/log/monstack-dockerd.log")

# What every bench host carries: systemd as init, Python for Ansible, python3-apt for the apt module,
# sudo for tasks that become an unprivileged user (postgres), as on any host Ansible manages, an SSH
# server for the scenarios reached as production is (an unprivileged user with sudo), and the few
# tools the tests use on the host (curl, ss, ps).
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "python3",
    "python3-apt",
    "ca-certificates",
    "curl",
    "iproute2",
    "procps",
    "gnupg",
    "sudo",
    "openssh-server",
)
# The account Ansible logs in as on a scenario reached over SSH (molecule/shared/create.yml gives it
# the controller's key), as inventories/production's ansible_user: sudo without a password, no
# password of its own, so only a key logs in.
BENCH_USER = "deploy"

# Units that cannot work inside a container and would leave systemd "degraded": no kernel config
# filesystem, no consoles, no udev-managed devices, no fstab-driven remount of a read-only root.
# Measured: without these masks Debian 13 boots "degraded" because systemd-modules-load.service
# fails (a container cannot load kernel modules); the others are masked for the same reason.
MASKED_UNITS = (
    "systemd-remount-fs.service",
    "sys-kernel-config.mount",
    "sys-kernel-debug.mount",
    "sys-kernel-tracing.mount",
    "dev-hugepages.mount",
    "systemd-firstboot.service",
    "systemd-udevd.service",
    "systemd-udev-trigger.service",
    "systemd-modules-load.service",
    "getty.target",
    "console-getty.service",
    "systemd-logind.service",
    "e2scrub_reap.service",
)

# Shell run inside the new root before it is packed. Part of the recipe: changing it rebuilds the image.
FIXUP_SCRIPT = f"""
set -eu
for unit in {" ".join(MASKED_UNITS)}; do ln -sf /dev/null "/etc/systemd/system/$unit"; done
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id
printf 'APT::Install-Recommends "false";\\nAPT::Install-Suggests "false";\\n' > /etc/apt/apt.conf.d/80-bench-no-recommends
useradd --create-home --shell /bin/bash {BENCH_USER}
printf '{BENCH_USER} ALL=(ALL) NOPASSWD: ALL\\n' > /etc/sudoers.d/{BENCH_USER}
chmod 0440 /etc/sudoers.d/{BENCH_USER}
printf 'PasswordAuthentication no\\nPermitRootLogin no\\n' > /etc/ssh/sshd_config.d/bench.conf
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
# An old timestamp, so Ansible's apt cache_valid_time sees the emptied lists as stale, not fresh.
touch -d @0 /var/lib/apt/lists
"""


def log(message: str) -> None:
    print(f"testbench: {message}", file=sys.stderr, flush=True)


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, **kwargs)


def engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"],
                           capture_output=True, text=True, timeout=30, check=False)
    return probe.returncode == 0


def apt_install(packages: list[str]) -> None:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run(["apt-get", "update", "-qq"], env=env)
    run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages], env=env)


def ensure_ssh_client() -> None:
    """The controller's SSH client, for the scenarios reached over SSH."""
    if shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        log("installing Debian's openssh-client")
        apt_install(["openssh-client"])


def ensure_engine() -> None:
    ensure_ssh_client()
    if engine_answers():
        return
    if shutil.which("dockerd") is None:
        log("installing Debian's docker.io")
        apt_install(["docker.io"])
    if engine_answers():
        return
    log(f"starting dockerd (log: {DOCKERD_LOG})")
    with DOCKERD_LOG.open("ab") as sink:
        subprocess.Popen(["dockerd"], stdout=sink, stderr=sink, stdin=subprocess.DEVNULL,
                         start_new_session=True)
    deadline = time.monotonic() + ENGINE_START_TIMEOUT
    while time.monotonic() < deadline:
        if engine_answers():
            return
        time.sleep(1)
    sys.exit(f"testbench: dockerd did not answer within {ENGINE_START_TIMEOUT}s; see {DOCKERD_LOG}")


def debian_mirror() -> str:
    """The mirror this machine's apt uses, so the bench reaches exactly what the host reaches."""
    if os.environ.get("DEBIAN_MIRROR"):
        return os.environ["DEBIAN_MIRROR"]
    sources = sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    for path in sources:
        for line in path.read_text().splitlines():
            match = re.match(r"URIs:\s*(\S+/debian)/?\s*$", line)
            if match:
                return match.group(1)
    legacy = Path("/etc/apt/sources.list")
    if legacy.exists():
        for line in legacy.read_text().splitlines():
            match = re.match(r"deb\s+(?:\[[^]]*\]\s+)?(\S+/debian)/?\s", line)
            if match:
                return match.group(1)
    sys.exit("testbench: no Debian mirror found in /etc/apt; set DEBIAN_MIRROR")


def recipe(suite: str) -> dict:
    return {"suite": suite, "packages": PACKAGES, "fixup": FIXUP_SCRIPT, "format": 1}


def recipe_digest(suite: str) -> str:
    blob = json.dumps(recipe(suite), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def image_name(suite: str) -> str:
    return f"{IMAGE_REPOSITORY}:{suite}"


def current_digest(suite: str) -> str | None:
    probe = subprocess.run(
        ["docker", "image", "inspect", "--format", f'{{{{index .Config.Labels "{RECIPE_LABEL}"}}}}',
         image_name(suite)], capture_output=True, text=True, check=False)
    return probe.stdout.strip() if probe.returncode == 0 else None


def build_image(suite: str, digest: str) -> None:
    if shutil.which("debootstrap") is None:
        log("installing debootstrap")
        apt_install(["debootstrap"])
    mirror = debian_mirror()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"bench-{suite}-") as workdir:
        root = Path(workdir) / "root"
        log(f"debootstrap {suite} from the host's mirror")
        run(["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", suite,
             str(root), mirror], stdout=subprocess.DEVNULL)
        run(["chroot", str(root), "/bin/sh", "-c", FIXUP_SCRIPT])
        changes = [
            'CMD ["/sbin/init"]',
            "ENV container=docker",
            f"LABEL {RECIPE_LABEL}={digest}",
        ]
        tar = subprocess.Popen(["tar", "-C", str(root), "--numeric-owner", "-c", "."],
                               stdout=subprocess.PIPE)
        command = ["docker", "import"]
        for change in changes:
            command += ["--change", change]
        run([*command, "-", image_name(suite)], stdin=tar.stdout, stdout=subprocess.DEVNULL)
        if tar.wait() != 0:
            sys.exit(f"testbench: packing the {suite} root failed")
    log(f"built {image_name(suite)} (recipe {digest}) in {time.monotonic() - started:.0f}s")


def ensure_images(suites: list[str]) -> None:
    for suite in suites:
        digest = recipe_digest(suite)
        if current_digest(suite) == digest:
            log(f"{image_name(suite)} is current (recipe {digest})")
            continue
        build_image(suite, digest)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=("engine", "images", "all"))
    parser.add_argument("--suite", action="append", choices=SUITES,
                        help="build only this suite (repeatable); default: all")
    args = parser.parse_args()
    if args.step in ("engine", "all"):
        ensure_engine()
    if args.step in ("images", "all"):
        ensure_engine()
        ensure_images(args.suite or list(SUITES))


if __name__ == "__main__":
    main()
