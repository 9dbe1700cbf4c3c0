"""Run-list columns, from the URL: ``?cols=seed,config.inner_lr,metric.val_loss``
and ``?sort=-metric.val_loss``.

A column is a search field (``apps.experiments.search.fields.FIELDS``, whose ORM
paths are the only ones used), a config key (``config.<key>``, dotted for nesting),
a final metric (``metric.<name>``), or a count of the run's history (``spikes``: a
correlated subquery, read by :func:`columns_annotate`). Keys pass the search language's rule
(``fields.key_problem``) and become ``KeyTransform`` expressions: nothing the user
writes becomes a lookup string.

Sorting: a config value sorts numbers first (as numbers), then strings; a metric
is a number (the first of ``SUMMARY_METRIC_SECTIONS`` that has it); a run without
the value sorts last whatever the direction. Every sort ends with the run's id, so
the order is total and a keyset page can resume from any row.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from django.core.exceptions import FieldDoesNotExist
from django.db.models import Count, F, IntegerField, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from apps.experiments.models import Run, RunEvent
from apps.experiments.search.fields import (
    CONFIG_FIELD,
    CONFIG_MAX_DEPTH,
    FIELDS,
    HEADLINE_METRICS,
    METRIC_FIELD,
    SUMMARY_METRIC_SECTIONS,
    key_problem,
)
from apps.experiments.search.jsonq import JSONScalar, key_path

#: The most extra columns one list shows.
MAX_COLUMNS = 12
#: The list's order when none is asked for: newest first.
DEFAULT_SORT = "-created"

Source = Literal["field", "config", "metric", "count"]


@dataclass(frozen=True)
class SortKey:
    """One expression of a sort, with whether it can be NULL (then NULLs go last)."""

    expression: Any
    nullable: bool


@dataclass(frozen=True)
class Column:
    """``name`` as written in the URL; ``keys`` is the ORM path for a field, the
    key path for ``config``, the metric name for ``metric``, the event kind for ``count``."""

    name: str
    source: Source
    keys: tuple[str, ...]

    @property
    def label(self) -> str:
        """The header: a metric by its own name (``val_loss``), others by ``name``."""
        return self.keys[0] if self.source == "metric" else self.name

    @property
    def alias(self) -> str:
        """The annotation a ``count`` column's value is read from."""
        return f"column_count_{self.name}"

    def sort_keys(self) -> list[SortKey]:
        if self.source == "count":
            return [SortKey(event_count(self.keys[0]), False)]
        if self.source == "field":
            return [SortKey(F(self.keys[0]), _path_facts(self.keys[0])[0])]
        if self.source == "config":
            key = key_path("config", self.keys)
            return [SortKey(JSONScalar(key, "number"), True), SortKey(JSONScalar(key, "string"), True)]
        sections = [
            JSONScalar(key_path("summary", (s, self.keys[0])), "number") for s in SUMMARY_METRIC_SECTIONS
        ]
        return [SortKey(Coalesce(*sections) if len(sections) > 1 else sections[0], True)]

    def value(self, run: Run) -> Any:
        """The run's value in this column (None when it has none)."""
        if self.source == "field":
            return _attribute(run, self.keys[0])
        if self.source == "count":
            return getattr(run, self.alias, None)
        if self.source == "config":
            return _walk(run.config, self.keys)
        for section in SUMMARY_METRIC_SECTIONS:
            number = _walk(run.summary, (section, self.keys[0]))
            if isinstance(number, int | float) and not isinstance(number, bool):
                return number
        return None


@dataclass(frozen=True)
class Sort:
    column: Column
    descending: bool

    @property
    def token(self) -> str:
        """As written in the URL: ``-metric.val_loss``."""
        return f"{'-' if self.descending else ''}{self.column.name}"

    def keys(self) -> list[tuple[SortKey, bool]]:
        """Each sort key with its direction (True: descending), ending with the id."""
        keys = [(key, self.descending) for key in self.column.sort_keys()]
        return [*keys, (SortKey(F("pk"), False), self.descending)]


class ColumnError(ValueError):
    """A column or sort that is not one; ``str()`` is the message, naming ``param``."""

    def __init__(self, message: str, *, param: str) -> None:
        super().__init__(message)
        self.param = param


