"""The cloud's time-series store: meter readings in InfluxDB over its v1 HTTP API."""

from cloud.store.errors import StoreError, StoreRejected, StoreUnavailable
from cloud.store.influx import InfluxStore
from cloud.store.line_protocol import LineProtocolError, check_reading, encode_batch, encode_reading
from cloud.store.query import PropertyFilter, ReadingQuery

__all__ = [
    "InfluxStore", "LineProtocolError", "PropertyFilter", "ReadingQuery", "StoreError", "StoreRejected",
    "StoreUnavailable", "check_reading", "encode_batch", "encode_reading",
]
