"""Cloud ingest: meter readings from the broker into the time-series store."""

from cloud.ingest.batcher import WriteBatcher
from cloud.ingest.consumer import IngestConsumer

__all__ = ["IngestConsumer", "WriteBatcher"]
