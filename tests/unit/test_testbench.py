"""tools/testbench.py: when a base image is rebuilt, and which Debian mirror the bench uses."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def fake_etc(testbench, monkeypatch, tmp_path):
    """Point the bench's absolute paths (/etc/apt/...) into tmp_path; returns tmp_path/etc/apt."""
    monkeypatch.delenv("DEBIAN_MIRROR", raising=False)
    monkeypatch.setattr(testbench, "Path", lambda path: tmp_path / str(path).lstrip("/"))
    apt = tmp_path / "etc" / "apt"
    (apt / "sources.list.d").mkdir(parents=True)
    return apt


def test_recipe_digest_is_the_same_on_every_call(testbench):
    assert testbench.recipe_digest("bookworm") == testbench.recipe_digest("bookworm")


def test_recipe_digest_differs_between_suites(testbench):
    assert testbench.recipe_digest("bookworm") != testbench.recipe_digest("trixie")


def test_recipe_digest_changes_when_the_package_list_changes(testbench, monkeypatch):
    before = testbench.recipe_digest("bookworm")
    monkeypatch.setattr(testbench, "PACKAGES", (*testbench.PACKAGES, "strace"))
    after = testbench.recipe_digest("bookworm")
    assert before != after, "adding a package must rebuild the image, so its recipe digest must change"


def test_recipe_digest_changes_when_the_fixup_script_changes(testbench, monkeypatch):
    before = testbench.recipe_digest("trixie")
    monkeypatch.setattr(testbench, "FIXUP_SCRIPT", testbench.FIXUP_SCRIPT + "true\n")
    assert testbench.recipe_digest("trixie") != before


def test_debian_mirror_from_the_environment_wins(testbench, monkeypatch):
    monkeypatch.setenv("DEBIAN_MIRROR", "http://mirror.example.net/debian")
    assert testbench.debian_mirror() == "http://mirror.example.net/debian"


def test_debian_mirror_is_read_from_a_deb822_sources_file(testbench, fake_etc):
    (fake_etc / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\n"
        "URIs: http://deb.example.net/debian/\n"
        "Suites: bookworm bookworm-updates\n"
        "Components: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    )
    assert testbench.debian_mirror() == "http://deb.example.net/debian"


def test_debian_mirror_is_read_from_a_legacy_sources_list(testbench, fake_etc):
    (fake_etc / "sources.list").write_text(
        "# the mirror\n"
        "deb [arch=amd64 signed-by=/usr/share/keyrings/debian.gpg] http://legacy.example.net/debian bookworm main\n"
    )
    assert testbench.debian_mirror() == "http://legacy.example.net/debian"


def test_debian_mirror_missing_everywhere_stops_with_advice(testbench, fake_etc):
    with pytest.raises(SystemExit, match="set DEBIAN_MIRROR"):
        testbench.debian_mirror()


def test_debian_mirror_on_this_machine_is_a_debian_archive_url(testbench, monkeypatch):
    apt = Path("/etc/apt")
    if not list((apt / "sources.list.d").glob("*.sources")) and not (apt / "sources.list").exists():
        pytest.skip("this machine has no apt sources")
    monkeypatch.delenv("DEBIAN_MIRROR", raising=False)
    mirror = testbench.debian_mirror()
    assert mirror.startswith(("http://", "https://")) and mirror.endswith("/debian"), f"mirror found: {mirror}"
