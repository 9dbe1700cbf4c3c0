"""The client's IP address, for login throttling (django-axes' ``AXES_CLIENT_IP_CALLABLE``).

Behind the TLS proxy (``METAWEB_BEHIND_TLS``), ``REMOTE_ADDR`` is the proxy's
address for every client, so locking it out would lock everyone out. The proxy
(``deploy/Caddyfile``) appends the address it saw to ``X-Forwarded-For``: the
last entry is the one we can trust; earlier ones are whatever the client sent.
Without the proxy, ``REMOTE_ADDR`` is the client.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str | None:
    if getattr(settings, "BEHIND_TLS", False):
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        last = forwarded.rsplit(",", 1)[-1].strip()
        if last:
            return last
    return request.META.get("REMOTE_ADDR")
