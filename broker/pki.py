"""A small certificate authority for mutual TLS between concentrators and the broker.

Why: a concentrator in a street cabinet authenticates with a client certificate whose
common name is its concentrator id. The broker's TLS listener runs with
``use_identity_as_username``, so that CN becomes the MQTT username and the ACL pattern
``concentrator/%u/#`` fences the concentrator into its own subtree, with no password to
provision. Deployments use it to bootstrap a private CA; tests use it to build throwaway ones.

Keys are EC P-256 (small, fast, supported by every OpenSSL a concentrator runs). Private
keys are written unencrypted with mode 0600: the appliance has no operator to type a passphrase.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from broker.errors import Invalid
from broker.topics import validate_level

DEFAULT_SERVER_NAMES = ("localhost", "127.0.0.1")


@dataclass(frozen=True, slots=True)
class CertFiles:
    """Where one certificate and its private key were written (PEM)."""

    cert_file: Path
    key_file: Path


class PkiError(Invalid):
    """A CA that cannot be loaded or a certificate request that cannot be honoured."""


# Broker usernames a concentrator certificate must never carry: on the mutual-TLS listener the
# CN *is* the username, so a certificate named like a privileged account gets that account's ACL.
# Apps log in as ``app.<org>``: that prefix is reserved as well.
RESERVED_PREFIXES = ("app.",)


def check_client_name(concentrator_id: str, *, reserved: tuple[str, ...] | list[str] | frozenset[str] = ()) -> str:
    """The id a client certificate may carry as its CN; PkiError or TopicError if it may not."""
    # The CN becomes the %u of the ACL pattern: a level with '/', '+' or '#' would escape the fence.
    cid = validate_level(concentrator_id, what="concentrator id")
    if cid.casefold() in {name.casefold() for name in reserved}:
        raise PkiError(f"{cid!r} is a privileged broker account; a certificate with that CN would get its rights")
    if cid.casefold().startswith(RESERVED_PREFIXES):
        raise PkiError(f"{cid!r}: ids starting with {', '.join(RESERVED_PREFIXES)} are reserved for app accounts")
    return cid


def load_request(csr_pem: str | bytes) -> x509.CertificateSigningRequest:
    """A PEM certificate signing request whose signature proves its key; PkiError otherwise.

    Keys accepted: EC P-256 or P-384, RSA of 2048 bits or more."""
    try:
        csr = x509.load_pem_x509_csr(csr_pem.encode() if isinstance(csr_pem, str) else csr_pem)
    except ValueError as exc:
        raise PkiError(f"not a PEM certificate signing request: {exc}") from exc
    if not csr.is_signature_valid:
        raise PkiError("the certificate signing request's signature does not verify")
    key = csr.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in ("secp256r1", "secp384r1"):
            raise PkiError(f"EC curve {key.curve.name} is not accepted (P-256 or P-384)")
    elif isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise PkiError(f"an RSA key of {key.key_size} bits is too small (2048 or more)")
    else:
        raise PkiError("only EC (P-256, P-384) and RSA keys are accepted")
    return csr


def make_key_and_request(key_file: Path) -> str:
    """The appliance's side: its private key (made here once, mode 0600, kept when it exists)
    and a PEM certificate signing request for it."""
    if key_file.exists():
        loaded = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise PkiError(f"{key_file}: not an EC private key")
        key = loaded
    else:
        key = ec.generate_private_key(ec.SECP256R1())
        _write_key(key_file, key)
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gridwire-concentrator")]))
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def public_key_sha256(cert_or_csr: x509.Certificate | x509.CertificateSigningRequest) -> str:
    """SHA-256 of the DER public key: the same key, however it is wrapped."""
    import hashlib

    der = cert_or_csr.public_key().public_bytes(serialization.Encoding.DER,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    # Create with 0600 from the start, so the key is never readable by others, not even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    path.chmod(0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _subject_alt_names(names: tuple[str, ...] | list[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


@dataclass(frozen=True, slots=True)
class CertificateAuthority:
    """A CA certificate and its key; issues the broker's and the concentrators' certificates."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    cert_file: Path

    @classmethod
    def create(cls, directory: Path, *, name: str = "Gridwire CA", days: int = 3650) -> CertificateAuthority:
        """Create a new self-signed CA in ``directory`` (ca.pem, ca.key); refuse to overwrite one."""
        cert_file, key_file = directory / "ca.pem", directory / "ca.key"
        if cert_file.exists() or key_file.exists():
            raise PkiError(f"{directory} already holds a CA; remove it first to create a new one")
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        _write_key(key_file, key)
        _write_cert(cert_file, cert)
        return cls(cert=cert, key=key, cert_file=cert_file)

    @classmethod
    def load(cls, directory: Path) -> CertificateAuthority:
        """Load the CA that :meth:`create` wrote into ``directory``."""
        cert_file, key_file = directory / "ca.pem", directory / "ca.key"
        try:
            cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
            key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        except (OSError, ValueError) as exc:
            raise PkiError(f"cannot load the CA from {directory}: {exc}") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise PkiError(f"{key_file}: not an EC private key")
        return cls(cert=cert, key=key, cert_file=cert_file)

    def _issue(self, *, common_name: str, usage: x509.ObjectIdentifier, days: int,
               alt_names: tuple[str, ...] | list[str] = ()) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=True, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
        )
        if alt_names:
            builder = builder.add_extension(_subject_alt_names(alt_names), critical=False)
        return builder.sign(self.key, hashes.SHA256()), key

    def issue_server(self, directory: Path, *, names: tuple[str, ...] | list[str] = DEFAULT_SERVER_NAMES,
                     days: int = 825, stem: str = "server") -> CertFiles:
        """The broker's certificate, valid for ``names`` (DNS names or IP addresses)."""
        names = list(dict.fromkeys(names))  # a name given twice is listed once
        if not names:
            raise PkiError("a server certificate needs at least one name")
        cert, key = self._issue(common_name=names[0], usage=ExtendedKeyUsageOID.SERVER_AUTH, days=days,
                                alt_names=names)
        return self._write(directory, stem, cert, key)

    def issue_client(self, directory: Path, concentrator_id: str, *, days: int = 825,
                     reserved: tuple[str, ...] | list[str] | frozenset[str] = ()) -> CertFiles:
        """A concentrator's client certificate: CN = its id, which the broker takes as its username."""
        cid = check_client_name(concentrator_id, reserved=reserved)
        cert, key = self._issue(common_name=cid, usage=ExtendedKeyUsageOID.CLIENT_AUTH, days=days)
        return self._write(directory, cid, cert, key)

    def sign_request(self, csr_pem: str | bytes, concentrator_id: str, *, days: int = 825,
                     reserved: tuple[str, ...] | list[str] | frozenset[str] = ()) -> x509.Certificate:
        """A concentrator's client certificate for the key of a certificate signing request: the
        key pair was made on the appliance and never leaves it. The CN is ``concentrator_id``
        whatever the request asked for (the caller decides who it is, not the request)."""
        cid = check_client_name(concentrator_id, reserved=reserved)
        csr = load_request(csr_pem)
        now = _now()
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cid)]))
            .issuer_name(self.cert.subject)
            .public_key(csr.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )

    @staticmethod
    def _write(directory: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> CertFiles:
        files = CertFiles(cert_file=directory / f"{stem}.pem", key_file=directory / f"{stem}.key")
        _write_key(files.key_file, key)
        _write_cert(files.cert_file, cert)
        return files


def ensure_pki(directory: Path, *, server_names: tuple[str, ...] | list[str] = DEFAULT_SERVER_NAMES,
               clients: tuple[str, ...] | list[str] = (), reserved: tuple[str, ...] | list[str] = (),
               server_dir: Path | None = None, clients_dir: Path | None = None) -> CertificateAuthority:
    """The CA in ``directory``, created with a server certificate (in ``server_dir``, default
    ``directory``) and the named client certificates (in ``clients_dir``, default
    ``directory/clients``) if they are missing; what exists is kept as it is. A copy of the CA
    certificate goes next to each, so a broker or concentrator never needs the CA's directory
    (which holds its key).

    Used by the demo and the compose file's one-shot service: running it again changes nothing.
    """
    ca = (CertificateAuthority.load(directory) if (directory / "ca.pem").exists()
          else CertificateAuthority.create(directory))
    server_dir = server_dir or directory
    clients_dir = clients_dir or directory / "clients"
    if not (server_dir / "server.pem").exists() or not (server_dir / "server.key").exists():
        ca.issue_server(server_dir, names=server_names)
    for cid in clients:
        if not (clients_dir / f"{cid}.pem").exists():
            ca.issue_client(clients_dir, cid, reserved=reserved)
    for target in {server_dir, clients_dir} - {directory}:
        if target.exists():
            _write_cert(target / "ca.pem", ca.cert)
    return ca


def common_name(cert_file: Path) -> str:
    """The subject CN of a PEM certificate (what the broker will take as the username)."""
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    values = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not values:
        raise PkiError(f"{cert_file}: certificate has no common name")
    return str(values[0].value)

