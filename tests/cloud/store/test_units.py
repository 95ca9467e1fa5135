"""The lean layout's pieces: the frozen implied units, derived ids and the reading key."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from broker.schemas import MeterReading
from cloud.store import schema
from cloud.store.line_protocol import to_ns
from cloud.store.units import IMPLIED_UNITS_V1

# Stored lean points mean what this table said when they were written: it may never change.
FROZEN = "6290d21db3f38828f054ed24c9e811487924f548c819470e9d978011dd389c6d"


def test_the_implied_units_never_change() -> None:
    digest = hashlib.sha256(json.dumps(sorted(IMPLIED_UNITS_V1.items())).encode()).hexdigest()
    assert digest == FROZEN, "cloud/store/units.py is layout version 1 of stored data: never edit it"
    assert IMPLIED_UNITS_V1["OBIS_1.8.1"] == "kWh" and "OBIS_0.0.96.13.0" not in IMPLIED_UNITS_V1


def test_unit_fields() -> None:
    assert schema.unit_field("OBIS_1.8.1", "kWh") is None
    assert schema.unit_field("OBIS_1.8.1", "Wh") == "Wh"
    assert schema.unit_field("OBIS_1.8.1", None) == ""
    assert schema.unit_field("vendor.x", None) is None and schema.unit_field("vendor.x", "u") == "u"
    for pid, unit in [("OBIS_1.8.1", "kWh"), ("OBIS_1.8.1", "Wh"), ("OBIS_1.8.1", None), ("vendor.x", None),
                      ("vendor.x", "u")]:
        assert schema.stored_unit(pid, schema.unit_field(pid, unit), lean=True) == unit
        assert schema.stored_unit(pid, unit, lean=False) == unit


moments = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1),
                       timezones=st.sampled_from([UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5))]))


@given(meter=st.text(min_size=1, max_size=20), when=moments,
       meter_class=st.sampled_from([None, "ELECTRICITY", "GAS", "WATER", "HEAT"]))
def test_derived_ids_and_keys(meter: str, when: datetime, meter_class: str | None) -> None:
    stamp = to_ns(when)
    ident = str(MeterReading.derive_id(meter, when))
    assert schema.derived_id(meter, stamp) == ident and schema.is_derived(ident, meter, stamp)
    assert not schema.is_derived(str(uuid.uuid4()), meter, stamp)
    assert not schema.is_derived(ident, meter, stamp + 1)  # a time the models cannot hold
    key = schema.reading_key(ident, meter_class)
    low, high = schema.key_range(ident)
    assert low <= key < high and high - low == 8 and key < 2**23
    assert schema.class_of_key(key) == meter_class
