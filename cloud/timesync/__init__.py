"""Cloud time synchronisation: the NTP-style time service over MQTT and meter clock drift history."""

from cloud.timesync.consumer import ALL_DRIFT_REPORTS, DriftRecorder, TimeService
from cloud.timesync.store import DriftRecord, DriftStore, drift_history

__all__ = ["ALL_DRIFT_REPORTS", "DriftRecord", "DriftRecorder", "DriftStore", "TimeService", "drift_history"]
