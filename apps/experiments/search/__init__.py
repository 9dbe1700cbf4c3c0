"""The run search language: one search box, parsed into a syntax tree, then
compiled to a Django ``Q``. Nothing the user types becomes SQL or a lookup string.

Example::

    algorithm:maml status:succeeded config.inner_lr>=0.01 metric.val_loss<0.3
    by:alice created>2026-11-01 "free text"

- Terms side by side must all match (``AND``); ``OR``, ``NOT`` (or ``-term``) and
  parentheses combine them; ``NOT`` binds tighter than ``AND``, ``AND`` than ``OR``.
  Keywords are case-insensitive; quote them to search for the word itself. A
  ``-`` negates only before a letter, ``_``, ``(`` or ``"`` (``-1`` is a word).
- ``field<op>value`` with no spaces, ``op`` one of ``: = != > >= < <=``. ``:`` is
  equality, except for ``experiment`` and ``taskset`` (part of the name, ignoring
  case) and ``by`` (the username, ignoring case). ``=`` is always exact.
  ``!=`` matches rows that have a value and a different one (a run never
  finished is not ``finished!=2026-11-01``); ``NOT`` is the exact complement.
- Values: ``"quoted with \\" and \\\\ escapes"`` or bare. Numbers, dates
  (``2026-11-01`` is the whole day, in the site's time zone) and date-times
  (``2026-11-01T14:30``) are typed by their field; choices are checked.
- ``config.<key>`` (dotted for nesting): a bare number compares numbers, bare
  ``true``/``false`` booleans, anything else strings; a run whose value has another
  type, or lacks the key, does not match. ``metric.<name>`` compares a succeeded
  run's final metric (see ``fields.SUMMARY_METRIC_SECTIONS``); runs in progress
  have none yet and do not match.
- ``tag:<name>`` matches runs that carry the tag or whose experiment carries it
  (names ignore case); ``NOT tag:<name>`` the others.
- Any other word or quoted phrase is free text: part of the experiment's or task
  set's name, the algorithm or the run's error, ignoring case.

Errors are :class:`QueryError` subclasses whose ``str()`` is the message to show,
starting ``position N:`` (1-based; ``offset`` is 0-based): QuerySyntaxError,
QueryFieldError (``field``), QueryValueError (``field``). The query is capped at
``MAX_QUERY_LENGTH`` characters, ``MAX_TERMS`` terms and ``MAX_DEPTH`` nesting.
"""

from __future__ import annotations

from django.db.models import Q, QuerySet

from apps.experiments.models import Run
from apps.experiments.search.compile import compile_query
from apps.experiments.search.fields import field_help, field_names
from apps.experiments.search.lexer import MAX_QUERY_LENGTH, quoted
from apps.experiments.search.parser import MAX_DEPTH, MAX_TERMS, parse
from apps.experiments.search.tree import QueryError, QueryFieldError, QuerySyntaxError, QueryValueError

__all__ = [
    "MAX_DEPTH",
    "MAX_QUERY_LENGTH",
    "MAX_TERMS",
    "QueryError",
    "QueryFieldError",
    "QuerySyntaxError",
    "QueryValueError",
    "field_help",
    "field_names",
    "quoted",
    "run_search",
    "run_search_q",
]


def run_search_q(*, query: str) -> Q:
    """The ``Q`` over ``Run`` for ``query`` (an empty ``Q`` for a blank query).
    Raises QueryError with a message that names the position."""
    return compile_query(parse(query))


def run_search(*, queryset: QuerySet[Run], query: str) -> QuerySet[Run]:
    """``queryset`` narrowed to the runs matching ``query``; filter it to what the
    user may see first (the selector's job). No join multiplies rows, so the
    result needs no ``distinct()``. Raises QueryError (show ``str(error)`` beside
    the search box)."""
    return queryset.filter(run_search_q(query=query))
