"""The web API's routes, one module per area; their dependencies are in :mod:`cloud.api.deps`."""

from fastapi import APIRouter

from cloud.api.routes import (
    adapter_configs,
    admin,
    api_keys,
    bulk,
    catalogue,
    clock_drift,
    console,
    consumption,
    dead_letters,
    device_secrets,
    events,
    firmware,
    fleet,
    health,
    installation,
    loadcontrol,
    meter_exchanges,
    meter_read_schedules,
    meter_readings,
    mqtt_clients,
    powerquality,
    provisioning,
    publiclighting,
    smartmetering,
    tariffswitching,
)

# The OMDP API (create_app serves these on its own).
OMDP_ROUTERS: tuple[APIRouter, ...] = (health.router, meter_readings.router, bulk.router, catalogue.router,
                                       adapter_configs.router, dead_letters.router, consumption.router)
# What the assembled platform adds (registry, domains, clock drift, firmware).
PLATFORM_ROUTERS: tuple[APIRouter, ...] = (admin.router, api_keys.router, installation.router, provisioning.router,
                                           publiclighting.router, smartmetering.router, tariffswitching.router,
                                           loadcontrol.router, meter_read_schedules.router, powerquality.router,
                                           clock_drift.router, events.router, firmware.router, fleet.router,
                                           console.router, mqtt_clients.router, device_secrets.router,
                                           meter_exchanges.router)
