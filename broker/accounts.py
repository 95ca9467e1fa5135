"""Broker accounts: what each kind of account may touch, and the interface a broker implements.

The registry is the source of truth for accounts; a broker holds a copy it is told about at run
time, through :class:`BrokerAccounts`. Mosquitto implements it with its dynamic security plugin
(:mod:`broker.dynsec`); another broker with an account API (EMQX's REST API and its built-in
database authenticator/authoriser, HiveMQ's Enterprise Security Extension) could implement the
same calls: docs/ARCHITECTURE.md, "Broker accounts", says how.

Every account has a *kind*, and its rights follow from its kind and its subject (the
concentrator, device or organisation it stands for), built from the topic tree's filters:

- ``concentrator``: ``concentrator/<its id>/#`` only (username = concentrator id; on the
  mutual-TLS listener the certificate's CN);
- ``device`` (MQTT-native): ``device/<its id>/#`` only;
- ``fleet`` (a gateway or simulator serving many MQTT-native devices): read every
  ``device/+/command``, write ``device/+/response`` and ``device/+/status``;
- ``app`` (an organisation's application; subject = the organisation): read ``app/<org>/#``,
  write ``domain/+/request/<org>``, read ``domain/+/response/<org>``;
- ``adapter`` (an external SmartMeterAdapter on a concentrator's local listener; subject = the
  adapter's id): write ``smartMeterMessage/<m>/+`` for each of its ``meters`` only, read
  ``adapter/<its id>/ack``;
- ``local-concentrator`` (the concentrator on its own local listener): read every
  ``smartMeterMessage/+/+``, write ``adapter/+/ack``;
- ``cloud`` (the cloud's processes): everything, and the broker's statistics;
- ``api`` (the web API): what ``cloud`` may, and the broker's account administration.

Each kind's rights are a role of its own per subject (``concentrator:<id>``, ``app:<org>``...),
so no account's rights depend on its name matching a pattern: an app whose name is a
concentrator's id gets nothing of that concentrator's.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from broker import topics
from broker.errors import Invalid


class Kind(StrEnum):
    CLOUD = "cloud"
    API = "api"
    CONCENTRATOR = "concentrator"
    DEVICE = "device"
    FLEET = "fleet"
    APP = "app"
    ADAPTER = "adapter"
    LOCAL_CONCENTRATOR = "local-concentrator"


# Kinds whose rights are fenced to one subject (a role per subject); the others share one role.
FENCED = (Kind.CONCENTRATOR, Kind.DEVICE, Kind.APP, Kind.ADAPTER)
# Where the broker's account administration is (Mosquitto's dynamic security plugin).
ADMIN_TOPICS = "$CONTROL/dynamic-security/#"
# Read = subscribe and receive; write = publish.
Access = str  # "read" | "write" | "readwrite"


@dataclass(frozen=True, slots=True)
class Account:
    """A broker login. ``role`` is its kind (:class:`Kind`); ``subject`` what it is fenced to
    (default: the username, or for an app the organisation after ``app.``). ``password`` None:
    no password login (a concentrator logs in with its certificate only). ``meters``: the
    meterIndividualIds an ``adapter`` account may publish for (none: nothing)."""

    username: str
    password: str | None
    role: str
    subject: str | None = None
    meters: tuple[str, ...] = ()

    @property
    def kind(self) -> Kind:
        try:
            return Kind(self.role)
        except ValueError:
            raise Invalid(f"unknown broker role {self.role!r} for {self.username!r}") from None

    def fenced_to(self) -> str:
        if self.subject is not None:
            return self.subject
        if self.kind is Kind.APP:
            return self.username.removeprefix("app.")
        return self.username


def role_name(kind: Kind, subject: str | None = None) -> str:
    """The broker role of ``kind`` (for a fenced kind, of its ``subject``)."""
    return f"{kind.value}:{subject}" if kind in FENCED else kind.value


def grants(kind: Kind, subject: str, *, meters: tuple[str, ...] = ()) -> list[tuple[Access, str]]:
    """(access, topic filter) pairs the role of ``kind`` for ``subject`` (an adapter: and its
    ``meters``) grants; TopicError (Invalid) for a subject or meter that could open a hole (a
    '/', '+' or '#')."""
    if kind is Kind.ADAPTER:
        return [("read", topics.adapter_ack(subject)), *(("write", topics.meter_messages(m)) for m in meters)]
    if kind is Kind.LOCAL_CONCENTRATOR:
        return [("read", topics.ALL_LOCAL_METER_MESSAGES), ("write", topics.ALL_ADAPTER_ACKS)]
    if kind in (Kind.CLOUD, Kind.API):
        return [("readwrite", topics.EVERYTHING), ("read", topics.BROKER_STATISTICS)]
    if kind is Kind.APP:
        return [("read", topics.app_subtree(subject)), ("write", topics.organisation_domains("request", subject)),
                ("read", topics.organisation_domains("response", subject))]
    if kind is Kind.DEVICE:
        return [("readwrite", topics.device_subtree(subject))]
    if kind is Kind.FLEET:
        return [("read", topics.ALL_DEVICE_COMMANDS), ("write", topics.ALL_DEVICE_RESPONSES),
                ("write", topics.ALL_DEVICE_STATUS)]
    topics.validate_level(subject, what="concentrator id")
    return [("readwrite", topics.concentrator_subtree(subject))]


def account_grants(account: Account) -> list[tuple[Access, str]]:
    return grants(account.kind, account.fenced_to(), meters=account.meters)


@dataclass(frozen=True, slots=True)
class ClientState:
    """One account as the broker holds it."""

    username: str
    roles: tuple[str, ...]
    disabled: bool


class BrokerAccounts(Protocol):
    """A broker's accounts, changed at run time with no restart. Every call is idempotent: the
    registry re-applies what it holds (after a broker lost its state) with the same calls."""

    async def ensure(self, account: Account) -> None:
        """Create the account (or update its password and role) and enable it."""

    async def disable(self, username: str) -> None:
        """Refuse its logins from now on and disconnect it (a missing account: nothing to do)."""

    async def revoke(self, username: str) -> None:
        """Take every right from it and disconnect it; certificate logins too (a certificate
        stays valid until its CRL entry is enforced, but its account can do nothing)."""

    async def delete(self, username: str) -> None:
        """Remove it and disconnect it (a missing account: nothing to do)."""

    async def get(self, username: str) -> ClientState | None:
        """The account as the broker holds it; None if it has none."""

    async def clients(self) -> list[ClientState]:
        """Every account the broker holds."""
