"""A local certificate authority and the server certificates it signs, for the TLS listeners of the
development stack (Kafka's SASL_SSL listener, PostgreSQL's `ssl = on`).

Idempotent: a call with nothing to change changes nothing. A certificate is issued again when it is
missing, signed by another CA, names other hosts, or expires within RENEW_BEFORE. Private keys are
written 0600 and never replaced in place (a new file is renamed over the old one), in directories
made 0700; a directory that is a symlink is refused.

Clients trust the CA's certificate (`ca.crt`): KAFKA_SSL_CAFILE, and `sslrootcert=` in DATABASE_URL.
"""

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from config import private_dir

CA_NAME = "order-service development CA"
CA_LIFETIME = datetime.timedelta(days=3650)
SERVER_LIFETIME = datetime.timedelta(days=730)
RENEW_BEFORE = datetime.timedelta(days=30)


@dataclass(frozen=True)
class CertificateAuthority:
    cert_path: Path
    key_path: Path
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey



def write_file(path: Path, data: bytes, mode: int, owner: tuple[int, int] | None = None) -> None:
    """Write `data` to a new file with `mode` (and `owner`, as root), then rename it over `path`:
    no reader ever sees a half-written file or a key with looser permissions."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        os.fchmod(descriptor, mode)  # exactly `mode`, whatever the umask
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
        if owner is not None:
            os.chown(temporary, *owner)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _new_key() -> ec.EllipticCurvePrivateKey:
    # P-256: accepted by Java (Kafka's PEM key store), OpenSSL (PostgreSQL) and Python's ssl.
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    # PKCS#8, unencrypted: the form Kafka's PEM key store reads without ssl.key.password.
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _fresh(certificate: x509.Certificate) -> bool:
    return certificate.not_valid_after_utc - _now() > RENEW_BEFORE


def ensure_ca(directory: Path) -> CertificateAuthority:
    """The CA in `directory` (ca.crt, ca.key), created when missing or about to expire."""
    private_dir(directory)
    cert_path, key_path = directory / "ca.crt", directory / "ca.key"
    if cert_path.exists() and key_path.exists():
        certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if _fresh(certificate):
            return CertificateAuthority(cert_path, key_path, certificate, key)
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME)])
    start = _now() - datetime.timedelta(minutes=5)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(start + CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False, key_agreement=False,
                                     key_cert_sign=True, crl_sign=True, encipher_only=False,
                                     decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    write_file(key_path, _key_pem(key), 0o600)
    write_file(cert_path, certificate.public_bytes(serialization.Encoding.PEM), 0o644)
    return CertificateAuthority(cert_path, key_path, certificate, key)


def _subject_alternative_names(hosts: list[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def _issued_by_for(certificate: x509.Certificate, ca: CertificateAuthority, hosts: list[str]) -> bool:
    """`certificate` was signed by `ca`, names exactly `hosts`, and is not about to expire."""
    try:
        certificate.verify_directly_issued_by(ca.certificate)
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    return set(names) == set(_subject_alternative_names(hosts)) and _fresh(certificate)


def ensure_server_certificate(ca: CertificateAuthority, key_path: Path, cert_path: Path, hosts: list[str],
                              owner: tuple[int, int] | None = None) -> bool:
    """A key and a certificate for `hosts` signed by `ca` at these paths (owned by `owner` when
    given: a server that runs as another user must own its key). True when they were (re)issued."""
    if key_path.exists() and cert_path.exists():
        current = x509.load_pem_x509_certificate(cert_path.read_bytes())
        if _issued_by_for(current, ca, hosts):
            return False
    key = _new_key()
    start = _now() - datetime.timedelta(minutes=5)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca.certificate.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(start + SERVER_LIFETIME)
        .add_extension(x509.SubjectAlternativeName(_subject_alternative_names(hosts)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
                       critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    write_file(key_path, _key_pem(key), 0o600, owner)
    write_file(cert_path, certificate.public_bytes(serialization.Encoding.PEM), 0o644, owner)
    return True
