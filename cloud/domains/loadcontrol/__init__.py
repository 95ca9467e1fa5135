"""Distributed generation and load control: inverter power limits, controllable loads, their state."""
