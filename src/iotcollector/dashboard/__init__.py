"""The built-in pages: the live dashboard at ``/`` that reads the public HTTP API, and the API
docs at ``/docs`` (Swagger UI, vendored)."""

from iotcollector.dashboard.routes import ASSET_PREFIX, dashboard_router, docs_router, load_assets

__all__ = ["ASSET_PREFIX", "dashboard_router", "docs_router", "load_assets"]
