"""``/teams/{team}/comparison``: the registry's side-by-side comparison of 2 to 6
models as JSON: what the compare page shows (``comparison_build``: the same
checks, pairing and statistics), with the figures as numbers rather than text."""

from __future__ import annotations

import math
from typing import Annotated

from django.http import HttpRequest
from ninja import Query, Router, Schema
from pydantic import Field

from apps.api.auth import caller, team_for
from apps.api.schemas import MessageOut, ValidationErrorOut
from apps.reviews.comparison.analysis import BoxStats, MeanCI, PairedResult
from apps.reviews.forms import MAX_IDS
from apps.reviews.selectors import Comparison, ComparisonItem, adapted_ids_for_runs, comparison_build

router = Router(tags=["comparison"])

Id = Annotated[int, Field(ge=1, le=2**62)]
ADAPTATION_HELP = "Adaptation run ids (repeat the parameter)."
MODEL_HELP = "Meta-model ids: each stands for its latest 600-task evaluation."


class MeanCIOut(Schema):
    mean: float
    low: float
    high: float
    half_width: float
    n: int


class PairedOut(Schema):
    """Against the first item, over the same tasks: differences are item - first."""

    n: int
    mean_a: float
    mean_b: float
    mean_diff: float
    sd_diff: float
    ci_low: float
    ci_high: float
    t: float | None = Field(description="null when infinite (every difference the same non-zero number)")
    df: int
    p_value: float
    wilcoxon_p: float
    alpha: float
    significant: bool


class ComparisonItemOut(Schema):
    run_id: int = Field(description="The adaptation run evaluated.")
    meta_model_id: int
    picked: str = Field(description="adapted, or meta (a meta-model standing for its evaluation)")
    name: str
    version: int
    algorithm: str
    taskset_name: str
    target: str
    metric: str
    n_tasks: int
    n_steps: int
    before: float | None
    after: float | None
    curve: list[float | None] = Field(description="Mean loss per inner step, padded with null.")
    mean: MeanCIOut | None
    paired: PairedOut | None
    outcome: str = Field(description="better, worse, not significant; empty for the reference")
    verdict: str | None
    box: BoxStats | None = Field(description="Tukey's box plot of the per-task metric.")
    hist_counts: list[int]
    overflow: int


class ComparisonOut(Schema):
    kind: str = Field(description="batch (paired over the meta-test tasks) or single (one task each)")
    metric: str
    higher_is_better: bool
    n_tasks: int
    max_steps: int
    notes: list[str]
    bin_edges: list[float]
    items: list[ComparisonItemOut]


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _mean(ci: MeanCI | None) -> MeanCIOut | None:
    if ci is None:
        return None
    return MeanCIOut(mean=ci.mean, low=ci.low, high=ci.high, half_width=ci.half_width, n=ci.n)


def _paired(result: PairedResult | None) -> PairedOut | None:
    if result is None:
        return None
    return PairedOut(
        n=result.n,
        mean_a=result.mean_a,
        mean_b=result.mean_b,
        mean_diff=result.mean_diff,
        sd_diff=result.sd_diff,
        ci_low=result.ci_low,
        ci_high=result.ci_high,
        t=_finite(result.t),
        df=result.df,
        p_value=result.p_value,
        wilcoxon_p=result.wilcoxon_p,
        alpha=result.alpha,
        significant=result.significant,
    )


def _item(item: ComparisonItem) -> ComparisonItemOut:
    return ComparisonItemOut(
        run_id=item.run_id,
        meta_model_id=item.meta_model_id,
        picked=item.picked,
        name=item.name,
        version=item.version,
        algorithm=item.algorithm,
        taskset_name=item.taskset_name,
        target=item.target,
        metric=item.metric,
        n_tasks=item.n_tasks,
        n_steps=item.n_steps,
        before=_finite(item.before),
        after=_finite(item.after),
        curve=[_finite(v) for v in item.curve],
        mean=_mean(item.mean_ci),
        paired=_paired(item.paired),
        outcome=item.outcome,
        verdict=item.verdict,
        box=item.box.stats if item.box else None,
        hist_counts=item.hist_counts,
        overflow=item.overflow,
    )


def _out(comparison: Comparison) -> ComparisonOut:
    return ComparisonOut(
        kind=comparison.kind,
        metric=comparison.metric,
        higher_is_better=comparison.higher_is_better,
        n_tasks=comparison.n_tasks,
        max_steps=comparison.max_steps,
        notes=comparison.notes,
        bin_edges=comparison.bin_edges,
        items=[_item(item) for item in comparison.items],
    )


@router.get(
    "/teams/{team}/comparison",
    response={200: ComparisonOut, 404: MessageOut, 422: ValidationErrorOut},
)
def comparison(
    request: HttpRequest,
    team: str,
    adaptation: list[Id] = Query([], max_length=MAX_IDS, description=ADAPTATION_HELP),  # noqa: B008
    model: list[Id] = Query([], max_length=MAX_IDS, description=MODEL_HELP),  # noqa: B008
) -> ComparisonOut:
    """Compare 2 to 6 models as the compare page does: adaptations first, then
    meta-models, each in the order given; the first is the reference of every
    paired test. Incomparable picks are a 422 with the page's words."""
    the_team = team_for(request, team)
    user = caller(request).user
    adapted_ids = adapted_ids_for_runs(user=user, run_ids=adaptation, team=the_team)
    built = comparison_build(user=user, adapted_ids=adapted_ids, meta_model_ids=model, team=the_team)
    return _out(built)
