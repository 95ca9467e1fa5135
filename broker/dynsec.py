"""Mosquitto's dynamic security plugin (``mosquitto_dynamic_security.so``): its starting file,
and :class:`DynsecAccounts`, the :class:`broker.accounts.BrokerAccounts` that changes accounts
at run time over ``$CONTROL/dynamic-security/v1``.

Measured on mosquitto 2.0.11 (MISSION.md): a client on the mutual-TLS listener (CN as username)
gets the roles of the dynsec client of that name; a valid certificate with no such client
connects but is refused every publish and subscribe (0x87); ``disableClient`` refuses password
logins only, so revoking a certificate client removes its roles (and its certificate goes on
the CRL, :mod:`broker.crl`). Subscriptions outside an account's roles are refused with 0x87:
the default access for subscribing and for both directions of publishing is deny.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import logging
import os
from pathlib import Path
from typing import Any

from broker.accounts import ADMIN_TOPICS, FENCED, Account, ClientState, Kind, account_grants, role_name
from broker.errors import Conflict, Unavailable
from broker.mqtt_types import Message
from broker.session import MqttSession

log = logging.getLogger(__name__)

CONTROL_ROOT = "$CONTROL/#"
CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = f"{CONTROL_TOPIC}/response"
ACCOUNT_ADMIN_ROLE = "account-admin"
# Where Debian (and Ubuntu) and the eclipse-mosquitto image install the plugin.
PLUGIN_PATHS = ("/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
                "/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so",
                "/usr/lib/mosquitto_dynamic_security.so")
# Deny unless a role allows: subscribing outside its roles is refused (0x87), not just filtered.
DEFAULT_ACCESS = {"publishClientSend": False, "publishClientReceive": False, "subscribe": False,
                  "unsubscribe": True}
_ITERATIONS = 101


def plugin_path() -> str:
    """The plugin's path on this machine (the first that exists; else Debian's)."""
    return next((p for p in PLUGIN_PATHS if Path(p).exists()), PLUGIN_PATHS[0])


def _password_fields(password: str) -> dict[str, Any]:
    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, _ITERATIONS)
    return {"password": base64.b64encode(digest).decode(), "salt": base64.b64encode(salt).decode(),
            "iterations": _ITERATIONS}


def role_acls(account: Account) -> list[dict[str, Any]]:
    """The dynsec ACL entries of an account's role: read = subscribe + receive, write = send."""
    acls: list[dict[str, Any]] = []
    for access, topic_filter in account_grants(account):
        if access in ("read", "readwrite"):
            # A shared subscription is checked with its $share/<group>/ prefix: allowed alike.
            acls += [{"acltype": "subscribePattern", "topic": topic_filter, "priority": 0, "allow": True},
                     {"acltype": "subscribePattern", "topic": f"$share/+/{topic_filter}", "priority": 0,
                      "allow": True},
                     {"acltype": "publishClientReceive", "topic": topic_filter, "priority": 0, "allow": True}]
        if access in ("write", "readwrite"):
            acls.append({"acltype": "publishClientSend", "topic": topic_filter, "priority": 0, "allow": True})
    # '#' would match the broker's $CONTROL topics for a subscription: nobody listens there but
    # the api, and it only to the account administration (higher priorities are checked first).
    acls += [{"acltype": "subscribePattern", "topic": control, "priority": 10, "allow": False}
             for control in (CONTROL_ROOT, f"$share/+/{CONTROL_ROOT}")]
    acls.append({"acltype": "publishClientReceive", "topic": CONTROL_ROOT, "priority": 10, "allow": False})
    if account.kind is Kind.API:
        acls += [{"acltype": "publishClientSend", "topic": ADMIN_TOPICS, "priority": 20, "allow": True},
                 {"acltype": "subscribePattern", "topic": ADMIN_TOPICS, "priority": 20, "allow": True},
                 {"acltype": "publishClientReceive", "topic": ADMIN_TOPICS, "priority": 20, "allow": True}]
    return acls


def account_role(account: Account) -> str:
    kind = account.kind
    return role_name(kind, account.fenced_to() if kind in FENCED else None)


def render_dynsec(accounts: list[Account], existing: dict[str, Any] | None = None) -> dict[str, Any]:
    """The plugin's file: ``accounts`` (created or brought up to date: password, role) on top
    of what ``existing`` holds, so accounts made at run time survive a regenerated config."""
    data: dict[str, Any] = existing or {}
    clients = {c["username"]: c for c in data.get("clients", [])}
    roles = {r["rolename"]: r for r in data.get("roles", [])}
    for account in accounts:
        rolename = account_role(account)
        roles[rolename] = {"rolename": rolename, "acls": role_acls(account)}
        client: dict[str, Any] = {"username": account.username, "roles": [{"rolename": rolename}]}
        if account.password:
            client |= _password_fields(account.password)
        clients[account.username] = client
    return {"defaultACLAccess": DEFAULT_ACCESS, "clients": list(clients.values()), "groups": data.get("groups", []),
            "roles": list(roles.values())}


