"""The compare-runs page and the chart data it asks for on zoom. Thin: parse,
call the compare selectors, render; htmx requests get the page's partial."""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import urlencode

from django.http import HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

from apps.experiments import compare_selectors as compare
from apps.experiments.analysis.curves import DEFAULT_POINTS, MAX_POINTS
from apps.experiments.analysis.summary import duration_display, higher_is_better
from apps.experiments.search import QueryError
from apps.teams.selectors import team_get_for_user
from metaweb.htmx import HtmxHttpRequest, render_page

#: The longest metric name (``Metric.name``).
MAX_METRIC_LENGTH = 50


@require_GET
def run_compare(request: HtmxHttpRequest, team_slug: str) -> HttpResponse:
    team, _ = team_get_for_user(user=request.user, slug=team_slug)
    query = request.GET.get("q", "").strip()
    raw_ids = request.GET.get("ids", "").strip()
    context: dict[str, Any] = {"team": team, "query": query, "raw_ids": raw_ids, "errors": {}}
    runs = []
    if raw_ids:
        try:
            runs = compare.compare_runs_get(team=team, ids=compare.compare_ids_parse(raw_ids))
        except compare.CompareError as error:
            context["errors"][error.field] = str(error)
        else:
            context.update(_compare_context(team_slug, runs))
    picked = runs
    if query:
        try:
            picked = compare.compare_search_runs(team=team, query=query)
        except QueryError as error:
            context["errors"]["q"] = f"q: {error}"
            picked = []
    parallel = compare.parallel_coordinates(runs=picked)
    context["parallel"] = parallel
    context["importance"] = compare.parallel_importance(parallel, forest=[parallel["default_metric"]])
    context["importance_url"] = _importance_url(team_slug, query=query, raw_ids=raw_ids)
    context["parallel_count"] = len(picked)
    context["limits"] = {"min": compare.MIN_RUNS, "max": compare.MAX_RUNS, "search": compare.MAX_SEARCH_RUNS}
    return render_page(request, "experiments/run_compare.html", "compare-body", context)


def _compare_context(team_slug: str, runs: list[Any]) -> dict[str, Any]:
    names, summaries = compare.compare_summaries(runs=runs)
    seed_metrics, seed_groups = compare.compare_seed_groups(summaries=summaries)
    rows = [
        {
            "run": item.run,
            "colour": index,
            "duration": duration_display(item.duration),
            "metrics": [item.metrics.get(name) for name in names],
        }
        for index, item in enumerate(summaries)
    ]
    chart = {
        "series_url": reverse("experiments:run-compare-series", kwargs={"team_slug": team_slug}),
        "ids": ",".join(str(run.pk) for run in runs),
        "metrics": names,
        "runs": [
            {"id": run.pk, "label": f"#{run.pk} {run.algorithm}", "colour": i} for i, run in enumerate(runs)
        ],
        "points": DEFAULT_POINTS,
        # Every chart's first data (full range, by step), so the page needs no request
        # per chart to draw; zooming and the time axis ask series_url.
        "initial": compare.compare_series_many(runs=runs, metrics=names, points=DEFAULT_POINTS),
    }
    return {
        "runs": runs,
        "rows": rows,
        "metric_names": names,
        "metric_columns": [{"name": name, "higher": higher_is_better(name)} for name in names],
        "diff": compare.compare_config_diff(runs=runs),
        "chart": chart,
        "seeds": {"metrics": seed_metrics, "groups": seed_groups},
    }


def _importance_url(team_slug: str, *, query: str, raw_ids: str) -> str:
    """Where a metric's importance table, with its forest, is read when it is picked."""
    base = reverse("experiments:run-compare-importance", kwargs={"team_slug": team_slug})
    return f"{base}?{urlencode({'q': query} if query else {'ids': raw_ids})}"


@require_GET
def run_compare_importance(request: HtmxHttpRequest, team_slug: str) -> HttpResponse:
    """The parallel coordinates' "which config keys go with the metric" table of one
    metric, random forest included (the page fits only its first metric's forest,
    since a forest of 500 runs takes about a quarter of a second)."""
    team, _ = team_get_for_user(user=request.user, slug=team_slug)
    query, metric = request.GET.get("q", "").strip(), request.GET.get("metric", "").strip()
    try:
        if query:
            picked = compare.compare_search_runs(team=team, query=query)
        else:
            ids = compare.compare_ids_parse(request.GET.get("ids", ""))
            picked = compare.compare_runs_get(team=team, ids=ids)
    except QueryError as error:
        return HttpResponse(f"q: {error}", status=400, content_type="text/plain; charset=utf-8")
    except compare.CompareError as error:
        return HttpResponse(str(error), status=400, content_type="text/plain; charset=utf-8")
    parallel = compare.parallel_coordinates(runs=picked)
    if metric not in parallel["metrics"]:
        message = f"metric: {metric[:MAX_METRIC_LENGTH]!r} is not a final metric of these runs."
        return HttpResponse(message, status=400, content_type="text/plain; charset=utf-8")
    items = compare.parallel_importance(parallel, metrics=[metric], forest=[metric])[metric]
    context = {"items": items, "table_id": f"importance-{metric}"}
    return render(request, "experiments/includes/importance_table.html", context)


def _number(request: HtmxHttpRequest, name: str) -> float | None:
    raw = request.GET.get(name, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise compare.CompareError(f"{name}: {raw[:20]!r} is not a number.", field=name) from None
    if not math.isfinite(value):
        raise compare.CompareError(f"{name}: must be a finite number.", field=name)
    return value


def _series_params(request: HtmxHttpRequest) -> dict[str, Any]:
    metric = request.GET.get("metric", "").strip()
    if not metric or len(metric) > MAX_METRIC_LENGTH:
        raise compare.CompareError("metric: name the metric to draw.", field="metric")
    x = request.GET.get("x", "step")
    if x not in ("step", "time"):
        raise compare.CompareError("x: choose step or time.", field="x")
    try:
        points = int(request.GET.get("points") or DEFAULT_POINTS)
    except ValueError:
        points = 0
    if not 2 <= points <= MAX_POINTS:
        raise compare.CompareError(f"points: a whole number from 2 to {MAX_POINTS}.", field="points")
    lo, hi = _number(request, "from"), _number(request, "to")
    if lo is not None and hi is not None and lo > hi:
        raise compare.CompareError("from: must not be after to.", field="from")
    return {"metric": metric, "x": x, "points": points, "lo": lo, "hi": hi}


@require_GET
def run_compare_series(request: HtmxHttpRequest, team_slug: str) -> JsonResponse:
    """One metric of the picked runs, downsampled for the visible range, with each
    run's nearest points outside it so that lines cross the chart's edges (JSON)."""
    team, _ = team_get_for_user(user=request.user, slug=team_slug)
    try:
        params = _series_params(request)
        runs = compare.compare_runs_get(team=team, ids=compare.compare_ids_parse(request.GET.get("ids", "")))
    except compare.CompareError as error:
        return JsonResponse({"error": str(error), "field": error.field}, status=400)
    return JsonResponse(compare.compare_series(runs=runs, edges=True, **params))
