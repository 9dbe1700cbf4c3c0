"""From the syntax tree of a run search to a Django ``Q`` over ``Run``.

Every field name is checked against ``apps.experiments.search.fields``; config
keys and metric names must be identifiers without ``__`` and become
``KeyTransform`` expressions, never lookup strings; values are typed by their
field. Errors are QueryFieldError (unknown field or bad key) and QueryValueError
(a value or operator that does not fit the field), both naming the position.
"""

from __future__ import annotations

from functools import reduce
from operator import and_, or_
from typing import Any

from django.db.models import Count, Q

from apps.experiments.models import Experiment, Run, RunEvent
from apps.experiments.search import values
from apps.experiments.search.fields import (
    CONFIG_FIELD,
    CONFIG_MAX_DEPTH,
    FIELDS,
    METRIC_FIELD,
    PLANNED,
    SUMMARY_METRIC_SECTIONS,
    TEXT_PATHS,
    SearchField,
    field_names,
    key_problem,
)
from apps.experiments.search.jsonq import LOOKUPS, json_compare
from apps.experiments.search.tree import (
    ORDER_OPS,
    And,
    Node,
    Not,
    Or,
    QueryFieldError,
    QueryValueError,
    Term,
    Text,
    shorten,
)

#: For a whole day: the lookup, and whether it compares with the day's end
#: (the start of the next day) rather than its start.
_DAY_BOUNDS: dict[str, tuple[str, bool]] = {
    ">": ("gte", True),
    ">=": ("gte", False),
    "<": ("lt", False),
    "<=": ("lt", True),
}


def compile_query(node: Node | None) -> Q:
    """The ``Q`` that selects the runs matching ``node`` (everything for None)."""
    return Q() if node is None else _compile(node)


def _compile(node: Node) -> Q:
    if isinstance(node, And):
        return reduce(and_, (_compile(child) for child in node.children))
    if isinstance(node, Or):
        return reduce(or_, (_compile(child) for child in node.children))
    if isinstance(node, Not):
        return ~_compile(node.child)
    if isinstance(node, Text):
        return reduce(or_, (Q(**{f"{path}__icontains": node.value}) for path in TEXT_PATHS))
    return _term(node)


def _term(term: Term) -> Q:
    field = FIELDS.get(term.field.lower())
    if field is not None:
        return _column(field, term)
    prefix, dot, rest = term.field.partition(".")
    if dot and prefix.lower() == CONFIG_FIELD:
        keys = _keys(term, rest, limit=CONFIG_MAX_DEPTH)
        value, kind = values.as_json_scalar(term)
        if kind == "boolean":
            _check_op(term, ("=", ":", "!="), "true or false")
        return json_compare(column="config", keys=keys, op=_eq(term.op), value=value, kind=kind)
    if dot and prefix.lower() == METRIC_FIELD:
        (name,) = _keys(term, rest, limit=1)
        number = values.as_number(term)
        op = _eq(term.op)
        return reduce(
            or_,
            (
                json_compare(column="summary", keys=(section, name), op=op, value=number, kind="number")
                for section in SUMMARY_METRIC_SECTIONS
            ),
        )
    raise _unknown(term)


def _unknown(term: Term) -> QueryFieldError:
    reason = PLANNED.get(term.field.lower())
    known = ", ".join(field_names())
    why = f": {reason}" if reason else ""
    return QueryFieldError(
        f"unknown field {shorten(term.field)!r}{why}; the fields are {known}",
        offset=term.offset,
        field=term.field,
    )


def _keys(term: Term, path: str, *, limit: int) -> tuple[str, ...]:
    """The checked key segments of ``config.<path>`` or ``metric.<path>``."""
    problem = key_problem(term.field.partition(".")[0], path, limit=limit)
    if problem:
        raise QueryFieldError(f"{shorten(term.field)}: {problem}", offset=term.offset, field=term.field)
    return tuple(path.split("."))


def _eq(op: str) -> str:
    """``:`` is equality for every field but the text fields that match a part."""
    return "=" if op == ":" else op


def _check_op(term: Term, allowed: tuple[str, ...], what: str) -> None:
    if term.op not in allowed:
        shown = ", ".join(f"'{op}'" for op in allowed)
        raise QueryValueError(
            f"{term.field} compares {what} with {shown}, not '{term.op}'",
            offset=term.offset + len(term.field),
            field=term.field,
        )


def _column(field: SearchField, term: Term) -> Q:
    if field.kind == "choice":
        _check_op(term, (":", "=", "!="), "choices")
        return _compare(field.path, _eq(term.op), values.as_choice(term, field.choices))
    if field.kind == "integer":
        return _compare(field.path, _eq(term.op), values.as_integer(term))
    if field.kind == "moment":
        return _moment(field.path, term)
    if field.kind == "tag":
        return _tag(term)
    if field.kind == "count":
        return _count(field.path, term.op, values.as_integer(term))
    if term.op == ":":
        lookup = "icontains" if field.contains else "iexact"
        return Q(**{f"{field.path}__{lookup}": term.value})
    return _compare(field.path, term.op, term.value)


def _tag(term: Term) -> Q:
    """``tag:<name>`` (or ``=``): runs that carry the tag or whose experiment does.
    Two ``IN`` subqueries, so no join multiplies the runs; ``NOT tag:x`` is the
    exact complement. Names compare lowercased, like the stored ones."""
    _check_op(term, (":", "="), "tag names")
    name = values.as_tag_name(term)
    run_ids = Run.tags.through.objects.filter(tag__name=name).values("run_id")
    experiment_ids = Experiment.tags.through.objects.filter(tag__name=name).values("experiment_id")
    return Q(pk__in=run_ids) | Q(experiment_id__in=experiment_ids)


def _count(kind: str, op: str, value: int) -> Q:
    """``spikes>0``: runs whose history holds that many events of ``kind`` (set in
    ``fields``, never from the user). Runs with none are in no group, so each
    comparison is an ``IN`` over the groups of at least (or more than) some count, or
    its complement: one subquery, no join."""

    def having(lookup: str, count: int) -> Q:
        groups = (
            RunEvent.objects.filter(kind=kind)
            .values("run_id")
            .annotate(n=Count("pk"))
            .filter(**{f"n__{lookup}": count})
        )
        return Q(pk__in=groups.values("run_id"))

    at_least = {">": value + 1, ">=": value, "<": value, "<=": value + 1}.get(op)
    if at_least is not None:  # runs with at least that many, or the others
        reached = Q(pk__isnull=False) if at_least <= 0 else having("gte", at_least)
        return reached if op in (">", ">=") else ~reached
    equal = ~having("gte", 1) if value == 0 else having("exact", value)
    return ~equal if op == "!=" else equal


def _compare(path: str, op: str, value: Any) -> Q:
    if op == "!=":
        return ~Q(**{f"{path}__exact": value})
    return Q(**{f"{path}__{LOOKUPS[op]}": value})


def _moment(path: str, term: Term) -> Q:
    """A date is a whole day: ``created:D`` is that day, ``created>D`` after it,
    ``created<=D`` up to its end. ``!=`` matches rows that have a time, not that one."""
    start, end = values.as_moment(term)
    op = _eq(term.op)
    if end is None:
        match = _compare(path, op, start)
    elif op in ORDER_OPS:
        lookup, after_the_day = _DAY_BOUNDS[op]
        match = Q(**{f"{path}__{lookup}": end if after_the_day else start})
    else:
        match = Q(**{f"{path}__gte": start, f"{path}__lt": end})
        if op == "!=":
            match = ~match
    if op == "!=":
        match &= Q(**{f"{path}__isnull": False})
    return match