def column_parse(name: str, *, param: str = "cols") -> Column:
    """The column called ``name``; ColumnError naming ``param`` when there is none."""
    name = name.strip()
    field = FIELDS.get(name.lower())
    if field is not None:
        if field.kind == "count":
            return Column(field.name, "count", (field.path,))
        if _path_facts(field.path)[1]:
            raise ColumnError(
                f"{param}: {field.name} has many values per run: search it, not a column", param=param
            )
        return Column(field.name, "field", (field.path,))
    prefix, dot, rest = name.partition(".")
    if dot and prefix.lower() in (CONFIG_FIELD, METRIC_FIELD):
        prefix = prefix.lower()
        limit = CONFIG_MAX_DEPTH if prefix == CONFIG_FIELD else 1
        problem = key_problem(prefix, rest, limit=limit)
        if problem:
            raise ColumnError(f"{param}: {_shown(name)}: {problem}", param=param)
        return Column(f"{prefix}.{rest}", prefix, tuple(rest.split(".")))  # type: ignore[arg-type]
    raise ColumnError(
        f"{param}: unknown column {_shown(name)}; a column is a search field "
        f"({', '.join(sorted(FIELDS))}), config.<key> or metric.<name>",
        param=param,
    )


def columns_parse(text: str) -> tuple[list[Column], list[str]]:
    """The columns of ``?cols=`` (comma-separated, duplicates dropped, at most
    ``MAX_COLUMNS``) and a message for each one that is not a column."""
    columns: list[Column] = []
    errors: list[str] = []
    for name in filter(None, (part.strip() for part in text.split(","))):
        try:
            column = column_parse(name)
        except ColumnError as error:
            errors.append(str(error))
            continue
        if column not in columns:
            columns.append(column)
    if len(columns) > MAX_COLUMNS:
        errors.append(f"cols: at most {MAX_COLUMNS} columns; the first {MAX_COLUMNS} are shown")
    return columns[:MAX_COLUMNS], errors


def headline_columns(metric_names: Iterable[str], *, kind: str, shown: Sequence[Column] = ()) -> list[Column]:
    """The metric columns a run table shows unasked (``HEADLINE_METRICS`` for runs
    of ``kind``) that some of its runs have (``metric_names``), less those ``shown``
    already."""
    have = set(metric_names)
    names = HEADLINE_METRICS.get(kind) or HEADLINE_METRICS["train"]
    columns = [column_parse(f"{METRIC_FIELD}.{name}") for name in names if name in have]
    return [column for column in columns if column not in shown]


def event_count(kind: str) -> Coalesce:
    """How many events of ``kind`` (set in ``fields``, never from the user) a run's
    history holds: a correlated subquery over the run's events, 0 for none."""
    events = (
        RunEvent.objects.filter(run=OuterRef("pk"), kind=kind)
        .order_by()
        .values("run")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(events, output_field=IntegerField()), Value(0))


def columns_annotate(queryset: QuerySet[Run], columns: Sequence[Column]) -> QuerySet[Run]:
    """``queryset`` with the values of its ``count`` columns (one subquery each)."""
    counts = {c.alias: event_count(c.keys[0]) for c in columns if c.source == "count"}
    return queryset.annotate(**counts) if counts else queryset


def column_cells(runs: Iterable[Run], columns: Sequence[Column]) -> None:
    """Set each run's ``column_cells``: (column name, its value as shown) for each column."""
    for run in runs:
        run.column_cells = [(c.name, column_display(c.value(run))) for c in columns]  # type: ignore[attr-defined]


def sort_parse(text: str) -> Sort:
    """``?sort=``: a column name, ``-`` first for descending; blank is ``DEFAULT_SORT``.
    Raises ColumnError (``param="sort"``)."""
    text = text.strip() or DEFAULT_SORT
    descending = text.startswith("-")
    return Sort(column_parse(text.removeprefix("-"), param="sort"), descending)


def _shown(name: str, limit: int = 40) -> str:
    return repr(name if len(name) <= limit else name[:limit] + "…")


def _path_facts(path: str) -> tuple[bool, bool]:
    """For an ORM ``path`` from ``FIELDS``: whether it can be NULL on the way, and
    whether it crosses a to-many relation (a run would then have many values)."""
    model: Any = Run
    nullable = False
    for part in path.split("__"):
        if part == "pk":
            return nullable, False
        try:
            field = model._meta.get_field(part)
        except FieldDoesNotExist:  # pragma: no cover - FIELDS holds real paths (tested)
            return True, True
        if field.many_to_many or field.one_to_many:
            return True, True
        nullable = nullable or bool(field.null)
        model = field.related_model
    return nullable, False


def _attribute(run: Run, path: str) -> Any:
    value: Any = run
    for part in path.split("__"):
        value = getattr(value, part, None)
        if value is None:
            return None
    return value


def _walk(data: Any, keys: tuple[str, ...]) -> Any:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def column_display(value: Any) -> str:
    """A JSON value as shown in a cell: numbers in 6 significant digits, times in the
    current time zone to the minute, the rest as :func:`column_text` writes it."""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, datetime):
        return timezone.localtime(value).strftime("%Y-%m-%d %H:%M")
    return column_text(value)


def column_text(value: Any) -> str:
    """A JSON value in full, as a download writes it: a float as Python writes it, a
    time in ISO 8601 UTC, lists and objects as compact JSON, nothing for a missing value."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return str(value)
