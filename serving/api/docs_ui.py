"""The API's documentation pages, /docs (Swagger UI) and /redoc (ReDoc), with their scripts,
styles and icon served by the service itself, so that they render where no CDN can be reached.

The pages are FastAPI's own (``get_swagger_ui_html``, ``get_redoc_html``: same paths, methods
and titles as FastAPI's defaults, which the app turns off); only the asset URLs point here, at the
copies the ``fastapi-offline`` package ships (Swagger UI 5 and ReDoc 2, pinned in
.ci/constraints.txt). ReDoc's Google Fonts are left out: the page falls back to local fonts.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

DOCS_URL = "/docs"
REDOC_URL = "/redoc"
ASSETS_URL = "/docs-assets"  # /docs-assets/<file name>: StaticFiles (ETag, 304), no listing
ASSETS_DIR = Path(fastapi_offline.__file__).parent / "static"


def install(app: FastAPI) -> None:
    """Add the pages and their assets to ``app``, built with ``docs_url=None, redoc_url=None``."""
    openapi_url, redirect_url = app.openapi_url, app.swagger_ui_oauth2_redirect_url
    assert openapi_url and redirect_url, "the docs pages need the OpenAPI document"
    assets = StaticFiles(directory=ASSETS_DIR)

    def root(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    async def swagger_ui(request: Request) -> HTMLResponse:
        prefix = root(request)
        return get_swagger_ui_html(
            openapi_url=prefix + openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{prefix}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{prefix}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{prefix}{ASSETS_URL}/favicon.png",
            oauth2_redirect_url=prefix + redirect_url,
            init_oauth=app.swagger_ui_init_oauth,
            swagger_ui_parameters=app.swagger_ui_parameters,
        )

    async def asset(request: Request) -> Response:
        return await assets.get_response(request.path_params["name"], request.scope)

    async def swagger_ui_redirect(_: Request) -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    async def redoc(request: Request) -> HTMLResponse:
        prefix = root(request)
        return get_redoc_html(
            openapi_url=prefix + openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{prefix}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{prefix}{ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )

    # add_route, as FastAPI adds its own: GET and HEAD, left out of the OpenAPI document. The
    # assets are a route too, not a mount, so that a 405 there names its methods as others do.
    app.add_route(f"{ASSETS_URL}/{{name}}", asset, include_in_schema=False)
    app.add_route(DOCS_URL, swagger_ui, include_in_schema=False)
    app.add_route(redirect_url, swagger_ui_redirect, include_in_schema=False)
    app.add_route(REDOC_URL, redoc, include_in_schema=False)
