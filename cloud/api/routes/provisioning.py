"""Provisioning a concentrator: register it if needed and issue its broker client certificate.

``POST /v1/installation/concentrators/{cid}/provision`` is what ``gridwire concentrator
provision`` calls from the appliance. The answer carries everything the concentrator needs to
reach the broker's mutual-TLS listener: its certificate (CN = its id, which the broker takes as
its username), the private key, the CA certificate and the broker's address.

Who may: a platform administrator, or an organisation holding OWNER or INSTALLATION on an
existing concentrator. A concentrator not yet registered is registered first, with the caller
as OWNER (the rule of ``POST /v1/installation/devices``).

What is refused, and why:
- 409 when this API has no CA configured (``GRIDWIRE_PKI_DIR``) or cannot load it;
- 403 for an id equal to a privileged broker account (the cloud's user, ``GRIDWIRE_MQTT_USERNAME``,
  and ``GRIDWIRE_BROKER_RESERVED_NAMES``) or starting with ``app.``: on the TLS listener the CN
  *is* the username, so such a certificate would carry that account's rights;
- 422 for an id that is not a valid topic level; 409 for an id registered as another device
  type or decommissioned.

Provisioning again issues a new certificate; the earlier one stays valid until it expires
(there is no revocation list yet). The key is generated here and sent once over the API's TLS;
the CA key never leaves this process's host.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from pathlib import Path

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from broker.errors import Conflict, Forbidden
from broker.pki import CertificateAuthority, IssuedPem, PkiError, check_client_name
from cloud.api.deps import Caller, RegistryDep, SettingsDep, require
from cloud.registry import (
    ConflictError,
    DeviceCreate,
    DeviceFunction,
    DeviceNotFound,
    DevicePublic,
    DeviceType,
    LifecycleState,
    PlatformRole,
    Protocol,
)
from cloud.settings import ApiSettings

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/installation", tags=["installation"])

MAX_VALIDITY_DAYS = 825


class _Schema(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class ProvisionRequest(_Schema):
    """Optional choices for the certificate."""

    validity_days: int = Field(default=MAX_VALIDITY_DAYS, ge=1, le=MAX_VALIDITY_DAYS)


class BrokerAddress(_Schema):
    """Where the concentrator connects: the broker's mutual-TLS listener."""

    host: str
    port: int


class ProvisionResponse(_Schema):
    """Everything a concentrator needs to reach the broker; the private key is sent only here, once."""

    concentrator_id: str
    registered: bool = Field(description="true if this call registered the concentrator")
    certificate: str = Field(description="PEM client certificate; CN = the concentrator id")
    private_key: str = Field(description="PEM private key (PKCS#8, unencrypted): store it with mode 0600")
    ca_certificate: str = Field(description="PEM certificate of the CA that signs the broker's certificate too")
    serial: str = Field(description="the certificate's serial number, hexadecimal")
    not_after: datetime
    broker: BrokerAddress


def reserved_names(settings: ApiSettings) -> frozenset[str]:
    """Broker usernames no concentrator certificate may carry."""
    names = {settings.mqtt.username or ""}
    names |= {n.strip() for n in settings.broker_reserved_names.split(",")}
    return frozenset(n for n in names if n)


def _load_ca(pki_dir: Path | None) -> CertificateAuthority:
    if pki_dir is None:
        raise Conflict("this API has no certificate authority configured (set GRIDWIRE_PKI_DIR to the CA's "
                       "directory)")
    try:
        return CertificateAuthority.load(pki_dir)
    except PkiError as exc:
        log.error("provisioning refused: %s", exc)
        raise Conflict("this API's certificate authority cannot be loaded; see the API's log") from exc


async def _ensure_concentrator(registry: RegistryDep, who: Caller, cid: str) -> bool:
    """The concentrator's registry entry, created if missing; True if this call created it."""
    try:
        device = await registry.get_device(cid)
    except DeviceNotFound:
        await registry.create_device(DeviceCreate(identification=cid, device_type=DeviceType.CONCENTRATOR,
                                                  protocol=Protocol.MQTT), owner=who.identification)
        return True
    if who.role is not PlatformRole.ADMIN:
        # Asked first, so a caller without rights learns nothing about the device.
        await require(registry, who, cid, DeviceFunction.ADD_DEVICE)
    _check_existing(device)
    return False


def _check_existing(device: DevicePublic) -> None:
    if device.device_type is not DeviceType.CONCENTRATOR:
        raise ConflictError(f"{device.identification!r} is registered as a {device.device_type}, not a concentrator")
    if device.state is LifecycleState.DECOMMISSIONED:
        raise ConflictError(f"concentrator {device.identification!r} is decommissioned")


@router.post(
    "/concentrators/{cid}/provision", response_model=ProvisionResponse, response_model_by_alias=True,
    responses={403: {"description": "A privileged broker name, or the caller may not install on it"},
               409: {"description": "No CA configured, another device type, or decommissioned"},
               422: {"description": "Not a valid concentrator id"}})
async def provision_concentrator(cid: str, settings: SettingsDep, registry: RegistryDep, who: Caller,
                                 spec: ProvisionRequest | None = None) -> ProvisionResponse:
    """Register the concentrator if needed and issue its broker client certificate."""
    try:
        check_client_name(cid, reserved=reserved_names(settings))  # TopicError (Invalid): 422
    except PkiError as exc:
        # A privileged name is the caller asking for rights it may not have, not bad input.
        log.warning("%s asked for a certificate named %r: refused", who.identification, cid)
        raise Forbidden(str(exc)) from exc
    ca = _load_ca(settings.pki_dir)
    registered = await _ensure_concentrator(registry, who, cid)
    days = (spec or ProvisionRequest()).validity_days
    issued: IssuedPem = await asyncio.to_thread(ca.issue_client_pem, cid, days=days,
                                                reserved=reserved_names(settings))
    log.info("issued broker certificate %s for concentrator %s to %s (valid until %s)", issued.serial, cid,
             who.identification, issued.not_after.isoformat())
    return ProvisionResponse(
        concentrator_id=cid, registered=registered, certificate=issued.cert_pem, private_key=issued.key_pem,
        ca_certificate=issued.ca_pem, serial=issued.serial, not_after=issued.not_after,
        broker=BrokerAddress(host=settings.provision_broker_host, port=settings.provision_broker_port))
