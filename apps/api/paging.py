"""Keyset pages by id, newest first (``?before=&limit=``): the lists of meta-models
and sweeps. (The run list pages by its sort's values: ``listing.selectors``.)"""

from __future__ import annotations

from typing import Any, TypeVar

from django.db.models import Model, QuerySet
from ninja import Schema
from pydantic import Field

M = TypeVar("M", bound=Model)


class IdPageQuery(Schema):
    before: int | None = Field(None, ge=1, le=2**62, description="Keyset cursor: ids below this one.")
    limit: int = Field(50, ge=1, le=200)


def id_page(rows: QuerySet[M], query: IdPageQuery) -> tuple[list[M], int | None]:
    """One page of ``rows`` newest first, and the ``before`` of the next page (None
    on the last). One query: a row more than the page tells whether one follows."""
    if query.before is not None:
        rows = rows.filter(pk__lt=query.before)
    page: list[Any] = list(rows.order_by("-pk")[: query.limit + 1])
    more = len(page) > query.limit
    page = page[: query.limit]
    return page, page[-1].pk if more else None
