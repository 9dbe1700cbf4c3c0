"""HTTP to the API: one ``requests.Session`` (keep-alive) with the bearer token,
JSON in and out, errors turned into :class:`ApiError`.

A 429 is waited out (``Retry-After``, at most ``MAX_429_RETRIES`` times): the rate
limit refuses a request before any work, so resending it is safe. Network errors
are raised as :class:`NetworkError`; only :func:`metaweb.client.track`'s sender
retries them, because its batches are idempotent.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

from metaweb.client.errors import ApiError, NetworkError

API_PREFIX = "/api/v1"
MAX_429_RETRIES = 5
#: Seconds to connect, and to wait for each read.
TIMEOUT = (10.0, 120.0)
CHUNK = 1 << 20


def normalise_url(url: str) -> str:
    """``http://host:8000/`` -> ``http://host:8000``; refuses what is not http(s)."""
    url = (url or "").strip().rstrip("/")
    if url.endswith(API_PREFIX):
        url = url[: -len(API_PREFIX)]
    if not url.startswith(("http://", "https://")) or len(url) < 10:
        raise ApiError(0, f"Give the server's address as http://host[:port] or https://host, not {url!r}.")
    return url


class Transport:
    def __init__(self, url: str, token: str, *, timeout: tuple[float, float] = TIMEOUT) -> None:
        self.url = normalise_url(url)
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token.strip()}"
        self.session.headers["Accept"] = "application/json"
        self.session.headers["User-Agent"] = "metaweb-client/1"

    def close(self) -> None:
        self.session.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        for attempt in range(MAX_429_RETRIES + 1):
            _rewind(kwargs.get("files"))  # a retried upload sends its files from the start
            try:
                response = self.session.request(method, self.url + API_PREFIX + path, **kwargs)
            except requests.RequestException as exc:
                raise NetworkError(f"Cannot reach {self.url}: {_reason(exc)}") from None
            if response.status_code != 429 or attempt == MAX_429_RETRIES:
                break
            response.close()
            time.sleep(retry_after(response))
        if response.status_code >= 400:
            raise error_of(response)
        return response

    def json(self, method: str, path: str, *, params: Any = None, body: Any = None, **kw: Any) -> Any:
        if isinstance(params, dict):
            params = {k: v for k, v in params.items() if v is not None and v != ""}
        if body is not None:
            kw["json"] = body
        response = self._send(method, path, params=params, **kw)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise ApiError(
                response.status_code, "The server answered with something that is not JSON."
            ) from None

    def text(self, path: str, *, params: dict | None = None) -> str:
        return self._send("GET", path, params=params).text

    def download(self, path: str, target: str | os.PathLike[str]) -> tuple[str, int]:
        """Stream a file to ``target`` (written beside it first, then renamed, so that
        a broken download leaves nothing half-written). Returns its sha256 and size."""
        target = Path(target)
        digest, size = hashlib.sha256(), 0
        response = self._send("GET", path, stream=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, partial = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as out, response:
                for chunk in response.iter_content(CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
            os.replace(partial, target)
        except requests.RequestException as exc:
            os.unlink(partial)
            raise NetworkError(f"The download broke off: {_reason(exc)}") from None
        except BaseException:
            os.unlink(partial)
            raise
        return digest.hexdigest(), size


def _rewind(files: dict[str, Any] | None) -> None:
    for value in (files or {}).values():
        handle = value[1] if isinstance(value, tuple) else value
        if hasattr(handle, "seek"):
            handle.seek(0)


def retry_after(response: requests.Response, *, default: float = 1.0, cap: float = 60.0) -> float:
    try:
        return min(cap, max(0.0, float(response.headers.get("Retry-After", default))))
    except ValueError:
        return default


def error_of(response: requests.Response) -> ApiError:
    try:
        body = response.json()
    except ValueError:
        body = None
    return ApiError.from_response(response.status_code, body)


def _reason(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.ConnectionError):
        return "the connection failed (is the server running, and the address right?)"
    if isinstance(exc, requests.Timeout):
        return "it did not answer in time"
    return type(exc).__name__


@contextlib.contextmanager
def opened_for_upload(path: str | os.PathLike[str], field: str) -> Iterator[Any]:
    """A local file opened for upload; a missing one is an error naming the field."""
    try:
        handle = open(path, "rb")  # noqa: SIM115 (closed below)
    except OSError as exc:
        raise ApiError(0, f"Cannot read {os.fspath(path)}: {exc.strerror}.", loc=["body", field]) from None
    with handle:
        yield handle
