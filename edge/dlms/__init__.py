"""DLMS/COSEM at the edge: the meter adapter (client) and a meter simulator (server), on gurux-dlms.

gurux-dlms is GPLv2-only; Gridwire is GPL-2.0-or-later, so the edge may import it.
"""

from edge.dlms.adapter import DlmsMeterAdapter
from edge.dlms.config import DlmsMeterConfig, SecurityMode
from edge.dlms.cosem_server import ServerSecurity
from edge.dlms.counter_store import InvocationCounterStore
from edge.dlms.errors import DlmsAuthenticationError, DlmsCommunicationError, DlmsError, DlmsProtocolError
from edge.dlms.meter_model import MeterModel
from edge.dlms.serial_simulator import DlmsSerialMeterSimulator
from edge.dlms.simulator import DlmsMeterSimulator

__all__ = [
    "DlmsAuthenticationError", "DlmsCommunicationError", "DlmsError", "DlmsMeterAdapter", "DlmsMeterConfig",
    "DlmsMeterSimulator", "DlmsProtocolError", "DlmsSerialMeterSimulator", "InvocationCounterStore", "MeterModel",
    "SecurityMode", "ServerSecurity",
]
