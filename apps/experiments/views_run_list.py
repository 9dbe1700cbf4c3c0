"""The run list, a team's search page: search box, filters, columns, sort, keyset
pages, saved views and the selection for comparing runs. Thin: parse, call a
selector or service, render; htmx requests get the table's partial."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from apps.experiments import selectors, services
from apps.experiments.filters import (
    EXTRA_FIELD_COLUMNS,
    RunListParams,
    SavedViewForm,
    run_list_params,
    saved_view_query,
)
from apps.experiments.forms import RunArchiveForm
from apps.experiments.listing.columns import Column, column_cells, column_parse, headline_columns
from apps.experiments.listing.export import export_columns, run_rows_csv
from apps.experiments.listing.selectors import (
    ARCHIVED_ONLY,
    RunPage,
    archived_count_for_team,
    run_column_choices,
    run_page_for_team,
    runs_in_order,
    runs_matching,
    saved_view_get_for_team,
    saved_view_list_for_team,
)
from apps.experiments.models import RunKind
from apps.experiments.search import QueryError, field_help
from apps.teams.models import Role, Team
from apps.teams.selectors import team_get_for_user
from metaweb.htmx import HtmxHttpRequest, redirect_page, render_page
from metaweb.streaming import csv_response

#: The compare page's selection limits ("Compare (n)" is enabled within them).
COMPARE_MIN, COMPARE_MAX = 2, 20


def _columns(team: Team, params: RunListParams) -> tuple[list[Column], list[Column]]:
    """The headline metric columns shown unasked (those the team's runs have), and
    the columns offered in the picker: those chosen, then the team's other metrics
    and config keys, then the search fields that the table does not show already."""
    found = run_column_choices(team=team)
    metrics = [column.keys[0] for column in found if column.source == "metric"]
    headline = headline_columns(metrics, kind=params.filters["kind"], shown=params.columns)
    fields = [column_parse(name) for name in EXTRA_FIELD_COLUMNS]
    offered = dict.fromkeys([*params.columns, *found, *fields])
    return headline, [column for column in offered if column not in headline]


def _context(
    team: Team, role: Role, params: RunListParams, save_form: SavedViewForm | None
) -> dict[str, Any]:
    query_error = ""
    headline, offered = _columns(team, params)
    shown = [*headline, *params.columns]
    try:
        page = run_page_for_team(
            team=team,
            filters=params.filters,
            query=params.query,
            sort=params.sort,
            cursor=params.cursor,
            columns=shown,
        )
    except QueryError as error:
        query_error, page = str(error), RunPage()
    column_cells(page.runs, shown)
    links = params.sort_links(extra=headline)
    kind, archived = params.filters["kind"], params.filters.get("archived", "")
    hidden = 0 if archived else archived_count_for_team(team=team, kind=kind)
    needs_guide = not page.runs and not params.filtered and kind != RunKind.ADAPT and not query_error
    needs_guide = needs_guide and not hidden
    saved_views = saved_view_list_for_team(team=team)
    for view in saved_views:
        fields = view.list_fields()
        view.list_query, view.active = saved_view_query(**fields), params.shows(**fields)
    return {
        "team": team,
        "role": role,
        "can_write": role.allows(Role.MEMBER),
        "is_admin": role.allows(Role.ADMIN),
        "params": params,
        "filter_form": params.filter_form,
        "page": page,
        "runs": page.runs,
        "query_error": query_error,
        "filtered": params.filtered,
        "kind": kind,
        "guide": selectors.launch_guide_for_team(team=team) if needs_guide else None,
        "sort_links": links,
        "column_headers": [(column, links[column.name]) for column in shown],
        "column_choices": offered,
        "field_help": field_help(),
        "saved_views": saved_views,
        "all_runs_active": params.shows(query="", columns=[], sort="", kind="", filters={}),
        "save_form": save_form or SavedViewForm.for_params(params),
        "compare_min": COMPARE_MIN,
        "compare_max": COMPARE_MAX,
        "archived": archived,
        "archived_hidden": hidden,
        "archived_query": params.url_query(archived=ARCHIVED_ONLY),
    }


@require_GET
def run_list(request: HtmxHttpRequest, team_slug: str) -> HttpResponse:
    team, role = team_get_for_user(user=request.user, slug=team_slug)
    context = _context(team, role, run_list_params(request.GET, team=team), None)
    return render_page(request, "experiments/run_list.html", "run-table", context)


@require_GET
def run_list_csv(request: HtmxHttpRequest, team_slug: str) -> HttpResponse:
    """Every run the list matches (its filters, search and sort, not one page) as CSV,
    with the columns it shows; streamed a keyset page at a time."""
    team, _role = team_get_for_user(user=request.user, slug=team_slug)
    params = run_list_params(request.GET, team=team)
    try:
        queryset = runs_matching(team=team, filters=params.filters, query=params.query)
    except QueryError as error:
        return HttpResponse(f"q: {error}", status=400, content_type="text/plain; charset=utf-8")
    headline, _offered = _columns(team, params)
    columns = export_columns([*headline, *params.columns])
    chunks = run_rows_csv(runs_in_order(queryset, sort=params.sort, columns=columns), columns)
    return csv_response(request, chunks, filename=f"{team.slug}-runs.csv")


@require_POST
def saved_view_create(request: HtmxHttpRequest, team_slug: str) -> HttpResponse:
    """Save the list as it is (the form's hidden fields) under a name. On an error,
    htmx gets the form back with the message under its field."""
    team, role = team_get_for_user(user=request.user, slug=team_slug)
    form = SavedViewForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            view = services.saved_view_create(
                team=team,
                actor=request.user,
                name=data["name"],
                query=data["q"],
                columns=form.column_names(),
                sort=data["sort"],
                kind=data["kind"],
                filters=form.filter_values(),
            )
        except ValidationError as error:
            for field, messages in error.message_dict.items():
                form.add_error("name" if field == "name" else None, messages)
        else:
            query = saved_view_query(**view.list_fields())
            url = reverse("experiments:run-list", kwargs={"team_slug": team.slug})
            return redirect_page(request, f"{url}?{query}" if query else url)
    context = _context(team, role, run_list_params(request.GET, team=team), form)
    return render_page(request, "experiments/run_list.html", "saved-view-form", context)


@require_POST
def saved_view_delete(request: HtmxHttpRequest, team_slug: str, view_id: int) -> HttpResponse:
    team, _role = team_get_for_user(user=request.user, slug=team_slug)
    services.saved_view_delete(
        saved_view=saved_view_get_for_team(team=team, view_id=view_id), actor=request.user
    )
    return redirect_page(request, reverse("experiments:run-list", kwargs={"team_slug": team.slug}))


@require_POST
def runs_archive(request: HtmxHttpRequest, team_slug: str) -> HttpResponse:
    """Archive or restore the runs ticked on a run table (or the one on a run's
    page), then go back there with a message saying what changed or why not."""
    team, _role = team_get_for_user(user=request.user, slug=team_slug)
    form = RunArchiveForm(request.POST)
    back = reverse("experiments:run-list", kwargs={"team_slug": team.slug})
    if not form.is_valid():
        problems = [f"{name}: {' '.join(errors)}" for name, errors in form.errors.items()]
        messages.error(request, "; ".join(problems))
        return redirect_page(request, back)
    data = form.cleaned_data
    if url_has_allowed_host_and_scheme(data["next"], allowed_hosts={request.get_host()}):
        back = data["next"] or back
    change = services.runs_restore if data["action"] == "restore" else services.runs_archive
    try:
        runs = change(team=team, run_ids=data["ids"], actor=request.user)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        done = "Restored" if data["action"] == "restore" else "Archived"
        numbers = ", ".join(f"#{run.pk}" for run in runs[:10]) + (" and more" if len(runs) > 10 else "")
        messages.success(request, f"{done} {len(runs)} run{pluralize(len(runs))}: {numbers}.")
    return redirect_page(request, back)
