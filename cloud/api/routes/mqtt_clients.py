"""``/v1/organisations/{org}/mqttClients``: an organisation's broker accounts, for its apps and
its MQTT-native devices, made, disabled and deleted at run time (no broker restart).

- ``POST`` with ``{"name": "billing"}`` makes the app account ``app.<org>.<name>``: it reads the
  organisation's notifications (``app/<org>/#``) and results (``domain/+/response/<org>``) and
  writes its functional requests (``domain/+/request/<org>``), nothing else. With
  ``{"device": "light-7"}`` it makes the account of an MQTT-native device the organisation owns
  (username = the device id, ``device/<id>/#`` only). The answer holds the password, once;
  asking again gives a new one.
- ``GET`` lists them; ``PATCH`` with ``{"disabled": true}`` refuses their logins and
  disconnects them at once; ``DELETE`` removes them.

Who may: the organisation itself or a platform administrator; a device account also needs
OWNER on the device. The registry records each account (never its password).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Response, status
from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator
from pydantic.alias_generators import to_camel

from broker.accounts import Kind
from broker.errors import Forbidden
from broker.topics import validate_level
from cloud.accounts.store import AccountNotFound
from cloud.api.deps import AccountsDep, Caller, RegistryDep, SettingsDep, require
from cloud.api.errors import REFUSALS
from cloud.registry import DeviceFunction, DeviceType, PlatformRole, Protocol

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/organisations", tags=["mqtt clients"])
OrgPath = Annotated[str, Path(min_length=1, max_length=64)]


class _Schema(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class MqttClientCreate(_Schema):
    name: str | None = Field(default=None, min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_-]+$",
                             description="an app's name: its username is app.<org>.<name>")
    device: str | None = Field(default=None, min_length=1, max_length=64,
                               description="an MQTT-native device of the organisation: its username is the id")

    @model_validator(mode="after")
    def _one(self) -> MqttClientCreate:
        if (self.name is None) == (self.device is None):
            raise ValueError("give either name (an app) or device (an MQTT-native device)")
        return self


class BrokerEndpoint(_Schema):
    host: str
    port: int
    tls: bool = True


class MqttCredentials(_Schema):
    username: str
    password: str = Field(description="shown only in this answer")
    kind: str
    broker: BrokerEndpoint


class MqttClientPublic(_Schema):
    username: str
    kind: str
    subject: str
    disabled: bool
    created_at: datetime


class MqttClientChange(_Schema):
    disabled: StrictBool


def _may_manage(who: Caller, org: str) -> None:
    if who.role is not PlatformRole.ADMIN and who.identification != org:
        log.warning("%s may not manage the broker accounts of %s", who.identification, org)
        raise Forbidden(f"only {org} or a platform administrator may manage {org}'s broker accounts")


@router.post("/{org}/mqttClients", status_code=status.HTTP_201_CREATED, response_model=MqttCredentials,
             response_model_by_alias=True,
             responses={**REFUSALS, 503: {"description": "This API may not administer broker accounts"}})
async def create_mqtt_client(org: OrgPath, spec: MqttClientCreate, who: Caller, registry: RegistryDep,
                             accounts: AccountsDep, settings: SettingsDep) -> MqttCredentials:
    """Broker credentials for one of the organisation's apps or MQTT-native devices."""
    _may_manage(who, org)
    await registry.get_organisation(org)
    if spec.device is not None:
        device = await registry.get_device(spec.device)
        if who.role is not PlatformRole.ADMIN:
            await require(registry, who, spec.device, DeviceFunction.ADD_DEVICE)
        if device.device_type is DeviceType.CONCENTRATOR or device.protocol is not Protocol.MQTT:
            raise Forbidden(f"{spec.device!r} is not an MQTT-native device (a concentrator logs in with its "
                            "certificate)")
        made = await accounts.create_password_account(username=spec.device, kind=Kind.DEVICE, subject=spec.device,
                                                      organisation=org)
    else:
        username = f"app.{validate_level(org, what='organisation')}.{spec.name}"
        made = await accounts.create_password_account(username=username, kind=Kind.APP, subject=org,
                                                      organisation=org)
    kind = Kind.DEVICE if spec.device is not None else Kind.APP
    log.info("broker account %s (%s) for %s made by %s", made.username, kind, org, who.identification)
    return MqttCredentials(username=made.username, password=made.password, kind=kind.value,
                           broker=BrokerEndpoint(host=settings.app_broker_host, port=settings.app_broker_port))


@router.get("/{org}/mqttClients", response_model=list[MqttClientPublic], response_model_by_alias=True,
            responses=REFUSALS)
async def list_mqtt_clients(org: OrgPath, who: Caller, accounts: AccountsDep) -> list[MqttClientPublic]:
    """The organisation's broker accounts (never their passwords)."""
    _may_manage(who, org)
    return [MqttClientPublic(username=r.username, kind=r.kind, subject=r.subject, disabled=r.disabled,
                             created_at=r.created_at) for r in await accounts.store.accounts(organisation=org)]


@router.patch("/{org}/mqttClients/{username}", response_model=MqttClientPublic, response_model_by_alias=True,
              responses={**REFUSALS, 503: {"description": "This API may not administer broker accounts"}})
async def change_mqtt_client(org: OrgPath, username: str, change: MqttClientChange, who: Caller,
                             accounts: AccountsDep) -> MqttClientPublic:
    """Disable (refuse its logins, disconnect it now) or enable an account."""
    _may_manage(who, org)
    await accounts.store.account(username, organisation=org)
    await accounts.set_disabled(username, change.disabled)
    row = await accounts.store.account(username, organisation=org)
    log.info("broker account %s %s by %s", username, "disabled" if change.disabled else "enabled", who.identification)
    return MqttClientPublic(username=row.username, kind=row.kind, subject=row.subject, disabled=row.disabled,
                            created_at=row.created_at)


@router.delete("/{org}/mqttClients/{username}", status_code=status.HTTP_204_NO_CONTENT,
               responses={**REFUSALS, 503: {"description": "This API may not administer broker accounts"}})
async def delete_mqtt_client(org: OrgPath, username: str, who: Caller, accounts: AccountsDep) -> Response:
    """Remove an account and disconnect it."""
    _may_manage(who, org)
    try:
        await accounts.store.account(username, organisation=org)
    except AccountNotFound:
        raise
    await accounts.delete(username)
    log.info("broker account %s deleted by %s", username, who.identification)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
