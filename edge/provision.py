"""Provisioning a concentrator from the appliance (``gridwire concentrator provision``): make
its key pair here, send a certificate signing request with the operator's one-time claim, write
the certificate the platform signs, and write a config skeleton.

The private key is made on this machine (mode 0600) and never sent; if it exists it is kept, so
running the command again is safe: the same key with the same claim gets the same certificate
back (an answer lost on the way), and a new claim gives a new certificate for the same key.
Only the standard library talks HTTP here, so an edge-only install (no cloud extra) can run it.
Every file is written atomically (a temporary file renamed into place).
"""

from __future__ import annotations

import json
import os
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from broker.errors import Unavailable
from broker.pki import PkiError, make_key_and_request


class ProvisionError(Unavailable):
    """Provisioning did not complete: the cloud refused or could not be reached, or the files
    could not be written; says which. Trying again (after the cause is mended) may work."""


class _Answer(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class BrokerAddress(_Answer):
    host: str
    port: int


class Provisioned(_Answer):
    """The API's answer (cloud/api/routes/provisioning.py ProvisionResponse)."""

    concentrator_id: str
    certificate: str
    ca_certificate: str
    serial: str
    not_after: str
    broker: BrokerAddress


@dataclass(frozen=True, slots=True)
class Written:
    """What the command wrote (``config_written`` is False when a config already existed)."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    config_file: Path
    config_written: bool


@dataclass(frozen=True, slots=True)
class Done:
    answer: Provisioned
    written: Written
    key_made: bool


def request_certificate(*, api: str, claim: str, csr: str, api_ca: Path | None = None,
                        timeout: float = 30.0) -> Provisioned:
    """POST the claim and the CSR; ProvisionError with the API's reason if refused."""
    url = f"{api.rstrip('/')}/v1/installation/provision"
    body = json.dumps({"claim": claim, "csr": csr}).encode()
    req = urllib.request.Request(url, method="POST", data=body, headers={
        "Content-Type": "application/json", "Accept": "application/json"})
    context = ssl.create_default_context(cafile=str(api_ca) if api_ca else None) if url.startswith("https") else None
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as response:  # noqa: S310
            answer = response.read()
    except urllib.error.HTTPError as exc:
        raise ProvisionError(f"the API refused ({exc.code}): {_reason(exc.read())}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise ProvisionError(f"cannot reach the API at {api}: {getattr(exc, 'reason', exc)}") from exc
    try:
        return Provisioned.model_validate_json(answer)
    except ValueError as exc:
        raise ProvisionError(f"the API at {api} gave an answer that is not a provisioning result") from exc


def _reason(body: bytes) -> str:
    try:
        detail = json.loads(body).get("detail")
    except (ValueError, AttributeError):
        return body.decode(errors="replace")[:300]
    return detail if isinstance(detail, str) else json.dumps(detail)


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    path.chmod(0o600)


def config_skeleton(provisioned: Provisioned, *, ca_file: Path, cert_file: Path, key_file: Path,
                    data_dir: Path) -> str:
    """A concentrator.toml with the broker section filled in and the meters left to add."""
    cid = provisioned.concentrator_id
    return f"""\
# Concentrator {cid}: written by `gridwire concentrator provision` (certificate {provisioned.serial},
# valid until {provisioned.not_after}). Check it with `gridwire concentrator check <this file>`.
concentrator_id = "{cid}"
# The durable outbox and state: keep them on storage that survives power loss.
outbox = "{data_dir / 'outbox.sqlite'}"
state = "{data_dir / 'state.sqlite'}"
invocation_counters = "{data_dir / 'dlms-counters.sqlite'}"

# Mutual TLS: the certificate's CN is this concentrator's id and so its broker username.
[broker]
host = "{provisioned.broker.host}"
port = {provisioned.broker.port}
ca_file = "{ca_file}"
cert_file = "{cert_file}"
key_file = "{key_file}"

# Add one [[meters]] block per meter (see config/concentrator.example.toml), for example:
#
# [[meters]]
# protocol = "p1"
# port = "/dev/ttyUSB0"
# adapter_config = "meter-1.yaml"
#
# [[meters]]
# protocol = "dlms"
# meter_id = "<the meter's MeterIndividual UUID>"
# host = "192.0.2.10"
# port = 4059
# security = "lls"
# password = "<the meter's LLS password>"
# profile = "dsmr-4.2.2"
# interval_s = 900
"""


def provision(*, api: str, claim: str, out: Path, data_dir: Path, api_ca: Path | None = None) -> Done:
    """The whole command: key (made or kept), CSR, certificate, files."""
    tls = out / "tls"
    key_file = tls / "concentrator.key"
    key_made = not key_file.exists()
    try:
        csr = make_key_and_request(key_file)
    except PkiError as exc:
        raise ProvisionError(f"cannot use the key {key_file}: {exc}") from exc
    except OSError as exc:
        raise ProvisionError(f"cannot write under {out}: {exc.strerror or exc}") from exc
    answer = request_certificate(api=api, claim=claim, csr=csr, api_ca=api_ca)
    return Done(answer=answer, written=write_provisioned(answer, out=out, data_dir=data_dir), key_made=key_made)


def write_provisioned(provisioned: Provisioned, *, out: Path, data_dir: Path) -> Written:
    """Write the certificate and CA under ``out/tls`` next to the key and, if there is none yet,
    ``out/concentrator.toml``."""
    tls = out / "tls"
    written = Written(ca_file=tls / "ca.pem", cert_file=tls / "concentrator.pem", key_file=tls / "concentrator.key",
                      config_file=out / "concentrator.toml", config_written=False)
    try:
        _write_private(written.cert_file, provisioned.certificate)
        _write_private(written.ca_file, provisioned.ca_certificate)
        if written.config_file.exists():
            return written
        _write_private(written.config_file, config_skeleton(
            provisioned, ca_file=written.ca_file.resolve(), cert_file=written.cert_file.resolve(),
            key_file=written.key_file.resolve(), data_dir=data_dir))
    except OSError as exc:
        raise ProvisionError(f"cannot write under {out}: {exc.strerror or exc}") from exc
    return Written(ca_file=written.ca_file, cert_file=written.cert_file, key_file=written.key_file,
                   config_file=written.config_file, config_written=True)
