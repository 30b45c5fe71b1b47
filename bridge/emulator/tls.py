"""The emulator's certificates: a local CA (kept, so a client's ``ca_file`` stays valid) and a server cert.

The connection-string flavour of the SDK always speaks HTTPS and Bearer auth refuses plain http
(reference §2.1, §2.3), so the emulator cannot do without TLS.
"""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import trustme
from cryptography import x509

LOOPBACK_IDENTITIES = ("127.0.0.1", "localhost", "::1")
_MIN_VALIDITY = timedelta(days=1)


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path  # server certificate chain (PEM)
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


def _identities_in(cert_pem: bytes) -> set[str]:
    cert = x509.load_pem_x509_certificate(cert_pem)
    if cert.not_valid_after_utc < datetime.now(UTC) + _MIN_VALIDITY:
        return set()
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {*san.get_values_for_type(x509.DNSName), *map(str, san.get_values_for_type(x509.IPAddress))}


def _normalise(identity: str) -> str:
    try:
        return str(ipaddress.ip_address(identity))
    except ValueError:
        return identity.lower()


def _write_secret(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    path.chmod(0o600)


def ensure_tls(directory: Path, extra_identities: Iterable[str] = ()) -> TlsFiles:
    """Reuse the certificates in ``directory`` when they still fit, else (re)issue them. Blocking.

    The server certificate is kept while it covers every identity (so a device pinning it keeps working)
    and is re-issued from the kept CA when a new host name is needed; a new CA is only made when there is
    none (or its key is missing and the server certificate must change).
    """
    directory.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    ca_key = directory / "ca.key"
    wanted = {_normalise(i) for i in (*LOOPBACK_IDENTITIES, *extra_identities)}
    if files.ca.exists() and files.cert.exists() and files.key.exists():
        have = {_normalise(i) for i in _identities_in(files.cert.read_bytes())}
        if wanted <= have:
            return files
    if files.ca.exists() and ca_key.exists():
        ca = trustme.CA.from_pem(files.ca.read_bytes(), ca_key.read_bytes())
    else:
        ca = trustme.CA(organization_name="acs_email emulator")
        files.ca.write_bytes(ca.cert_pem.bytes())
        _write_secret(ca_key, ca.private_key_pem.bytes())
    leaf = ca.issue_cert(*sorted(wanted), common_name="acs_email emulator")
    files.cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    _write_secret(files.key, leaf.private_key_pem.bytes())
    return files