def write_dynsec(path: Path, accounts: list[Account]) -> None:
    """Write (or update, keeping run-time accounts) the plugin's file, mode 0600."""
    existing = json.loads(path.read_text()) if path.exists() else None
    text = json.dumps(render_dynsec(accounts, existing), indent=1)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.replace(tmp, path)


class DynsecError(Conflict):
    """The plugin refused a command; says which and why."""


class DynsecAccounts:
    """:class:`BrokerAccounts` over a connected session whose account may administer accounts
    (kind ``api``). Call :meth:`start` once the session is connected."""

    def __init__(self, session: MqttSession, *, timeout: float = 10.0) -> None:
        self._session = session
        self._timeout = timeout
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._prefix = f"{session.client_id}-{os.getpid()}"

    async def start(self) -> None:
        """Listen for the plugin's answers and ask it one thing: NegativeAckError (0x87) if this
        session's account may not administer accounts."""
        await self._session.subscribe(RESPONSE_TOPIC, self._on_response)
        await self.command("getDefaultACLAccess")

    async def _on_response(self, message: Message) -> None:
        try:
            responses = json.loads(bytes(message.payload)).get("responses", [])
        except (ValueError, AttributeError):
            log.warning("dynsec: unreadable response on %s", message.topic)
            return
        for response in responses:
            fut = self._pending.pop(str(response.get("correlationData")), None)
            if fut is not None and not fut.done():
                fut.set_result(response)

    async def command(self, command: str, **fields: Any) -> dict[str, Any]:  # noqa: ANN401 - the plugin's JSON
        """Send one command; its response (``error`` set if the plugin refused it)."""
        correlation = f"{self._prefix}-{next(self._ids)}"
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[correlation] = fut
        payload = json.dumps({"commands": [{"command": command, "correlationData": correlation, **fields}]})
        try:
            await self._session.publish(CONTROL_TOPIC, payload)
            return await asyncio.wait_for(fut, self._timeout)
        except TimeoutError as exc:
            raise Unavailable(f"the broker did not answer {command} within {self._timeout} s") from exc
        finally:
            self._pending.pop(correlation, None)

    async def _checked(self, command: str, *, tolerate: tuple[str, ...] = (), **fields: Any) -> dict[str, Any]:  # noqa: ANN401
        response = await self.command(command, **fields)
        error = response.get("error")
        if error and not any(t in error for t in tolerate):
            raise DynsecError(f"the broker refused {command} {fields.get('username') or fields.get('rolename')}: "
                              f"{error}")
        return response

    async def ensure(self, account: Account) -> None:
        rolename = account_role(account)
        await self._checked("createRole", rolename=rolename, acls=role_acls(account), tolerate=("already exists",))
        created: dict[str, Any] = {"username": account.username, "roles": [{"rolename": rolename}]}
        if account.password:
            created["password"] = account.password
        made = await self._checked("createClient", tolerate=("already exists",), **created)
        if made.get("error"):
            state = await self.get(account.username)
            for other in (state.roles if state else ()):
                if other != rolename:
                    await self._checked("removeClientRole", username=account.username, rolename=other)
            if state is None or rolename not in state.roles:
                await self._checked("addClientRole", username=account.username, rolename=rolename)
            if account.password:
                await self._checked("setClientPassword", username=account.username, password=account.password)
            await self._checked("enableClient", username=account.username)
        log.info("broker account %s (%s) ensured", account.username, rolename)

    async def disable(self, username: str) -> None:
        await self._checked("disableClient", username=username, tolerate=("not found",))
        log.info("broker account %s disabled", username)

    async def revoke(self, username: str) -> None:
        state = await self.get(username)
        if state is None:
            return
        for rolename in state.roles:
            await self._checked("removeClientRole", username=username, rolename=rolename, tolerate=("not found",))
        await self._checked("disableClient", username=username, tolerate=("not found",))
        log.info("broker account %s revoked (roles %s removed, disabled)", username, ", ".join(state.roles))

    async def delete(self, username: str) -> None:
        await self._checked("deleteClient", username=username, tolerate=("not found",))
        log.info("broker account %s deleted", username)

    async def get(self, username: str) -> ClientState | None:
        response = await self._checked("getClient", username=username, tolerate=("not found",))
        if response.get("error"):
            return None
        return _state(response["data"]["client"])

    async def clients(self) -> list[ClientState]:
        response = await self._checked("listClients", verbose=True)
        return [_state(c) for c in response["data"]["clients"]]


def _state(client: dict[str, Any]) -> ClientState:
    return ClientState(username=client["username"], roles=tuple(r["rolename"] for r in client.get("roles", [])),
                       disabled=bool(client.get("disabled", False)))
