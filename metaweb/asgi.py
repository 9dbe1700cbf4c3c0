"""ASGI entry point: HTTP through Django, websockets through Channels.

Built once. ``django.setup()`` runs (via get_asgi_application) before the
consumers are imported, as Channels requires.
"""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "metaweb.settings.base")

django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402

from apps.teams.token_sockets import TokenSocketAuthMiddleware  # noqa: E402
from metaweb.bodylimit import BodyLimitMiddleware  # noqa: E402
from metaweb.routing import websocket_urlpatterns  # noqa: E402

# Oversized bodies are refused here, before auth and before Django spools them
# (``manage.py serve`` applies the same limits in daphne's HTTP layer).
http_application = BodyLimitMiddleware(
    django_asgi_app,
    max_bytes=settings.REQUEST_BODY_MAX_BYTES,
    max_upload_bytes=settings.REQUEST_BODY_MAX_BYTES_UPLOAD,
)

application = ProtocolTypeRouter(
    {
        "http": http_application,
        # A session, or else a bearer token (the command line's ``--follow``).
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(TokenSocketAuthMiddleware(URLRouter(websocket_urlpatterns)))
        ),
    }
)
