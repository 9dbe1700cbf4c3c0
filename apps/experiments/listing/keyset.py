"""Keyset pages: each page starts after (or ends before) a row, never at an
``OFFSET``, so page 400 costs what page 1 costs and rows added meanwhile neither
repeat nor vanish.

A cursor is the sort's values in a row plus its id, signed (``django.core.signing``)
so that it is opaque and cannot be forged into another query; it names the sort it
was made for and is ignored under another one, or when it does not verify (the
first page is shown). NULLs sort last in both directions; the sort ends with the
id, which makes the order total, so no two rows tie.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import reduce
from operator import or_
from typing import Any, Literal

from django.core import signing
from django.db.models import F, Model, OrderBy, Q, QuerySet
from django.utils.dateparse import parse_datetime

from apps.experiments.listing.columns import Sort, SortKey

SALT = "experiments.run-list.keyset"
Direction = Literal["next", "prev"]


@dataclass
class KeysetPage:
    """``rows`` in the sort's order; a cursor for each neighbouring page that has rows."""

    rows: list[Any] = field(default_factory=list)
    next_cursor: str = ""
    prev_cursor: str = ""


@dataclass(frozen=True)
class _Key:
    alias: str
    key: SortKey
    descending: bool


def _encode_value(value: Any) -> Any:
    return {"dt": value.isoformat()} if isinstance(value, datetime) else value


def _decode_value(value: Any) -> Any:
    if isinstance(value, dict) and isinstance(value.get("dt"), str):
        return parse_datetime(value["dt"])
    return value


def cursor_make(*, sort: Sort, direction: Direction, values: list[Any]) -> str:
    payload = {"s": sort.token, "d": direction, "v": [_encode_value(v) for v in values]}
    return signing.dumps(payload, salt=SALT, compress=True)


def cursor_read(cursor: str, *, sort: Sort, width: int) -> tuple[Direction, list[Any]] | None:
    """The direction and row values of ``cursor``; None when it is blank, forged,
    or made for another sort."""
    if not cursor:
        return None
    try:
        payload = signing.loads(cursor, salt=SALT)
    except signing.BadSignature:
        return None
    if (
        not isinstance(payload, dict)
        or payload.get("s") != sort.token
        or payload.get("d") not in ("next", "prev")
    ):
        return None
    values = payload.get("v")
    if not isinstance(values, list) or len(values) != width:
        return None
    return payload["d"], [_decode_value(v) for v in values]


def _order(keys: list[_Key], *, forward: bool) -> list[OrderBy]:
    """ORDER BY for the list (``forward``) or reversed. A nullable key puts NULLs
    last (first when reversed); the others keep the plain order that an index serves."""
    order = []
    for k in keys:
        descending = k.descending if forward else not k.descending
        nulls = ({"nulls_last": True} if forward else {"nulls_first": True}) if k.key.nullable else {}
        expression = F(k.alias)
        order.append(expression.desc(**nulls) if descending else expression.asc(**nulls))
    return order


def _beyond(k: _Key, value: Any, *, forward: bool) -> Q | None:
    """Rows strictly after ``value`` on key ``k`` in the list's order (``forward``),
    or strictly before it; None for no row."""
    if value is None:  # NULLs are last: nothing comes after them, everything else before
        return None if forward else Q(**{f"{k.alias}__isnull": False})
    lookup = "gt" if forward != k.descending else "lt"
    beyond = Q(**{f"{k.alias}__{lookup}": value})
    if forward and k.key.nullable:
        beyond |= Q(**{f"{k.alias}__isnull": True})
    return beyond


def _past(keys: list[_Key], values: list[Any], *, forward: bool) -> Q:
    """Rows past the row with ``values`` (lexicographic over the keys)."""
    clauses = []
    same = Q()
    for k, value in zip(keys, values, strict=True):
        beyond = _beyond(k, value, forward=forward)
        if beyond is not None:
            clauses.append(same & beyond)
        same &= Q(**{f"{k.alias}__isnull": True}) if value is None else Q(**{k.alias: value})
    past = reduce(or_, clauses)
    first, value = keys[0], values[0]
    if not first.key.nullable and value is not None:
        # Implied by the clauses, but a plain range an index scan can start from.
        lookup = "gte" if forward != first.descending else "lte"
        past &= Q(**{f"{first.alias}__{lookup}": value})
    return past


def keyset_page(queryset: QuerySet[Model], *, sort: Sort, cursor: str, per_page: int) -> KeysetPage:
    """One page of ``queryset`` in ``sort``'s order: the first, or the one that
    ``cursor`` points to. One query (a forged or stale cursor that finds no row
    costs one more, for the first page)."""
    keys = [_Key(f"sort_key_{i}", key, desc) for i, (key, desc) in enumerate(sort.keys())]
    annotated = queryset.annotate(**{k.alias: k.key.expression for k in keys})
    position = cursor_read(cursor, sort=sort, width=len(keys))
    if position is not None:
        direction, values = position
        forward = direction == "next"
        rows = list(
            annotated.filter(_past(keys, values, forward=forward)).order_by(*_order(keys, forward=forward))[
                : per_page + 1
            ]
        )
        if rows:
            return _page(keys, sort, rows, per_page, forward=forward)
    rows = list(annotated.order_by(*_order(keys, forward=True))[: per_page + 1])
    page = _page(keys, sort, rows, per_page, forward=True)
    page.prev_cursor = ""
    return page


def _page(keys: list[_Key], sort: Sort, rows: list[Any], per_page: int, *, forward: bool) -> KeysetPage:
    more = len(rows) > per_page
    rows = rows[:per_page]
    if not forward:
        rows.reverse()

    def at(row: Any, direction: Direction) -> str:
        return cursor_make(sort=sort, direction=direction, values=[getattr(row, k.alias) for k in keys])

    page = KeysetPage(rows=rows)
    if not rows:
        return page
    page.next_cursor = at(rows[-1], "next") if (more or not forward) else ""
    page.prev_cursor = at(rows[0], "prev") if (more or forward) else ""
    return page
