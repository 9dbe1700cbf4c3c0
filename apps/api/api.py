"""The API object: routers, authentication, the rate limit and the error mapping,
mounted at ``/api/v1/`` (``metaweb/urls.py``)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.urls import URLPattern
from ninja import NinjaAPI

from apps.api import (
    adaptations,
    annotations,
    comparison,
    experiments,
    external,
    model_refs,
    registry,
    run_files,
    runs,
    saved_views,
    sweeps,
    tasksets,
    teams,
)
from apps.api.auth import SessionCsrfAuth, TokenAuth
from apps.api.docs import VendoredSwagger
from apps.api.errors import install_error_handlers
from apps.api.parser import NulSafeParser
from apps.api.throttle import CallerRateThrottle

api = NinjaAPI(
    title="MetaWeb API",
    version="1",
    description=(
        "Send a personal access token (Settings, API tokens) as `Authorization: Bearer ...`, "
        "or use the browser session with the CSRF token. Validation errors are 422 with "
        "`{detail: [{loc, msg}]}`; other teams' objects are 404; over the rate limit, 429 "
        "with `Retry-After`."
    ),
    urls_namespace="api",
    auth=[TokenAuth(), SessionCsrfAuth()],
    throttle=[CallerRateThrottle()],
    docs=VendoredSwagger(),
    docs_url="/docs",
    openapi_url="/openapi.json",
    docs_decorator=login_required,
    parser=NulSafeParser(),
)
install_error_handlers(api)

for module in (
    teams,
    tasksets,
    experiments,
    runs,
    run_files,
    saved_views,
    annotations,
    sweeps,
    external,
    registry,
    model_refs,
    adaptations,
    comparison,
):
    api.add_router("/", module.router)


def api_urls() -> tuple[list[Any], str, str]:
    """``api.urls`` with the endpoints exempt from LoginRequiredMiddleware: they
    authenticate themselves (token or session) and answer 401 in JSON, not a
    redirect. The docs page and the schema keep the login redirect."""
    patterns, app_name, namespace = api.urls
    for pattern in patterns:
        if isinstance(pattern, URLPattern) and pattern.name not in {"openapi-json", "openapi-view"}:
            pattern.callback.login_required = False  # type: ignore[attr-defined]
    return patterns, app_name, namespace
