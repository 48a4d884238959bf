"""plugins/filter/pki.py: whether a host's certificate from the internal CA still holds, on a CA and a
host certificate made here with the cryptography package, laid out as roles/pki lays them out."""

from __future__ import annotations

import datetime
import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import load_module

pki = load_module("plugins/filter/pki.py", "monstack_pki_filter")

NAMES = ["DNS:web1", "DNS:localhost", "IP:127.0.0.1", "IP:::1"]
NOW = datetime.datetime.now(datetime.timezone.utc)


def new_key():
    return ec.generate_private_key(ec.SECP384R1())


def write_key(path, key):
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))


def write_cert(path, cert):
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def make_ca(key, name="monstack CA"):
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - datetime.timedelta(days=1)).not_valid_after(NOW + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA384()))


def make_host_cert(host_key, ca_cert, ca_key, days=30):
    alt_names = [x509.DNSName("web1"), x509.DNSName("localhost"),
                 x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.IPAddress(ipaddress.ip_address("::1"))]
    return (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "web1")]))
            .issuer_name(ca_cert.subject).public_key(host_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - datetime.timedelta(days=1)).not_valid_after(NOW + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
            .sign(ca_key, hashes.SHA384()))


@pytest.fixture
def layout(tmp_path):
    """A CA in tmp_path/ca and host web1 in tmp_path/hosts, as roles/pki keeps them on the controller."""
    ca_dir, hosts = tmp_path / "ca", tmp_path / "hosts"
    ca_dir.mkdir()
    hosts.mkdir()
    ca_key, host_key = new_key(), new_key()
    ca_cert = make_ca(ca_key)
    write_key(ca_dir / "ca.key", ca_key)
    (ca_dir / "ca.csr").write_text("request\n")
    write_cert(ca_dir / "ca.crt", ca_cert)
    write_key(hosts / "web1.key", host_key)
    (hosts / "web1.csr").write_text("request\n")
    write_cert(hosts / "web1.crt", make_host_cert(host_key, ca_cert, ca_key))
    return {"host_base": hosts / "web1", "ca_dir": ca_dir, "ca_key": ca_key, "ca_cert": ca_cert, "host_key": host_key}


def current(layout, names=NAMES, renew_days=7):
    return pki.pki_certificate_current(layout["host_base"], layout["ca_dir"], names, renew_days)


def test_a_certificate_that_holds_is_current(layout):
    assert current(layout) is True
    assert pki.pki_certificate_current(str(layout["host_base"]), str(layout["ca_dir"]), NAMES, "7") is True


def test_the_names_are_compared_as_a_set(layout):
    assert current(layout, names=list(reversed(NAMES))) is True
    assert current(layout, names=["DNS:WEB1", "DNS:localhost", "IP:127.0.0.1", "IP:0:0:0:0:0:0:0:1"]) is True


def test_a_new_name_is_not_current(layout):
    assert current(layout, names=[*NAMES, "DNS:web1.example.org"]) is False


def test_a_dropped_name_is_not_current(layout):
    assert current(layout, names=NAMES[:-1]) is False


def test_a_certificate_ending_within_the_renewal_window_is_not_current(layout):
    assert current(layout, renew_days=29) is True
    assert current(layout, renew_days=40) is False


def test_a_certificate_of_another_ca_is_not_current(layout):
    # Same subject as the real CA, so only the signature tells them apart.
    other_key = new_key()
    other_ca = make_ca(other_key)
    write_cert(layout["host_base"].with_suffix(".crt"), make_host_cert(layout["host_key"], other_ca, other_key))
    assert current(layout) is False


def test_a_certificate_of_a_differently_named_ca_is_not_current(layout):
    other_key = new_key()
    other_ca = make_ca(other_key, name="another CA")
    write_cert(layout["host_base"].with_suffix(".crt"), make_host_cert(layout["host_key"], other_ca, other_key))
    assert current(layout) is False


def test_a_certificate_for_another_key_is_not_current(layout):
    write_key(layout["host_base"].with_suffix(".key"), new_key())
    assert current(layout) is False


@pytest.mark.parametrize("missing", ["ca/ca.key", "ca/ca.csr", "ca/ca.crt", "hosts/web1.key", "hosts/web1.csr",
                                     "hosts/web1.crt"])
def test_a_missing_file_is_not_current(layout, missing):
    (layout["ca_dir"].parent / missing).unlink()
    assert current(layout) is False


def test_an_unreadable_certificate_is_not_current(layout):
    layout["host_base"].with_suffix(".crt").write_text("not a certificate\n")
    assert current(layout) is False


def test_the_filter_is_registered():
    assert pki.FilterModule().filters()["pki_certificate_current"] is pki.pki_certificate_current
