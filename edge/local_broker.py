"""The concentrator's own Mosquitto for external adapters, generated from its config's ``[local]``.

Accounts (dynamic security, deny by default):

- the concentrator (``local.username``, kind ``local-concentrator``): reads every
  ``smartMeterMessage/+/+``, writes ``adapter/+/ack``;
- each adapter of ``local.adapters`` (kind ``adapter``, username = its ``adapter_id``): writes
  ``smartMeterMessage/<m>/+`` for the meterIndividualIds of its OMDP adapter config only (a
  publish for another meter is refused with reason code 0x87), reads ``adapter/<its id>/ack``.

Listeners: a plain one on loopback (``local.port``) for the concentrator and adapters on the
same device; adapters on other devices get a TLS listener only (``local.tls_bind``,
``local.tls_port``, the broker's certificate), with password login. Nothing listens in plain
text beyond loopback.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from broker.accounts import Account, Kind
from broker.mosquitto_conf import BrokerConfig
from edge.config import ConfigError
from edge.local_intake import adapter_meters

if TYPE_CHECKING:
    from edge.config_lean import LocalListener


def local_accounts(local: LocalListener) -> list[Account]:
    """The local broker's accounts: the concentrator's and each adapter's, fenced to its meters."""
    if local.username is None or local.secret() is None:
        raise ConfigError("local: the concentrator's account needs username and password (or password_env)")
    accounts = [Account(username=local.username, password=local.secret(), role=Kind.LOCAL_CONCENTRATOR.value)]
    for adapter in local.adapters:
        try:
            meters = adapter_meters([(adapter.adapter_id, adapter.adapter_config)])
        except ValueError as exc:
            raise ConfigError(f"local.adapters {adapter.adapter_id}: {exc}") from exc
        if adapter.secret() is None:
            raise ConfigError(f"local.adapters {adapter.adapter_id}: give password or password_env")
        accounts.append(Account(username=adapter.adapter_id, password=adapter.secret(), role=Kind.ADAPTER.value,
                                subject=adapter.adapter_id, meters=tuple(sorted(meters))))
    return accounts


def local_broker_config(local: LocalListener, *, data_dir: Path, run_as: str | None = None) -> BrokerConfig:
    """The Mosquitto config of the local listener (write it with broker.mosquitto_conf.write_broker_files)."""
    return BrokerConfig(port=local.port, bind="127.0.0.1", data_dir=data_dir, accounts=local_accounts(local),
                        run_as=run_as, tls_password_port=local.tls_port, tls_bind=local.tls_bind,
                        tls_ca_file=local.tls_ca_file, tls_cert_file=local.tls_cert_file,
                        tls_key_file=local.tls_key_file,
                        # Readings wait in the adapters' outboxes until the concentrator confirms
                        # them: the broker's own backlog need not be large.
                        max_queued_messages=100_000, max_queued_bytes=256 * 1024 * 1024)
