"""Worker writes that survive a short database outage.

A PostgreSQL restart (or failover) kills every open connection: the next query on
one raises ``OperationalError`` ("terminating connection due to administrator
command", "server closed the connection unexpectedly"), and until the server is
back every new connection is refused. :func:`with_db_retry` runs one worker write
(a claim, a heartbeat, a checkpoint record, a metric batch, the final mark) and, on
such an error, closes the calling thread's broken connection, backs off and tries
again, for up to ``settings.DB_RETRY_SECONDS`` (30 s by default) before it gives up
and raises. So an outage shorter than that bound costs a pause, not an attempt.

Retrying is safe because every write it wraps is idempotent under the attempt's
ownership token: a write whose commit reached the database before the connection
died is refused or repeated harmlessly when tried again (see ``run_claim``'s
``token``, the unique ``(run, name, step)`` of metrics, and
:func:`workers.attempt.settle`, which recognises a finish that already landed).

Only connection-level errors are retried (``OperationalError``, ``InterfaceError``);
an ``IntegrityError`` or a bug is raised at once. Nothing is retried inside a
transaction (``connection.in_atomic_block``): the transaction is gone with its
connection, and only its owner can start it again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection

logger = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

#: The errors of a lost or refused connection, worth a new connection and a retry.
RETRYABLE = (OperationalError, InterfaceError)
#: The first pause after a failure (seconds); each next pause doubles, up to MAX_PAUSE.
FIRST_PAUSE = 0.1
MAX_PAUSE = 2.0


def _drop_connection() -> None:
    """Close this thread's connection, broken or not: the next query opens a new one."""
    try:
        connection.close()
    except Exception:  # noqa: BLE001 - closing a dead socket may fail; it is gone either way
        logger.debug("closing a broken database connection failed", exc_info=True)


def with_db_retry(
    fn: Callable[P, T],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """``fn(*args, **kwargs)``, retried on a lost database connection for up to
    ``settings.DB_RETRY_SECONDS``; the last error is raised past that bound."""
    return retry_db(fn, *args, bound=float(settings.DB_RETRY_SECONDS), **kwargs)


def retry_db(
    fn: Callable[..., T],
    *args: object,
    bound: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    **kwargs: object,
) -> T:
    """:func:`with_db_retry` with its bound, pause and clock given (tests)."""
    deadline = clock() + bound
    pause = FIRST_PAUSE
    failures = 0
    while True:
        try:
            result = fn(*args, **kwargs)
        except RETRYABLE as exc:
            failures += 1
            if connection.in_atomic_block:
                raise  # the transaction went with the connection: its owner starts it again
            if clock() + pause > deadline:
                logger.error("%s: database unavailable, gave up after %s tries", _name(fn), failures)
                raise
            logger.warning("%s: database connection lost (%s); retrying in %.1f s", _name(fn), exc, pause)
            _drop_connection()
            sleep(pause)
            pause = min(pause * 2, MAX_PAUSE)
            continue
        if failures:
            logger.info("%s: done after %s database failures", _name(fn), failures)
        return result


def _name(fn: Callable[..., object]) -> str:
    return getattr(fn, "__qualname__", repr(fn))
