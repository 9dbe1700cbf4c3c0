"""The fields a run search can name: the one whitelist. A name the user writes is
looked up here; only the ORM paths written in this module reach a lookup.

To add a field, add a :class:`SearchField` to ``FIELDS`` with a kind the
compiler knows, or a new kind and its case in ``apps.experiments.search.compile``
(and take its name out of ``PLANNED`` if it was there).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from apps.experiments.models import Queue, RunKind, RunStatus
from workers.metalearn.config import ALGORITHMS
from workers.metalearn.spikes import SPIKE

FieldKind = Literal["choice", "integer", "moment", "text", "tag", "count"]


@dataclass(frozen=True)
class SearchField:
    """A searchable column. ``path`` is the ORM path (set here, never from the
    user); ``contains`` makes ``field:value`` match part of the text, ignoring case
    (``=`` is always exact)."""

    name: str
    kind: FieldKind
    path: str
    description: str
    choices: tuple[str, ...] = ()
    contains: bool = False


FIELDS: Mapping[str, SearchField] = {
    field.name: field
    for field in (
        SearchField("algorithm", "choice", "algorithm", "the meta-learning algorithm", ALGORITHMS),
        SearchField("status", "choice", "status", "the run's state", tuple(RunStatus.values)),
        SearchField("kind", "choice", "kind", "meta-training or adaptation", tuple(RunKind.values)),
        SearchField("queue", "choice", "queue", "the worker queue", tuple(Queue.values)),
        SearchField("id", "integer", "pk", "the run's number"),
        SearchField("seed", "integer", "seed", "the random seed"),
        SearchField("step", "integer", "step", "the last step reached"),
        SearchField("sweep", "integer", "sweep_id", "the sweep that launched the run (its number)"),
        SearchField("experiment", "text", "experiment__name", "the experiment's name", contains=True),
        SearchField(
            "taskset", "text", "taskset_version__taskset__name", "the task set's name", contains=True
        ),
        SearchField("by", "text", "launched_by__username", "who launched the run (username)"),
        SearchField("created", "moment", "created_at", "when the run was queued"),
        SearchField("started", "moment", "started_at", "when the run first started"),
        SearchField("finished", "moment", "finished_at", "when the run ended"),
        # ``tag:<name>``: the run carries the tag, or its experiment does (compile._tag).
        SearchField("tag", "tag", "tags__name", "a tag on the run or on its experiment"),
        # ``spikes>0``: the loss spikes in the run's history (compile._count).
        SearchField("spikes", "count", SPIKE, "how many loss spikes the run's history tells"),
    )
}

#: ``config.<key>``: a key of the run's config, dotted for nesting (``config.family.name``).
CONFIG_FIELD = "config"
CONFIG_MAX_DEPTH = 8
#: ``metric.<name>``: a final metric from the run's summary.
METRIC_FIELD = "metric"
#: Where ``Run.summary`` keeps final metrics: a training run's last step
#: (``metrics``) and last evaluation (``val``, names such as ``val_loss``), written
#: by ``workers.tasks._summary``; an adaptation's last inner step (``final``),
#: written by ``workers.adapting``. The summary is written when a run succeeds,
#: so runs in progress, failed or cancelled have no final metrics and never match.
SUMMARY_METRIC_SECTIONS: tuple[str, ...] = ("metrics", "val", "final")
#: The metrics a run table shows as columns without being asked, where its runs
#: have them: a training run's last evaluation on the validation tasks, and an
#: adaptation's query set after its last step. Any other kind shows the first.
HEADLINE_METRICS: Mapping[str, tuple[str, ...]] = {
    "train": ("val_loss", "val_accuracy"),
    "adapt": ("query_loss", "query_accuracy"),
}
#: Free text matches any of these, ignoring case.
TEXT_PATHS: tuple[str, ...] = ("experiment__name", "taskset_version__taskset__name", "algorithm", "error")
#: Names that will be fields but are not yet, and why: a search that uses one
#: gets this reason instead of a bare "unknown field".
PLANNED: Mapping[str, str] = {}
#: The longest key segment or metric name accepted.
KEY_MAX_LENGTH = 64
_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def key_problem(prefix: str, path: str, *, limit: int) -> str:
    """Why ``path`` (what follows ``prefix``, ``config`` or ``metric``, and a dot) is not a key path of at
    most ``limit`` segments, or "" when it is. Each segment is letters, digits and
    single underscores, not starting with a digit, so that it can only ever become a
    ``KeyTransform``, never a lookup (``__``). The one rule for search terms, run-list
    columns and sorts."""
    keys = path.split(".")
    what = "a key" if limit > 1 else "a metric name"
    for key in keys:
        if not _KEY_RE.fullmatch(key) or "__" in key or len(key) > KEY_MAX_LENGTH:
            return (
                f"{what} is letters, digits and single underscores, "
                f"not starting with a digit, at most {KEY_MAX_LENGTH} long"
            )
    if len(keys) > limit:
        return f"at most {limit} key{'s' if limit > 1 else ''} after '{prefix}.'"
    return ""


def field_names() -> list[str]:
    """Every name a search may use, for error messages and help."""
    return [*sorted(FIELDS), f"{CONFIG_FIELD}.<key>", f"{METRIC_FIELD}.<name>"]


def field_help() -> list[tuple[str, str]]:
    """``(name, description)`` for each field, for a help text beside the search box."""
    rows = [(name, FIELDS[name].description) for name in sorted(FIELDS)]
    rows.append((f"{CONFIG_FIELD}.<key>", "a value of the run's config, e.g. config.inner_lr>=0.01"))
    rows.append((f"{METRIC_FIELD}.<name>", "a final metric of a succeeded run, e.g. metric.val_loss<0.3"))
    return rows
