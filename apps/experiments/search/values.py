"""Typing the values of a search term: numbers, dates, choices and JSON scalars.

Each function takes the term and returns the Python value, or raises
QueryValueError naming the field, what it expected and what it found.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta

from django.core.exceptions import ValidationError
from django.utils import timezone

from apps.experiments.models import tag_name_clean
from apps.experiments.search.jsonq import JsonKind
from apps.experiments.search.tree import QueryValueError, Term, shorten

_NUMBER_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_INTEGER_RE = re.compile(r"[+-]?\d+")
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
#: Whole numbers must fit a signed 64-bit column on every backend.
_INT_LIMIT = 2**63
#: Years a date may name (leaves room for a day either side in any time zone).
_YEARS = range(1900, 9999)


def _error(term: Term, expected: str) -> QueryValueError:
    return QueryValueError(
        f"{shorten(term.field)}{term.op} expects {expected}, found {shorten(term.value)!r}",
        offset=term.value_offset,
        field=term.field,
    )


def as_integer(term: Term) -> int:
    """A whole number such as ``42`` or ``-3``."""
    if term.quoted or not _INTEGER_RE.fullmatch(term.value):
        raise _error(term, "a whole number")
    number = int(term.value)
    if not -_INT_LIMIT < number < _INT_LIMIT:
        raise _error(term, "a whole number below 2^63")
    return number


def as_tag_name(term: Term) -> str:
    """A tag name, lowercased; the rule is ``apps.experiments.models.tag_name_clean``."""
    try:
        return tag_name_clean(term.value)
    except ValidationError as error:
        raise _error(term, "a tag name (letters, digits, '_', '.' or '-')") from error


def as_number(term: Term) -> int | float:
    """A finite number such as ``3``, ``0.01`` or ``1e-3`` (kept whole when written whole)."""
    if term.quoted or not _NUMBER_RE.fullmatch(term.value):
        raise _error(term, "a number")
    if _INTEGER_RE.fullmatch(term.value):
        return as_integer(term)
    number = float(term.value)
    if number in (float("inf"), float("-inf")):
        raise _error(term, "a finite number")
    return number


def as_json_scalar(term: Term) -> tuple[int | float | bool | str, JsonKind]:
    """The value of a ``config.<key>`` term and its JSON kind: a bare number is a
    number, bare ``true``/``false`` a boolean, anything else (and anything quoted)
    a string."""
    if not term.quoted:
        if _NUMBER_RE.fullmatch(term.value):
            return as_number(term), "number"
        if term.value.lower() in ("true", "false"):
            return term.value.lower() == "true", "boolean"
    return term.value, "string"


def as_choice(term: Term, choices: tuple[str, ...]) -> str:
    """One of ``choices``, matched without regard to case."""
    for choice in choices:
        if term.value.lower() == choice.lower():
            return choice
    raise _error(term, "one of " + ", ".join(choices))


def as_moment(term: Term) -> tuple[datetime, datetime | None]:
    """A date (``2026-11-01``: the whole day in the current time zone) as its
    start and the start of the next day, or a date and time in ISO 8601
    (``2026-11-01T14:30``, ``2026-11-01T14:30:00Z``) as itself and None."""
    expected = "a date like 2026-11-01 or a date and time like 2026-11-01T14:30"
    if term.quoted:
        raise _error(term, expected)
    try:
        if _DATE_RE.fullmatch(term.value):
            moment = datetime.combine(date.fromisoformat(term.value), time.min)
            whole_day = True
        else:
            moment, whole_day = datetime.fromisoformat(term.value), False
    except ValueError:
        raise _error(term, expected) from None
    if moment.year not in _YEARS:
        raise _error(term, f"a date from {_YEARS.start} to {_YEARS.stop - 1}")
    end = moment + timedelta(days=1) if whole_day else None
    return _aware(moment), None if end is None else _aware(end)


def _aware(moment: datetime) -> datetime:
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment)
