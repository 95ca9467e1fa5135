"""A webhook delivery loop in a process of its own, for tests that SIGKILL it mid-POST.

Usage: python -m tests.cloud.core.delivery_child <registry url> <lease seconds> <http timeout seconds>
(the sealing key ring that opens the webhook secrets in GRIDWIRE_SECRETS_KEY)
"""

from __future__ import annotations

import asyncio
import logging
import sys
from datetime import timedelta

from broker.sealing import KeyRing
from broker.session import Backoff
from cloud.notify.delivery import DeliveryPolicy, WebhookDelivery
from cloud.notify.webhook import WebhookSender
from cloud.registry.db import create_engine


async def main(url: str, lease: float, timeout: float) -> None:
    engine = create_engine(url)
    sender = WebhookSender(engine=engine, sealing=KeyRing.from_environment(), timeout=timeout)
    policy = DeliveryPolicy(lease=timedelta(seconds=lease), poll_interval=0.05,
                            backoff=Backoff(initial=0.05, maximum=0.2))
    await WebhookDelivery(sender=sender, policy=policy, worker="child").run()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(main(sys.argv[1], float(sys.argv[2]), float(sys.argv[3])))
