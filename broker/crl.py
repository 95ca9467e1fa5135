"""The certificate revocation list the broker's mutual-TLS listener enforces (``crlfile``).

The platform's CA signs it from the registry's revoked client certificates; the broker reads
it at start and again on SIGHUP (measured on mosquitto 2.0.11: no restart, and a revoked
certificate's next handshake fails with "certificate verify failed"). OpenSSL refuses every
client certificate once the CRL's ``nextUpdate`` has passed, so the list is valid for a year and
written again at every API start and every revocation.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from broker.errors import Unavailable
from broker.pki import CertificateAuthority

VALIDITY = dt.timedelta(days=365)


def build_crl(ca: CertificateAuthority, revoked: Iterable[tuple[int, dt.datetime]], *,
              now: dt.datetime | None = None) -> bytes:
    """A PEM CRL signed by ``ca`` listing ``revoked`` (serial number, revocation time)."""
    now = now or dt.datetime.now(dt.UTC)
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca.cert.subject)
               .last_update(now - dt.timedelta(minutes=5)).next_update(now + VALIDITY))
    for serial, when in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build())
    return builder.sign(ca.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def write_crl(path: Path, pem: bytes) -> None:
    """Replace ``path`` in one step (the broker never reads half a list); readable by the broker."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(pem)
    tmp.chmod(0o644)
    os.replace(tmp, path)


def ensure_crl(ca: CertificateAuthority, path: Path) -> Path:
    """An empty CRL signed by ``ca`` at ``path`` if there is none (the broker needs one to start)."""
    if not path.exists():
        write_crl(path, build_crl(ca, []))
    return path


def revoked_serials(path: Path) -> set[int]:
    """The serial numbers a CRL file lists."""
    crl = x509.load_pem_x509_crl(path.read_bytes())
    return {entry.serial_number for entry in crl}


def signal_reload(pid_file: Path) -> int:
    """SIGHUP to the broker whose pid ``pid_file`` holds (it re-reads the CRL); its pid."""
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError) as exc:
        raise Unavailable(f"cannot signal the broker named by {pid_file}: {exc}") from exc
    return pid
