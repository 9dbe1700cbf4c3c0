"""The run list's parameters, from the query string: the filter form
(``RunFilterForm`` plus the kind of run, which defaults to training runs so that
adaptations do not crowd the list), the search (``q``), the extra columns
(``cols``, comma-separated or repeated), the sort (``sort``) and the page's
cursor (``cursor``). A column or sort that is not one is reported, not fatal."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.http import QueryDict

from apps.experiments.forms import RunFilterForm
from apps.experiments.listing.columns import (
    DEFAULT_SORT,
    Column,
    ColumnError,
    Sort,
    columns_parse,
    sort_parse,
)
from apps.experiments.listing.selectors import ARCHIVED_ONLY, ARCHIVED_TOO
from apps.experiments.models import RunKind
from apps.experiments.search import MAX_QUERY_LENGTH
from apps.experiments.selectors import KIND_ALL
from apps.teams.models import Team

KIND_CHOICES = [
    (RunKind.TRAIN.value, "Training runs"),
    (RunKind.ADAPT.value, "Adaptations"),
    (KIND_ALL, "All kinds"),
]
#: The run table's own headers and the column each sorts by.
HEADER_SORTS: dict[str, str] = {
    "run": "id",
    "experiment": "experiment",
    "algorithm": "algorithm",
    "taskset": "taskset",
    "status": "status",
    "progress": "step",
    "by": "by",
    "created": "created",
}

#: Search fields offered as extra columns (the table shows the others already).
EXTRA_FIELD_COLUMNS: tuple[str, ...] = ("seed", "queue", "kind", "started", "finished", "spikes")


ARCHIVED_CHOICES = [
    ("", "Hide archived"),
    (ARCHIVED_ONLY, "Archived only"),
    (ARCHIVED_TOO, "With archived"),
]


class RunListFilterForm(RunFilterForm):
    kind = forms.ChoiceField(choices=KIND_CHOICES, required=False, initial=RunKind.TRAIN.value, label="Kind")
    archived = forms.ChoiceField(choices=ARCHIVED_CHOICES, required=False, label="Archived")

    field_order = ["kind"]

    def filters(self) -> dict[str, Any]:
        """The valid filters, with ``kind`` always set (training runs unless asked otherwise)."""
        filters = super().filters()
        filters.setdefault("kind", RunKind.TRAIN.value)
        return filters


#: The filters a saved view keeps as the query string spells them (the kind has its own field).
SAVED_FILTERS: tuple[str, ...] = tuple(name for name in RunListFilterForm.base_fields if name != "kind")


@dataclass
class RunListParams:
    """What the run list was asked for. ``problems`` holds a message for each
    column or sort that was not one (they are dropped: the default sort is used)."""

    data: QueryDict
    filter_form: RunListFilterForm
    filters: dict[str, Any]
    query: str
    columns: list[Column]
    sort: Sort
    cursor: str
    problems: list[str] = field(default_factory=list)

    @property
    def filtered(self) -> bool:
        """Whether anything narrows the list besides the kind."""
        return bool(self.query.strip()) or any(name != "kind" for name in self.filters)

    def saved_filters(self) -> dict[str, str]:
        """The filters in force besides the kind, as the query string spells them
        (a filter with a bad value is not in force)."""
        return {name: self.data[name] for name in SAVED_FILTERS if name in self.filters}

    def shows(self, *, query: str, columns: list[str], sort: str, kind: str, filters: dict[str, str]) -> bool:
        """Whether the list shows what a saved view with these fields shows."""
        mine = (self.query.strip(), [c.name for c in self.columns], self.sort.token, self.filters["kind"])
        theirs = (query.strip(), columns, sort or DEFAULT_SORT, kind or RunKind.TRAIN.value)
        return mine == theirs and self.saved_filters() == filters

    def url_query(self, **changes: str) -> str:
        """The list's query string with ``changes`` (an empty value drops the
        parameter), without the cursor: a new sort or filter starts on page one."""
        query = self.data.copy()
        for name in ("cursor", "cols", *changes):
            query.pop(name, None)
        if self.columns:
            query["cols"] = ",".join(column.name for column in self.columns)
        for name, value in changes.items():
            if value:
                query[name] = value
        return query.urlencode()

    def sort_links(self, extra: Sequence[Column] = ()) -> dict[str, dict[str, str]]:
        """For each header of the table (``HEADER_SORTS``), each chosen column and
        each ``extra`` one shown: the query string that sorts by it (descending
        first, then ascending) and the arrow shown when the list is sorted by it."""
        names = {**HEADER_SORTS, **{column.name: column.name for column in [*extra, *self.columns]}}
        links = {}
        for header, name in names.items():
            current = self.sort.column.name == name
            descending = not (current and self.sort.descending)
            arrow = ("↓" if self.sort.descending else "↑") if current else ""
            links[header] = {
                "query": self.url_query(sort=f"{'-' if descending else ''}{name}"),
                "arrow": arrow,
            }
        return links


def run_list_params(data: QueryDict, *, team: Team) -> RunListParams:
    filter_form = RunListFilterForm(data, team=team)
    columns, problems = columns_parse(",".join(data.getlist("cols")))
    try:
        sort = sort_parse(data.get("sort", ""))
    except ColumnError as error:
        problems.append(str(error))
        sort = sort_parse(DEFAULT_SORT)
    return RunListParams(
        data=data,
        filter_form=filter_form,
        filters=filter_form.filters(),
        query=data.get("q", "")[: MAX_QUERY_LENGTH + 1],
        columns=columns,
        sort=sort,
        cursor=data.get("cursor", ""),
        problems=problems,
    )


class SavedViewForm(forms.Form):
    """ "Save this view": a name, and the list's state as hidden fields."""

    name = forms.CharField(max_length=80, label="View name")
    q = forms.CharField(required=False, widget=forms.HiddenInput, max_length=MAX_QUERY_LENGTH)
    cols = forms.CharField(required=False, widget=forms.HiddenInput)
    sort = forms.CharField(required=False, widget=forms.HiddenInput, max_length=200)
    kind = forms.CharField(required=False, widget=forms.HiddenInput, max_length=10)
    filters = forms.CharField(required=False, widget=forms.HiddenInput, max_length=1000)

    @classmethod
    def for_params(cls, params: RunListParams) -> SavedViewForm:
        """The form for the list as it is shown now."""
        return cls(
            initial={
                "q": params.query,
                "cols": ",".join(column.name for column in params.columns),
                "sort": params.sort.token,
                "kind": params.filters.get("kind", ""),
                "filters": urlencode(params.saved_filters()),
            }
        )

    def column_names(self) -> list[str]:
        return [name for name in (p.strip() for p in self.cleaned_data["cols"].split(",")) if name]

    def filter_values(self) -> dict[str, str]:
        """The ``filters`` field's ``name=value`` pairs (the last of a repeated name)."""
        return dict(QueryDict(self.cleaned_data["filters"]).items())


def saved_view_query(*, query: str, columns: list[str], sort: str, kind: str, filters: dict[str, str]) -> str:
    """The run list's query string for a saved view's fields."""
    data = QueryDict(mutable=True)
    pairs = (("q", query), ("cols", ",".join(columns)), ("sort", sort), ("kind", kind), *filters.items())
    for name, value in pairs:
        if value:
            data[name] = value
    return data.urlencode()
