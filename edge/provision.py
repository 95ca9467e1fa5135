"""Provisioning a concentrator from the appliance (``gridwire concentrator provision``): make
its key pair here, send a certificate signing request with the operator's one-time claim, write
the certificate the platform signs, and write a config skeleton.

The private key is made on this machine (mode 0600) and never sent; if it exists it is kept, so
running the command again is safe: the same key with the same claim gets the same certificate
back (an answer lost on the way), and a new claim gives a new certificate for the same key.
A config that exists (the package's default, or one with meters in it) keeps everything but
the fields provisioning owns (``concentrator_id`` and the ``[broker]`` address and TLS files),
which are set to what the platform answered; a config that does not exist is written whole.
``root`` is an install root (a throwaway one in tests, ``/`` on an appliance): files are written
under it, and the paths the config names are those the appliance sees, without it.
Only the standard library talks HTTP here, so an edge-only install (no cloud extra) can run it.
Every file is written atomically (a temporary file renamed into place).
"""

from __future__ import annotations

import json
import os
import re
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
    # The fields set in a config that existed (empty when it was written whole or already right).
    config_updated: tuple[str, ...] = ()


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


def provision(*, api: str, claim: str, out: Path, data_dir: Path, api_ca: Path | None = None,
              root: Path | None = None) -> Done:
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
    return Done(answer=answer, written=write_provisioned(answer, out=out, data_dir=data_dir, root=root),
                key_made=key_made)


def seen_from(path: Path, root: Path | None) -> Path:
    """``path`` as the appliance whose file system is at ``root`` sees it."""
    path = path.resolve()
    if root is None:
        return path
    return Path("/") / path.relative_to(root.resolve())


def write_provisioned(provisioned: Provisioned, *, out: Path, data_dir: Path, root: Path | None = None) -> Written:
    """Write the certificate and CA under ``out/tls`` next to the key, and ``out/concentrator.toml``:
    whole if there is none yet, else only the fields provisioning owns."""
    tls = out / "tls"
    written = Written(ca_file=tls / "ca.pem", cert_file=tls / "concentrator.pem", key_file=tls / "concentrator.key",
                      config_file=out / "concentrator.toml", config_written=False)
    ca_file, cert_file, key_file = (seen_from(f, root) for f in (written.ca_file, written.cert_file,
                                                                  written.key_file))
    owned: dict[str, str | int] = {
        "concentrator_id": provisioned.concentrator_id, "broker.host": provisioned.broker.host,
        "broker.port": provisioned.broker.port, "broker.ca_file": str(ca_file), "broker.cert_file": str(cert_file),
        "broker.key_file": str(key_file)}
    try:
        _write_private(written.cert_file, provisioned.certificate)
        _write_private(written.ca_file, provisioned.ca_certificate)
        if written.config_file.exists():
            text = written.config_file.read_text()
            updated, changed = set_owned_fields(text, owned)
            if changed:
                _write_private(written.config_file, updated)
            written = Written(ca_file=written.ca_file, cert_file=written.cert_file, key_file=written.key_file,
                              config_file=written.config_file, config_written=False, config_updated=tuple(changed))
            hand_over(written, root)
            return written
        _write_private(written.config_file, config_skeleton(
            provisioned, ca_file=ca_file, cert_file=cert_file, key_file=key_file, data_dir=data_dir))
        hand_over(written, root)
        written = Written(ca_file=written.ca_file, cert_file=written.cert_file, key_file=written.key_file,
                          config_file=written.config_file, config_written=True)
    except OSError as exc:
        raise ProvisionError(f"cannot write under {out}: {exc.strerror or exc}") from exc
    return written


SERVICE_USER = "gridwire"


def service_account(root: Path | None) -> tuple[int, int] | None:
    """The (uid, gid) of the service user in ``root``'s /etc/passwd, if it has one."""
    try:
        lines = ((root or Path("/")) / "etc" / "passwd").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split(":")
        if len(fields) >= 4 and fields[0] == SERVICE_USER:
            return int(fields[2]), int(fields[3])
    return None


def hand_over(written: Written, root: Path | None) -> None:
    """Run as root (the package's way), give the service user what it reads: its key and
    certificates (0600, its own) and the config (0640, group-readable by it, owned by root).
    Run as anyone else, the files are already that user's."""
    account = service_account(root) if os.geteuid() == 0 else None
    if account is None:
        return
    uid, gid = account
    for path in (written.key_file, written.cert_file, written.ca_file):
        os.chown(path, uid, gid)
    os.chown(written.config_file, 0, gid)
    written.config_file.chmod(0o640)


_SECTION = re.compile(r"^\s*\[\[?\s*([A-Za-z0-9_.-]+)\s*\]\]?")
_ASSIGNMENT = re.compile(r"^(\s*)([A-Za-z0-9_-]+)(\s*=\s*)(.*)$")


def _toml_value(value: str | int) -> str:
    # A JSON string is a valid TOML basic string (the same escapes).
    return str(value) if isinstance(value, int) else json.dumps(value)


def set_owned_fields(text: str, owned: dict[str, str | int]) -> tuple[str, list[str]]:
    """``text`` (a concentrator.toml) with each dotted key of ``owned`` (top level or
    ``broker.``) set, and the keys whose values changed. Comments, meters and every other key
    are left as they are; a key or a ``[broker]`` table that is missing is added."""
    lines = text.splitlines()
    section = ""
    seen: set[str] = set()
    changed: list[str] = []
    broker_header: int | None = None
    first_table: int | None = None
    for index, line in enumerate(lines):
        if header := _SECTION.match(line):
            section = header.group(1)
            if first_table is None:
                first_table = index
            if section == "broker" and not line.lstrip().startswith("[["):
                broker_header = index
            continue
        match = _ASSIGNMENT.match(line)
        if match is None:
            continue
        key = f"{section}.{match.group(2)}" if section else match.group(2)
        if key not in owned:
            continue
        seen.add(key)
        value = _toml_value(owned[key])
        current = match.group(4).split("#", 1)[0].strip() if not match.group(4).lstrip().startswith('"') \
            else _quoted_prefix(match.group(4))
        if current != value:
            lines[index] = f"{match.group(1)}{match.group(2)}{match.group(3)}{value}"
            changed.append(key)
    missing_top = [k for k in owned if "." not in k and k not in seen]
    missing_broker = [k for k in owned if k.startswith("broker.") and k not in seen]
    if missing_broker:
        added = [f"{k.removeprefix('broker.')} = {_toml_value(owned[k])}" for k in missing_broker]
        if broker_header is None:
            lines += ["", "[broker]", *added]
        else:
            lines[broker_header + 1:broker_header + 1] = added
        changed += missing_broker
    if missing_top:
        at = first_table if first_table is not None else len(lines)
        lines[at:at] = [f"{k} = {_toml_value(owned[k])}" for k in missing_top]
        changed += missing_top
    return "\n".join(lines) + "\n", changed


def _quoted_prefix(raw: str) -> str:
    """The leading basic string of a TOML value, quotes included (a comment may follow it)."""
    raw = raw.lstrip()
    end = 1
    while end < len(raw):
        if raw[end] == "\\":
            end += 2
            continue
        if raw[end] == '"':
            return raw[:end + 1]
        end += 1
    return raw
