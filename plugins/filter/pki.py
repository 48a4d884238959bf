"""Whether a host's certificate from the internal CA still holds (roles/pki).

roles/pki keeps the CA and every host's key, request and certificate on the controller, made by
community.crypto modules: seven module runs per host on every rerun just to find them unchanged.
This reads the same files in the worker, with no module run: when the certificate is signed by the
CA, matches the host's key, names exactly the names wanted and stays valid beyond the renewal
window, the issuing steps have nothing to do and are skipped. Anything else (a file missing or
unreadable, a new name, an approaching end) sends the host through those steps as before.
"""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


def _wanted_names(subject_alt_names) -> set:
    """'DNS:name' and 'IP:address' strings -> a comparable set."""
    names = set()
    for entry in subject_alt_names:
        kind, _, value = str(entry).partition(":")
        if kind == "IP":
            names.add(("IP", ipaddress.ip_address(value)))
        else:
            names.add((kind, value.lower()))
    return names


def _certificate_names(certificate) -> set:
    try:
        extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return ({("DNS", name.lower()) for name in extension.get_values_for_type(x509.DNSName)}
            | {("IP", address) for address in extension.get_values_for_type(x509.IPAddress)})


def pki_certificate_current(host_base, ca_dir, subject_alt_names, renew_days, now=None) -> bool:
    """True when <host_base>.crt is the CA's, for <host_base>.key, with exactly these names, valid
    beyond renew_days from now, and the CA's own files (key, request, certificate) are in place."""
    host, ca = Path(str(host_base)), Path(str(ca_dir))
    try:
        if not all(path.is_file() for path in (ca / "ca.key", ca / "ca.csr", Path(f"{host}.csr"))):
            return False
        ca_cert = x509.load_pem_x509_certificate((ca / "ca.crt").read_bytes())
        cert = x509.load_pem_x509_certificate(Path(f"{host}.crt").read_bytes())
        key = serialization.load_pem_private_key(Path(f"{host}.key").read_bytes(), password=None)
        public = ca_cert.public_key()
        if not isinstance(public, ec.EllipticCurvePublicKey) or cert.issuer != ca_cert.subject:
            return False
        public.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
    except (OSError, ValueError, TypeError, InvalidSignature):
        return False
    now = now or datetime.datetime.now(datetime.timezone.utc)
    same_key = (cert.public_key().public_bytes(serialization.Encoding.DER,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
                == key.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo))
    return (same_key and _certificate_names(cert) == _wanted_names(subject_alt_names)
            and cert.not_valid_after_utc > now + datetime.timedelta(days=int(renew_days))
            and ca_cert.not_valid_after_utc > now)


class FilterModule:
    def filters(self):
        return {"pki_certificate_current": pki_certificate_current}
