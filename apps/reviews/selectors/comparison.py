"""Side-by-side comparisons of adapted models: load, analyse, display. Torch-free.

What can be compared
--------------------
* **Batch evaluations** (the 600 fixed meta-test tasks). A meta-model stands for its
  latest successful batch adaptation. Every item must have been evaluated on the
  same tasks: the same family and family parameters (and, for uploaded data, the
  same file), the same episode (shots, query, and ways when classifying) and the
  same task ids. Items are paired task by task: the per-task post-adaptation
  scores (MSE or accuracy) of each item are compared with the first item's by
  :func:`apps.reviews.comparison.analysis.paired_comparison` (difference = item -
  first). Inner-step counts may differ (the curves then have different lengths).
* **Single-task adaptations** to the same target: the same meta-test task index,
  or the same typed/uploaded support and query sets, on the same family and
  episode. With one task there is nothing to pair over, so they are compared on
  their per-step curves and before/after figures only (no intervals, no test).
  Batch and single-task items never mix.

The three steps live in ``apps/reviews/comparison/``: ``load`` (rows and stored
bytes to arrays, and the checks that the items compare), ``analysis`` (pure numpy and
scipy, tested without a database) and ``display`` (what the page shows). A
comparison of up to 6 items costs a constant number of queries.
"""

from __future__ import annotations

from collections.abc import Sequence

from apps.reviews.comparison.analysis import BoxStats, TaskMismatch, align_tasks, analyse_batch
from apps.reviews.comparison.display import (
    Comparison,
    ComparisonItem,
    batch_comparison,
    single_comparison,
)
from apps.reviews.comparison.load import (
    ComparisonError,
    Pick,
    adapted_ids_for_runs,
    check_comparable,
    describe,
    evaluations_load,
    latest_verdicts,
    picks_load,
    unique_ints,
)
from apps.teams.models import Team
from apps.teams.types import AnyUser

__all__ = [
    "MAX_ITEMS",
    "MIN_ITEMS",
    "BoxStats",
    "Comparison",
    "ComparisonError",
    "ComparisonItem",
    "adapted_ids_for_runs",
    "comparison_build",
]


MIN_ITEMS = 2
MAX_ITEMS = 6


def comparison_build(
    *,
    user: AnyUser,
    adapted_ids: Sequence[int | str] = (),
    meta_model_ids: Sequence[int | str] = (),
    team: Team | None = None,
) -> Comparison:
    """Compare 2 to 6 models side by side; see the module docstring for the rules.

    The items are the adapted models of ``adapted_ids`` then the meta-models of
    ``meta_model_ids``, each in the order given (the first is the reference); an
    adapted model picked twice (directly and through its meta-model) counts once.
    Ids the user may not see (or, with ``team``, outside that team) raise Http404,
    whether or not they exist. Anything else that makes the items incomparable
    raises :class:`ComparisonError` with a message for the page.
    """
    adapted_ids = unique_ints(adapted_ids)
    meta_model_ids = unique_ints(meta_model_ids)
    picked_count = len(adapted_ids) + len(meta_model_ids)
    if picked_count < MIN_ITEMS:
        raise ComparisonError(f"Pick at least {MIN_ITEMS} models to compare (you picked {picked_count}).")
    if picked_count > MAX_ITEMS:
        raise ComparisonError(f"Pick at most {MAX_ITEMS} models to compare (you picked {picked_count}).")
    picks, notes = picks_load(user=user, adapted_ids=adapted_ids, meta_model_ids=meta_model_ids, team=team)
    if len(picks) < MIN_ITEMS:
        raise ComparisonError(f"Pick at least {MIN_ITEMS} different models to compare.")
    verdicts = latest_verdicts(
        meta_ids=[p.adapted.meta_model_id for p in picks if p.picked == "meta"],
        adapted_ids=[p.adapted.pk for p in picks if p.picked == "adapted"],
    )
    if check_comparable(picks):
        comparison = _batch(picks, verdicts)
    else:
        comparison = single_comparison(picks, verdicts)
    comparison.notes = notes + comparison.notes
    return comparison


def _batch(picks: list[Pick], verdicts: dict[tuple[str, int], str]) -> Comparison:
    """Load the picks' arrays, pair their tasks by id, analyse, display."""
    loaded = evaluations_load(picks)
    try:
        orders = align_tasks([evaluation.task_ids for evaluation in loaded])
    except TaskMismatch as mismatch:
        raise ComparisonError(
            f"{describe(picks[0].adapted)} was evaluated on {mismatch.reference_size} tasks and "
            f"{describe(picks[mismatch.index].adapted)} on {mismatch.size} tasks that are not the same ones."
        ) from mismatch
    scores = [evaluation.scores[order] for evaluation, order in zip(loaded, orders, strict=True)]
    analysis = analyse_batch(scores, [evaluation.losses for evaluation in loaded], picks[0].adapted.metric)
    return batch_comparison(picks, analysis, verdicts)
