"""Broker accounts with the registry as the source of truth: what the API does when an
organisation's app asks for MQTT credentials, when a concentrator redeems a provisioning claim,
and when a device is decommissioned.

Every change is recorded in the registry first and then applied to the broker through
:class:`broker.accounts.BrokerAccounts` (no restart). :meth:`AccountService.sync` applies the
registry's whole state again (at API start): a broker that lost its accounts gets them back,
except passwords, which only the apps hold (the broker keeps their hashes).

Revocation (a re-provisioned or decommissioned concentrator): its older certificates are marked
revoked, the CRL is written again and the broker told to re-read it (SIGHUP), and then its
account loses its roles, which disconnects it at once. Its reconnection with the old certificate
fails the TLS handshake; with no certificate on the CRL yet (no CRL configured), it would
connect but be refused everything.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509

from broker.accounts import Account, BrokerAccounts, Kind
from broker.crl import build_crl, signal_reload, write_crl
from broker.errors import Conflict, Forbidden, Unavailable
from broker.pki import CertificateAuthority, PkiError, load_request, pem, public_key_sha256
from cloud.accounts.store import AccountStore
from cloud.registry.models import utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str
    password: str


@dataclass(frozen=True, slots=True)
class Issued:
    concentrator_id: str
    certificate_pem: str
    ca_pem: str
    serial: str
    not_after: datetime


class AccountService:
    def __init__(self, store: AccountStore, broker: BrokerAccounts | None, *, ca_dir: Path | None,
                 crl_file: Path | None, broker_pid_file: Path | None, reserved: frozenset[str] = frozenset()) -> None:
        self.store = store
        self._broker = broker
        self._ca_dir = ca_dir
        self._crl_file = crl_file
        self._pid_file = broker_pid_file
        self._reserved = reserved
        self._crl_lock = asyncio.Lock()

    def broker(self) -> BrokerAccounts:
        if self._broker is None:
            raise Unavailable("this API cannot administer broker accounts: log it in to the broker with an "
                              "account of kind api (GRIDWIRE_MQTT_USERNAME)")
        return self._broker

    def ca(self) -> CertificateAuthority:
        if self._ca_dir is None:
            raise Conflict("this API has no certificate authority configured (set GRIDWIRE_PKI_DIR to the CA's "
                           "directory)")
        try:
            return CertificateAuthority.load(self._ca_dir)
        except PkiError as exc:
            log.error("provisioning refused: %s", exc)
            raise Conflict("this API's certificate authority cannot be loaded; see the API's log") from exc

    # --- apps and devices -------------------------------------------------------------------

    async def create_password_account(self, *, username: str, kind: Kind, subject: str,
                                      organisation: str) -> Credentials:
        """A new password (shown once) for an app's or a device's account; the account made or enabled."""
        broker = self.broker()
        password = secrets.token_urlsafe(24)
        await self.store.put_account(username=username, kind=kind, subject=subject, organisation=organisation)
        await broker.ensure(Account(username=username, password=password, role=kind.value, subject=subject))
        return Credentials(username=username, password=password)

    async def set_disabled(self, username: str, disabled: bool) -> None:
        broker = self.broker()
        row = await self.store.account(username)
        await self.store.set_disabled(username, disabled)
        if disabled:
            await broker.disable(username)
        else:
            state = await broker.get(username)
            if state is None:
                raise Conflict(f"the broker has no account {username!r} (it lost it): create new credentials")
            await broker.ensure(Account(username=username, password=None, role=row.kind, subject=row.subject))

    async def delete(self, username: str) -> None:
        broker = self.broker()
        await self.store.delete_account(username)
        await broker.delete(username)

    # --- concentrators ----------------------------------------------------------------------

    async def create_claim(self, *, concentrator_id: str, organisation: str, ttl: timedelta) -> tuple[str, datetime]:
        self.ca()  # refuse now, not when the appliance comes
        self.broker()
        token = f"gwc_{secrets.token_urlsafe(24)}"
        expires_at = utcnow() + ttl
        await self.store.add_claim(token=token, concentrator_id=concentrator_id, organisation=organisation,
                                   expires_at=expires_at)
        return token, expires_at

    async def redeem(self, token: str, csr_pem: str, *, days: int) -> Issued:
        """The certificate for a claim and the key of ``csr_pem``; the same key asking again gets
        the same certificate (its answer was lost); Forbidden for an unknown or expired claim,
        Conflict for a claim another key redeemed."""
        claim = await self.store.claim(token)
        if claim is None:
            raise Forbidden("unknown provisioning claim")
        csr = load_request(csr_pem)  # PkiError (Invalid): 422
        fingerprint = public_key_sha256(csr)
        ca = self.ca()
        if claim.redeemed_at is not None:
            return self._again(claim.public_key_sha256, claim.certificate_pem, fingerprint, ca, claim.concentrator_id)
        if claim.expires_at <= utcnow():
            raise Forbidden("the provisioning claim has expired: ask for a new one")
        broker = self.broker()
        cid = claim.concentrator_id
        cert = await asyncio.to_thread(ca.sign_request, csr_pem, cid, days=days, reserved=self._reserved)
        serial = format(cert.serial_number, "x")
        if not await self.store.redeem(token, public_key_sha256=fingerprint, certificate_pem=pem(cert)):
            again = await self.store.claim(token)
            assert again is not None
            return self._again(again.public_key_sha256, again.certificate_pem, fingerprint, ca, cid)
        await self.store.add_certificate(serial=serial, concentrator_id=cid, not_after=cert.not_valid_after_utc)
        await self.store.put_account(username=cid, kind=Kind.CONCENTRATOR, subject=cid, organisation=None)
        older = await self.store.revoke_certificates(cid, keep=serial)
        if older:
            await self.publish_crl()
            await broker.revoke(cid)  # disconnects whoever is logged in with an older certificate
        await broker.ensure(Account(username=cid, password=None, role=Kind.CONCENTRATOR.value))
        log.info("issued certificate %s for concentrator %s (claim of %s); revoked %s", serial, cid,
                 claim.organisation, ", ".join(older) or "none")
        return Issued(concentrator_id=cid, certificate_pem=pem(cert), ca_pem=pem(ca.cert), serial=serial,
                      not_after=cert.not_valid_after_utc)

    @staticmethod
    def _again(fingerprint: str | None, cert_pem: str | None, asked: str, ca: CertificateAuthority,
               cid: str) -> Issued:
        if fingerprint != asked or cert_pem is None:
            raise Conflict("this provisioning claim was used already (by another key): ask for a new one")
        cert = x509.load_pem_x509_certificate(cert_pem.encode())
        return Issued(concentrator_id=cid, certificate_pem=cert_pem, ca_pem=pem(ca.cert),
                      serial=format(cert.serial_number, "x"), not_after=cert.not_valid_after_utc)

    async def decommissioned(self, device: str) -> None:
        """Every certificate of ``device`` revoked (CRL) and its broker accounts stripped and disconnected."""
        if await self.store.revoke_certificates(device):
            await self.publish_crl()
        for row in await self.store.accounts(subject=device):
            if row.kind in (Kind.CONCENTRATOR.value, Kind.DEVICE.value):
                await self.store.set_disabled(row.username, True)
                await self.broker().revoke(row.username)

    async def publish_crl(self) -> None:
        """Write the CRL from the registry's revocations and have the broker re-read it."""
        if self._crl_file is None:
            log.warning("no GRIDWIRE_CRL_FILE: revoked certificates still pass the TLS handshake (their accounts "
                        "are refused everything)")
            return
        ca = self.ca()
        async with self._crl_lock:
            entries = await self.store.revoked()
            await asyncio.to_thread(write_crl, self._crl_file, build_crl(ca, entries))
            if self._pid_file is not None:
                pid = signal_reload(self._pid_file)
                log.info("CRL of %d certificate(s) written to %s; broker %d told to re-read it", len(entries),
                         self._crl_file, pid)
            else:
                log.warning("CRL written to %s; no GRIDWIRE_BROKER_PID_FILE: reload the broker (SIGHUP) yourself",
                            self._crl_file)

    async def sync(self) -> None:
        """Apply the registry's accounts to the broker again (roles, disabled state)."""
        broker = self.broker()
        for row in await self.store.accounts():
            if row.disabled:
                await broker.revoke(row.username)
            elif row.kind == Kind.CONCENTRATOR.value or await broker.get(row.username) is not None:
                await broker.ensure(Account(username=row.username, password=None, role=row.kind, subject=row.subject))
            else:
                log.warning("the broker has no account %s (%s): its credentials must be created again",
                            row.username, row.kind)
