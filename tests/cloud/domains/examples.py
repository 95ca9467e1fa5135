"""Parameters each functional operation is translated with in the tests that walk every operation."""

from __future__ import annotations

from typing import Any

# A new operation fails the tests that walk every operation until it has an entry here.
EXAMPLES: dict[str, dict[str, dict[str, Any]]] = {
    "publiclighting": {"setLight": {"on": True, "dimLevel": 50}, "getStatus": {},
                       "setDeviceSchedule": {"version": 1, "latitude": 52.0, "longitude": 5.0, "entries": [
                           {"action": {"on": True}, "at": "sunset", "offsetMinutes": 10}]}},
    "smartmetering": {"actualReads": {}, "disconnect": {}, "reconnect": {}, "firmwareVersion": {}, "alarms": {},
                      "synchronizeTime": {},
                      "keyChange": {"changeId": "0123456789abcdef", "keys": {"authentication_key": "ab" * 24}},
                      "periodicReads": {"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z"}},
    "tariffswitching": {"setSchedule": {"entries": [{"time": "07:00", "high": True}]}},
    "powerquality": {"actualValues": {}, "events": {},
                     "profile": {"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z"}},
    "loadcontrol": {"setPowerLimit": {"percent": 50}, "switchLoad": {"on": True}, "getState": {}},
}
