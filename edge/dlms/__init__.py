"""DLMS/COSEM at the edge: the meter adapter (client) and a meter simulator (server), on gurux-dlms.

gurux-dlms is GPLv2-only; Gridwire is GPL-2.0-or-later, so the edge may import it.

The names below are imported when first used (PEP 562): a concentrator without DLMS meters
does not load gurux-dlms, and one with them does not load the simulators, nor the parts of
gurux-dlms it does not use (:mod:`edge.dlms.gurux_loader`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge.dlms import gurux_loader
from edge.lazy import exports

# gurux-dlms in part: only the modules used (edge/dlms/gurux_loader.py; issue 15: RSS).
gurux_loader.install()

if TYPE_CHECKING:
    from edge.dlms.adapter import DlmsMeterAdapter
    from edge.dlms.config import DlmsMeterConfig, SecurityMode
    from edge.dlms.cosem_server import ServerSecurity
    from edge.dlms.counter_store import InvocationCounterStore
    from edge.dlms.errors import DlmsAuthenticationError, DlmsCommunicationError, DlmsError, DlmsProtocolError
    from edge.dlms.meter_model import MeterModel
    from edge.dlms.serial_simulator import DlmsSerialMeterSimulator
    from edge.dlms.simulator import DlmsMeterSimulator

# Each name and the module it comes from.
_WHERE = {
    "DlmsMeterAdapter": "edge.dlms.adapter",
    "DlmsMeterConfig": "edge.dlms.config",
    "SecurityMode": "edge.config_lean",
    "ServerSecurity": "edge.dlms.cosem_server",
    "InvocationCounterStore": "edge.dlms.counter_store",
    "DlmsAuthenticationError": "edge.dlms.errors",
    "DlmsCommunicationError": "edge.dlms.errors",
    "DlmsError": "edge.dlms.errors",
    "DlmsProtocolError": "edge.dlms.errors",
    "MeterModel": "edge.dlms.meter_model",
    "DlmsSerialMeterSimulator": "edge.dlms.serial_simulator",
    "DlmsMeterSimulator": "edge.dlms.simulator",
}

__all__ = sorted(_WHERE)


__getattr__ = exports(__name__, globals(), _WHERE)
