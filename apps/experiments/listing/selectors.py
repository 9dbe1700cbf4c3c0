"""Reads for the run list: one keyset page of a team's runs under the filters, the
search and the sort, and the columns that a team's runs can show."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from django.db.models import QuerySet
from django.http import Http404
from django.utils import timezone

from apps.experiments.listing.columns import (
    Column,
    Sort,
    column_parse,
    columns_annotate,
    sort_parse,
)
from apps.experiments.listing.keyset import keyset_page
from apps.experiments.models import Run, RunKind, SavedView
from apps.experiments.search import run_search
from apps.experiments.search.fields import (
    CONFIG_FIELD,
    CONFIG_MAX_DEPTH,
    METRIC_FIELD,
    SUMMARY_METRIC_SECTIONS,
)
from apps.experiments.selectors import runs_for_listing, runs_with_queue_waits
from apps.teams.models import Team

RUNS_PER_PAGE = 25
#: Runs read a query when the whole list is downloaded.
EXPORT_BATCH = 500
#: The ``archived`` filter's values: only archived runs, or every run. Without it,
#: lists leave archived runs out.
ARCHIVED_ONLY, ARCHIVED_TOO = "only", "include"
#: How many of the newest runs ``run_column_choices`` reads for keys.
COLUMN_SAMPLE_RUNS = 200


@dataclass
class RunPage:
    """One page of the run list: ``runs`` (each with ``queue_wait``), how many runs
    match in all (``count``), and opaque cursors to the neighbouring pages ("" when
    there is none)."""

    runs: list[Run] = field(default_factory=list)
    count: int = 0
    next_cursor: str = ""
    prev_cursor: str = ""


def runs_filtered(queryset: QuerySet[Run], filters: Mapping[str, Any]) -> QuerySet[Run]:
    """``queryset`` narrowed by the list's filters (cleaned values; empty ones are
    ignored): ``kind`` (``train`` or ``adapt``; anything else lists both),
    ``status`` and ``algorithm`` (strings), ``taskset`` (a TaskSet or id),
    ``launched_by`` (a user or id), ``experiment`` (an Experiment or id),
    ``date_from`` and ``date_to`` (dates, inclusive, in the current time zone),
    ``archived`` (``ARCHIVED_ONLY``, ``ARCHIVED_TOO``; archived runs are left out
    otherwise)."""
    archived = filters.get("archived")
    if archived == ARCHIVED_ONLY:
        queryset = queryset.filter(archived_at__isnull=False)
    elif archived != ARCHIVED_TOO:
        queryset = queryset.filter(archived_at__isnull=True)
    if filters.get("kind") in RunKind.values:
        queryset = queryset.filter(kind=filters["kind"])
    for name, path in (
        ("status", "status"),
        ("algorithm", "algorithm"),
        ("taskset", "taskset_version__taskset"),
        ("launched_by", "launched_by"),
        ("experiment", "experiment"),
    ):
        if filters.get(name):
            queryset = queryset.filter(**{path: filters[name]})
    if filters.get("date_from"):
        queryset = queryset.filter(created_at__gte=_start_of(filters["date_from"]))
    if filters.get("date_to"):
        queryset = queryset.filter(created_at__lt=_start_of(filters["date_to"] + timedelta(days=1)))
    return queryset


def _start_of(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def runs_matching(*, team: Team, filters: Mapping[str, Any], query: str) -> QuerySet[Run]:
    """The team's runs under the list's ``filters`` (:func:`runs_filtered`) and its
    search ``query`` (raises QueryError), unordered."""
    return run_search(queryset=runs_filtered(Run.objects.filter(team=team), filters), query=query)


def runs_in_order(
    queryset: QuerySet[Run], *, sort: Sort, columns: Sequence[Column] = (), batch: int = EXPORT_BATCH
) -> Iterator[Run]:
    """Every run of ``queryset`` in ``sort``'s order, as the list pages through them,
    with the values of its ``count`` ``columns``: a keyset page of ``batch`` runs a
    query, so memory stays flat whatever the count."""
    queryset = queryset.select_related("experiment", "taskset_version__taskset", "launched_by")
    queryset = columns_annotate(queryset, columns)
    cursor = ""
    while True:
        page = keyset_page(queryset, sort=sort, cursor=cursor, per_page=batch)
        yield from page.rows
        if not page.next_cursor:
            return
        cursor = page.next_cursor


def run_page_for_team(
    *,
    team: Team,
    filters: Mapping[str, Any] | None = None,
    query: str = "",
    sort: Sort | None = None,
    cursor: str = "",
    per_page: int = RUNS_PER_PAGE,
    columns: Sequence[Column] = (),
) -> RunPage:
    """One page of the team's runs: the team's first, then ``filters``
    (:func:`runs_filtered`), then the search ``query`` (raises QueryError), in
    ``sort``'s order (newest first by default), from ``cursor``, with the values of
    its ``count`` ``columns``. Two queries (the count and the page), three when a
    listed run is queued (its queue wait)."""
    queryset = runs_matching(team=team, filters=filters or {}, query=query)
    listed = columns_annotate(runs_for_listing(queryset), columns)
    page = keyset_page(listed, sort=sort or sort_parse(""), cursor=cursor, per_page=per_page)
    return RunPage(
        runs=runs_with_queue_waits(page.rows),
        count=queryset.count(),
        next_cursor=page.next_cursor,
        prev_cursor=page.prev_cursor,
    )


def archived_count_for_team(*, team: Team, kind: str) -> int:
    """How many of the team's runs of ``kind`` (``train``, ``adapt``, else any) are
    archived: what a list that leaves them out hides. One query."""
    queryset = Run.objects.filter(team=team, archived_at__isnull=False)
    return (queryset.filter(kind=kind) if kind in RunKind.values else queryset).count()


def _config_keys(config: Any, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """The key paths of ``config`` that end at a value that is not an object."""
    if not isinstance(config, dict) or len(prefix) >= CONFIG_MAX_DEPTH:
        return set()
    found: set[tuple[str, ...]] = set()
    for key, value in config.items():
        path = (*prefix, str(key))
        found |= _config_keys(value, path) if isinstance(value, dict) else {path}
    return found


def _metric_names(summary: Any) -> set[str]:
    names: set[str] = set()
    for section in SUMMARY_METRIC_SECTIONS:
        values = summary.get(section) if isinstance(summary, dict) else None
        if isinstance(values, dict):
            names |= {
                name for name, v in values.items() if isinstance(v, int | float) and not isinstance(v, bool)
            }
    return names


def run_metric_names(runs: Iterable[Run]) -> set[str]:
    """The final metrics that any of ``runs`` has."""
    return set().union(*(_metric_names(run.summary) for run in runs))


def run_column_choices(*, team: Team, sample: int = COLUMN_SAMPLE_RUNS) -> list[Column]:
    """The config keys and final metrics that the team's newest ``sample`` runs have,
    as columns (keys that a column cannot name are skipped), metrics first, by name.

    One query over the (team, -created_at) index that reads two JSON columns of
    at most ``sample`` rows, so its cost does not grow with the team's history; a
    key found only in older runs can still be typed into ``?cols=``."""
    config_keys: set[tuple[str, ...]] = set()
    metrics: set[str] = set()
    rows = Run.objects.filter(team=team).order_by("-created_at", "-pk").values_list("config", "summary")
    for config, summary in rows[:sample]:
        config_keys |= _config_keys(config)
        metrics |= _metric_names(summary)
    names = [f"{METRIC_FIELD}.{m}" for m in sorted(metrics)] + [
        f"{CONFIG_FIELD}.{'.'.join(k)}" for k in sorted(config_keys)
    ]
    columns = []
    for name in names:
        try:
            columns.append(column_parse(name))
        except ValueError:
            continue
    return columns


def saved_view_list_for_team(*, team: Team) -> list[SavedView]:
    """The team's saved views by name, each with ``created_by``. One query."""
    return list(SavedView.objects.filter(team=team).select_related("created_by").order_by("name", "pk"))


def saved_view_named(*, team: Team, name: str) -> SavedView | None:
    """The team's saved view called ``name``, ignoring case (names are unique so); None
    when it has none. One query."""
    return SavedView.objects.filter(team=team, name__iexact=name.strip()).first()


def saved_view_get_for_team(*, team: Team, view_id: int) -> SavedView:
    """The team's saved view ``view_id``; Http404 when the team has none of that id."""
    saved_view = SavedView.objects.filter(team=team, pk=view_id).select_related("team").first()
    if saved_view is None:
        raise Http404("No such saved view.")
    return saved_view
