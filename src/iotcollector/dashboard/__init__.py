"""The built-in live dashboard: a static page at ``/`` that reads the public HTTP API."""

from iotcollector.dashboard.routes import ASSET_PREFIX, dashboard_router

__all__ = ["ASSET_PREFIX", "dashboard_router"]
