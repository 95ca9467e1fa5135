"""Request and response bodies of the OMDP meter-reading API (camelCase on the wire, as OMDP has it)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from broker.schemas import MeterReading
from broker.schemas.meter_reading import AwareDatetime
from cloud.store import PropertyFilter, ReadingQuery

# A meter as the store names it: no MQTT wildcards or separators (it is a topic level too), no
# control characters (a newline or NUL cannot be a stored tag).
MeterId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[^/+#\x00-\x1f\x7f]+$")]
# The deepest page asked for: its offset must fit the store's 64-bit integers.
MAX_PAGE_NUMBER = 1_000_000_000
# More rows than any answer can hold; the cap a bulk download's LIMIT may carry.
MAX_ROWS = 2**53


class _Body(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")


class OperationalPropertyFilter(_Body):
    """Keep readings whose property satisfies every condition given."""

    property_id: str = Field(alias="propertyId", min_length=1, max_length=128)
    numerical_value_greater_than: float | None = Field(default=None, alias="numericalValueGreaterThan",
                                                       allow_inf_nan=False)
    numerical_value_less_than: float | None = Field(default=None, alias="numericalValueLessThan", allow_inf_nan=False)
    numerical_value_equal_to: float | None = Field(default=None, alias="numericalValueEqualTo", allow_inf_nan=False)
    text_value_equal_to: str | None = Field(default=None, alias="textValueEqualTo", max_length=1024)

    def to_store(self) -> PropertyFilter:
        """Raises ValueError with the reason for an unusable filter."""
        return PropertyFilter(property_id=self.property_id, greater_than=self.numerical_value_greater_than,
                              less_than=self.numerical_value_less_than, equal_to=self.numerical_value_equal_to,
                              text_equal_to=self.text_value_equal_to)


class MeterReadingsRequest(_Body):
    """``POST /v1/meterReadings``: which readings, how many, and in which form."""

    reading_time_start: AwareDatetime = Field(alias="readingTimeStart")
    reading_time_end: AwareDatetime = Field(alias="readingTimeEnd")
    meter_individual_ids: list[MeterId] | None = Field(default=None, alias="meterIndividualIds", min_length=1,
                                                   max_length=1000)
    max_rows: int | None = Field(default=None, alias="maxRows", ge=1, le=MAX_ROWS)
    page_number: int = Field(default=1, alias="pageNumber", ge=1, le=MAX_PAGE_NUMBER)
    page_size: int = Field(default=100, alias="pageSize", ge=1)
    operational_properties: list[OperationalPropertyFilter] = Field(default_factory=list,
                                                                    alias="operationalProperties", max_length=32)
    response_format: Literal["json", "bulk"] = Field(default="json", alias="responseFormat")
    bulk_format: Literal["csv", "ndjson"] = Field(default="ndjson", alias="bulkFormat")

    @model_validator(mode="after")
    def _ordered(self) -> MeterReadingsRequest:
        if self.reading_time_start > self.reading_time_end:
            raise ValueError("readingTimeStart is after readingTimeEnd")
        for flt in self.operational_properties:
            flt.to_store()
        return self

    def to_query(self) -> ReadingQuery:
        return ReadingQuery(
            start=self.reading_time_start, end=self.reading_time_end,
            meters=None if self.meter_individual_ids is None else frozenset(self.meter_individual_ids),
            filters=tuple(f.to_store() for f in self.operational_properties),
        )


class MeterReadingsPage(BaseModel):
    """A JSON answer: one page of readings and the size of the whole answer."""

    model_config = ConfigDict(populate_by_name=True)

    meter_readings: list[MeterReading] = Field(alias="meterReadings")
    page_number: int = Field(alias="pageNumber")
    page_size: int = Field(alias="pageSize")
    total_rows: int = Field(alias="totalRows")


class BulkDownload(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    url: str
    expires_at: datetime = Field(alias="expiresAt")
    format: Literal["csv", "ndjson"]
    total_rows: int = Field(alias="totalRows")
    reason: str


class MeterReadingsBulkAnswer(BaseModel):
    """A bulk answer: where to fetch the readings (with the same bearer token) before the link expires."""

    model_config = ConfigDict(populate_by_name=True)

    bulk_download: BulkDownload = Field(alias="bulkDownload")
