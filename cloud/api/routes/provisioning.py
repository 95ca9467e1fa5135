"""Provisioning a concentrator by certificate signing request and a one-time claim.

1. An installer's organisation (OWNER or INSTALLATION on the concentrator, or a platform
   administrator) asks ``POST /v1/installation/concentrators/{cid}/claims`` for a claim: a token
   good for one appliance, for a limited time. A concentrator not yet registered is registered
   with the caller as OWNER (the rule of ``POST /v1/installation/devices``).
2. On the appliance, ``gridwire concentrator provision --api URL --claim TOKEN`` makes the key
   pair (kept if it exists: running it again is safe), and sends a certificate signing request
   with the claim to ``POST /v1/installation/provision``. The answer is the certificate (CN =
   the concentrator id, which the broker takes as its username), the CA certificate and the
   broker's address. The private key never leaves the appliance.

The claim is the credential of step 2 (no bearer token on the appliance). Redeeming it gives
the concentrator its broker account and revokes its earlier certificates (CRL, enforced by the
broker) and disconnects whoever used them. The same key redeeming the same claim again gets the
same certificate (an answer lost on the way); any other key is refused.

Refusals, each changing nothing: 403 for an unknown or expired claim, an id named like a
privileged broker account (``GRIDWIRE_MQTT_USERNAME``, ``GRIDWIRE_BROKER_RESERVED_NAMES``, or
``app.``: on the TLS listener the CN *is* the username) or a caller without rights; 409 for a
claim another key used, no CA (``GRIDWIRE_PKI_DIR``), another device type or decommissioned; 422
for a bad id or request; 503 when this API may not administer broker accounts.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Path, status
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from broker.errors import Forbidden
from broker.pki import PkiError, check_client_name
from cloud.api.deps import AccountsDep, Caller, RegistryDep, SettingsDep, require
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
MAX_CLAIM_HOURS = 30 * 24


class _Schema(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class ClaimRequest(_Schema):
    valid_hours: int = Field(default=24, ge=1, le=MAX_CLAIM_HOURS, description="how long the claim may be redeemed")


class ClaimResponse(_Schema):
    concentrator_id: str
    registered: bool = Field(description="true if this call registered the concentrator")
    claim: str = Field(description="the one-time claim token: give it to the installer (shown only here)")
    expires_at: datetime


class ProvisionRequest(_Schema):
    claim: str = Field(min_length=1, max_length=200)
    csr: str = Field(min_length=1, max_length=20_000, description="PEM certificate signing request of the "
                                                                    "appliance's key (EC P-256/P-384, RSA 2048+)")
    validity_days: int = Field(default=MAX_VALIDITY_DAYS, ge=1, le=MAX_VALIDITY_DAYS)


class BrokerAddress(_Schema):
    """Where the concentrator connects: the broker's mutual-TLS listener."""

    host: str
    port: int


class ProvisionResponse(_Schema):
    """What a concentrator needs to reach the broker (its key stays where it was made)."""

    concentrator_id: str
    certificate: str = Field(description="PEM client certificate; CN = the concentrator id")
    ca_certificate: str = Field(description="PEM certificate of the CA that signs the broker's certificate too")
    serial: str = Field(description="the certificate's serial number, hexadecimal")
    not_after: datetime
    broker: BrokerAddress


def reserved_names(settings: ApiSettings) -> frozenset[str]:
    """Broker usernames no concentrator certificate may carry."""
    names = {settings.mqtt.username or ""}
    names |= {n.strip() for n in settings.broker_reserved_names.split(",")}
    return frozenset(n for n in names if n)


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


# A concentrator id as the registry takes it (cloud.registry.schemas.Identification): it is a
# broker username and a topic level too.
ConcentratorId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$",
                                     description="the concentrator's id (its broker username)")]


@router.post(
    "/concentrators/{cid}/claims", response_model=ClaimResponse, response_model_by_alias=True,
    status_code=status.HTTP_201_CREATED,
    responses={403: {"description": "A privileged broker name, or the caller may not install on it"},
               409: {"description": "No CA configured, another device type, or decommissioned"},
               422: {"description": "Not a valid concentrator id"},
               503: {"description": "This API may not administer broker accounts"}})
async def create_claim(cid: ConcentratorId, settings: SettingsDep, registry: RegistryDep, accounts: AccountsDep, who: Caller,
                       spec: ClaimRequest | None = None) -> ClaimResponse:
    """A one-time claim an appliance redeems for its certificate (registering the concentrator if new)."""
    try:
        check_client_name(cid, reserved=reserved_names(settings))  # TopicError (Invalid): 422
    except PkiError as exc:
        # A privileged name is the caller asking for rights it may not have, not bad input.
        log.warning("%s asked for a claim named %r: refused", who.identification, cid)
        raise Forbidden(str(exc)) from exc
    accounts.ca()
    accounts.broker()
    registered = await _ensure_concentrator(registry, who, cid)
    token, expires_at = await accounts.create_claim(concentrator_id=cid, organisation=who.identification,
                                                    ttl=timedelta(hours=(spec or ClaimRequest()).valid_hours))
    log.info("provisioning claim for concentrator %s made by %s, valid until %s", cid, who.identification,
             expires_at.isoformat())
    return ClaimResponse(concentrator_id=cid, registered=registered, claim=token, expires_at=expires_at)


@router.post(
    "/provision", response_model=ProvisionResponse, response_model_by_alias=True,
    responses={403: {"description": "Unknown or expired claim"},
               409: {"description": "The claim was used by another key; no CA; decommissioned"},
               422: {"description": "Not a valid certificate signing request"},
               503: {"description": "This API may not administer broker accounts"}})
async def provision(spec: ProvisionRequest, settings: SettingsDep, registry: RegistryDep,
                    accounts: AccountsDep) -> ProvisionResponse:
    """Redeem a claim: the certificate for the appliance's own key (sent as a CSR)."""
    claim = await accounts.store.claim(spec.claim)
    if claim is not None:
        _check_existing(await registry.get_device(claim.concentrator_id))
    issued = await accounts.redeem(spec.claim, spec.csr, days=spec.validity_days)
    return ProvisionResponse(
        concentrator_id=issued.concentrator_id, certificate=issued.certificate_pem, ca_certificate=issued.ca_pem,
        serial=issued.serial, not_after=issued.not_after,
        broker=BrokerAddress(host=settings.provision_broker_host, port=settings.provision_broker_port))
