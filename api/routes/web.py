"""The dashboard web page: static HTML and JavaScript served by the API, no build step.

``/dashboard`` is the page; ``/static/...`` its script, styles and the vendored chart
library (``api/static/vendor/``). The page signs in with the auth endpoints and reads
the JSON dashboards with the access token, so it needs nothing the API does not offer.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from api.deps import Public

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"

# A static page: it signs in and calls the API itself.
router = APIRouter(tags=["web"], dependencies=[Public])


@router.get("/dashboard", summary="The dashboard web page", include_in_schema=False)
async def dashboard_page() -> FileResponse:
    """The single-page dashboard (learner, teacher and operator views)."""
    return FileResponse(STATIC_DIR / "dashboard.html", media_type="text/html")


def static_files() -> StaticFiles:
    """The page's assets, to mount at ``/static``."""
    return StaticFiles(directory=STATIC_DIR)
