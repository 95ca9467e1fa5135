"""Sunrise and sunset for a place and a day, computed on the device (pure, no dependencies).

The NOAA solar calculator's equations (the sun's declination and the equation of time for the
day, the hour angle at which the sun's centre is 0.833 degrees below the horizon), good to about
a minute between the polar circles. The edge may not import astral (Apache-2.0 only, and the
concentrator process loads GPLv2-only gurux), and a light that computes its own sunset switches
with its link down. Polar day and night have no event: None.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta

SUN_ALTITUDE = -0.833  # degrees: refraction plus the sun's radius


def _event(day: date, latitude: float, longitude: float, *, rising: bool) -> datetime | None:
    noon = datetime(day.year, day.month, day.day, 12, tzinfo=UTC) - timedelta(hours=longitude / 15)
    moment = noon
    for _ in range(3):  # the sun's position at the estimate, then refine
        julian_century = ((moment - datetime(2000, 1, 1, 12, tzinfo=UTC)).total_seconds() / 86_400) / 36_525
        mean_longitude = (280.46646 + julian_century * (36000.76983 + 0.0003032 * julian_century)) % 360
        mean_anomaly = math.radians(357.52911 + julian_century * (35999.05029 - 0.0001537 * julian_century))
        eccentricity = 0.016708634 - julian_century * (0.000042037 + 0.0000001267 * julian_century)
        centre = (math.sin(mean_anomaly) * (1.914602 - julian_century * (0.004817 + 0.000014 * julian_century))
                  + math.sin(2 * mean_anomaly) * (0.019993 - 0.000101 * julian_century)
                  + math.sin(3 * mean_anomaly) * 0.000289)
        omega = math.radians(125.04 - 1934.136 * julian_century)
        apparent = math.radians(mean_longitude + centre - 0.00569 - 0.00478 * math.sin(omega))
        obliquity = math.radians(23 + (26 + (21.448 - julian_century * (46.815 + julian_century * (
            0.00059 - julian_century * 0.001813))) / 60) / 60 + 0.00256 * math.cos(omega))
        declination = math.asin(math.sin(obliquity) * math.sin(apparent))
        y = math.tan(obliquity / 2) ** 2
        l0 = math.radians(mean_longitude)
        equation_of_time = 4 * math.degrees(
            y * math.sin(2 * l0) - 2 * eccentricity * math.sin(mean_anomaly)
            + 4 * eccentricity * y * math.sin(mean_anomaly) * math.cos(2 * l0)
            - 0.5 * y * y * math.sin(4 * l0) - 1.25 * eccentricity ** 2 * math.sin(2 * mean_anomaly))
        phi = math.radians(latitude)
        cos_hour = ((math.sin(math.radians(SUN_ALTITUDE)) - math.sin(phi) * math.sin(declination))
                    / (math.cos(phi) * math.cos(declination)))
        if not -1 <= cos_hour <= 1:
            return None
        hour_angle = math.degrees(math.acos(cos_hour))
        solar_noon_minutes = 720 - 4 * longitude - equation_of_time
        minutes = solar_noon_minutes + (-4 if rising else 4) * hour_angle
        moment = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(minutes=minutes)
    return moment


def sunrise(day: date, latitude: float, longitude: float) -> datetime | None:
    """When the sun rises at the place on ``day`` (UTC), or None (polar day or night)."""
    return _event(day, latitude, longitude, rising=True)


def sunset(day: date, latitude: float, longitude: float) -> datetime | None:
    """When the sun sets at the place on ``day`` (UTC), or None (polar day or night)."""
    return _event(day, latitude, longitude, rising=False)
