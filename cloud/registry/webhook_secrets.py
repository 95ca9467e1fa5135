"""Organisations' webhook secrets, sealed at rest as device secrets are (:mod:`cloud.registry.secrets`).

A webhook secret is sealed with the platform's sealing key ring (``GRIDWIRE_SECRETS_KEY``,
:mod:`broker.sealing`) for its place, ``organisation:<identification>:webhook_secret``, when the
registry writes it (:meth:`cloud.registry.Registry.add_organisation`, ``update_organisation``).
It is opened in one place, where a delivery is signed (:meth:`cloud.notify.webhook.WebhookSender.post`);
the web API shows only whether one is set.

Without a sealing key the rule is the device secrets': none can be stored (:class:`NoSealingKey`,
a 409), and the processes that need the ring (the API, which writes them; the domain processes,
which sign with them) refuse to start while the registry holds any (:func:`check_ring`). A value
an older release stored in clear is sealed by ``gridwire secrets reseal`` (:func:`reseal`), which
also moves values to the ring's first key when keys rotate; until then those processes refuse to
start, naming it.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from broker.sealing import KEY_ENV, KeyRing
from cloud.registry.models import Organisation
from cloud.registry.secrets import NoSealingKey, check_sealed


def context(organisation: str) -> str:
    """What an organisation's webhook secret is sealed for."""
    return f"organisation:{organisation}:webhook_secret"


def _ring(ring: KeyRing | None) -> KeyRing:
    if ring is None:
        raise NoSealingKey(f"the platform has no sealing key ({KEY_ENV}): a webhook secret cannot be stored or used")
    return ring


def seal(ring: KeyRing | None, organisation: str, clear: str) -> str:
    """``clear`` sealed for ``organisation``'s webhook; NoSealingKey without a ring."""
    return _ring(ring).seal(clear, context=context(organisation))


def reveal(ring: KeyRing | None, organisation: str, sealed: str) -> str:
    """The clear secret, to sign a delivery with and for nothing else; NoSealingKey without a
    ring, SealingError for a value the ring does not open (or one in clear)."""
    return _ring(ring).open(sealed, context=context(organisation))


async def _stored(engine: AsyncEngine) -> list[tuple[str, str]]:
    async with async_sessionmaker(engine)() as session:
        rows = (await session.execute(select(Organisation.identification, Organisation.webhook_secret)
                                      .where(Organisation.webhook_secret.is_not(None)))).all()
    return [(secret, context(org)) for org, secret in rows]


async def check_ring(engine: AsyncEngine, ring: KeyRing | None) -> int:
    """Refuse a ring that cannot open the webhook secrets the registry holds, or any held in clear
    (:func:`cloud.registry.secrets.check_sealed`); how many are held."""
    values = await _stored(engine)
    check_sealed(ring, values, what="webhook secret(s)")
    return len(values)


async def reseal(engine: AsyncEngine, ring: KeyRing) -> int:
    """Seal every webhook secret in clear, and reseal every one not sealed with the ring's first
    key: how many were rewritten."""
    changed = 0
    async with async_sessionmaker(engine).begin() as session:
        rows = (await session.execute(select(Organisation).where(Organisation.webhook_secret.is_not(None))
                                      .with_for_update())).scalars().all()
        for row in rows:
            assert row.webhook_secret is not None
            if ring.needs_reseal(row.webhook_secret):
                row.webhook_secret = ring.reseal(row.webhook_secret, context=context(row.identification))
                changed += 1
    return changed
