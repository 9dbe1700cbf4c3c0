"""The client's one exception: what the API (or the network) said, in its words."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An API call that did not succeed.

    ``status`` is the HTTP status (0 when the server could not be reached);
    ``message`` the API's message (for a 422, the first error's); ``loc`` the field
    path of that error (``["body", "config", "inner_lr"]``), empty when none;
    ``errors`` every ``{"loc", "msg"}`` item of a 422.
    """

    def __init__(
        self, status: int, message: str, *, loc: list[Any] | None = None, errors: list[dict] | None = None
    ) -> None:
        self.status = status
        self.message = message
        self.loc = list(loc or [])
        self.errors = list(errors or [])
        super().__init__(str(self))

    @property
    def field(self) -> str:
        """The field path without its ``body``/``query`` root, dotted (``config.inner_lr``)."""
        parts = [str(p) for p in self.loc]
        if parts and parts[0] in {"body", "query", "path", "form", "file"}:
            parts = parts[1:]
        return ".".join(parts)

    def __str__(self) -> str:
        where = f"{self.field}: " if self.field else ""
        more = f" (and {len(self.errors) - 1} more)" if len(self.errors) > 1 else ""
        prefix = f"HTTP {self.status}: " if self.status else ""
        return f"{prefix}{where}{self.message}{more}"

    @classmethod
    def from_response(cls, status: int, body: Any) -> ApiError:
        detail = body.get("detail") if isinstance(body, dict) else None
        if isinstance(detail, list) and detail and isinstance(detail[0], dict):
            first = detail[0]
            return cls(status, str(first.get("msg", "")), loc=first.get("loc") or [], errors=detail)
        if isinstance(detail, str) and detail:
            return cls(status, detail)
        return cls(status, _STATUS_WORDS.get(status, "The server answered with an error."))


class NetworkError(ApiError):
    """The server could not be reached, or the connection broke (status 0)."""

    def __init__(self, message: str) -> None:
        super().__init__(0, message)


_STATUS_WORDS = {
    401: "Not logged in: the token is missing, wrong, revoked or expired.",
    403: "Not allowed.",
    404: "Not found.",
    413: "The request is too large.",
    429: "Too many requests; try again shortly.",
    500: "The server had an internal error.",
    502: "Bad gateway: the server behind the proxy did not answer.",
    503: "The server is unavailable.",
}
