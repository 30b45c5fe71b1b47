"""The relay's certificate: the user's files, or a self-signed one generated once and kept.

Devices rarely validate certificates, and those that do take a fingerprint or a certificate to import:
the fingerprint is logged at every start and shown by ``acs-email-bridge smtp cert``. RSA keys, because
many multifunction printers cannot do ECDSA.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import warnings
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from acs_email_core.errors import ConfigError

from .config import SmtpSettings

CERT_NAME, KEY_NAME = "smtp-cert.pem", "smtp-key.pem"
VALID_DAYS = 3650


@dataclass(frozen=True)
class Certificate:
    cert_file: Path
    key_file: Path
    sha256: str  # AA:BB:… as printers' web UIs show it
    sha1: str
    generated: bool


def _fingerprint(cert: x509.Certificate, algorithm: hashes.HashAlgorithm) -> str:
    return ":".join(f"{b:02X}" for b in cert.fingerprint(algorithm))


def _generate(hostname: str, cert_file: Path, key_file: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    alt_names: list[x509.GeneralName] = [x509.DNSName(hostname), x509.DNSName("localhost")]
    alt_names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    # The key first, the certificate last: a crash in between leaves no certificate, so the next start generates
    # both again; each file appears whole or not at all (a half-written one would stop every later start).
    _write_whole(key_file, key_pem, 0o600)
    _write_whole(cert_file, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def _write_whole(path: Path, data: bytes, mode: int) -> None:
    """Write to a temporary file (``mode`` from its first byte: a key is never world-readable), then rename."""
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "wb", opener=lambda name, flags: os.open(name, flags, mode)) as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)


def load_certificate(settings: SmtpSettings) -> Certificate:
    """The configured certificate, or the generated one (created on first use). Blocking."""
    generated = settings.cert_file is None
    cert_file = settings.cert_file or settings.tls_dir / CERT_NAME
    key_file = settings.key_file or settings.tls_dir / KEY_NAME
    if generated and not (cert_file.exists() and key_file.exists()):
        _generate(settings.hostname, cert_file, key_file)
    try:
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot read the SMTP certificate {cert_file}: {err}") from None
    return Certificate(
        cert_file,
        key_file,
        _fingerprint(cert, hashes.SHA256()),
        _fingerprint(cert, hashes.SHA1()),  # noqa: S303 - what old printer UIs display
        generated,
    )


def server_context(certificate: Certificate, minimum: ssl.TLSVersion) -> ssl.SSLContext:
    """A server context; below TLS 1.2 OpenSSL 3 also needs security level 0 for the old ciphers."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    with warnings.catch_warnings():  # Python deprecates TLS 1.0/1.1; some printers speak nothing else
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = minimum
    if minimum < ssl.TLSVersion.TLSv1_2:
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    try:
        context.load_cert_chain(certificate.cert_file, certificate.key_file)
    except (OSError, ssl.SSLError) as err:
        raise ConfigError(f"cannot load the SMTP certificate {certificate.cert_file}: {err}") from None
    return context
