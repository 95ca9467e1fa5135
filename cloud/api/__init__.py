"""The cloud web API (FastAPI): OMDP meter readings, bulk downloads, health; more routers plug in."""

from cloud.api.app import create_app

__all__ = ["create_app"]
