"""A SmartMeterAdapter as a process of its own (``gridwire adapter run``), for a meter wired to
another device than the concentrator: it reads one P1, DLMS or Modbus meter with the edge's
readers and publishes OMDP MeterReadings to a concentrator's local listener."""

from edge.standalone.adapter import StandaloneAdapter
from edge.standalone.config import StandaloneConfig, load_standalone_config

__all__ = ["StandaloneAdapter", "StandaloneConfig", "load_standalone_config"]
