"""Tests of edge.modbus."""
