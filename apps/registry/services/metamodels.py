"""Writes for meta-models: registering a training run's checkpoint as the next
version of a name, and moving aliases. Uploads are in :mod:`.uploads`, the files'
staging in :mod:`.staging`, verdicts in ``apps.reviews.services``.
"""

from __future__ import annotations

import logging
import math
import re
import shutil
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils.text import slugify

from apps.experiments.models import Run, RunEvent, RunKind, RunStatus
from apps.experiments.selectors import run_checkpoint_key
from apps.registry import storage
from apps.registry.models import AliasMove, MetaModel, MetaModelSource, ModelAlias
from apps.registry.services.staging import copy_hashed, staging_dir, with_files
from apps.reviews.models import Verdict
from apps.reviews.selectors.reviews import latest_verdict
from apps.runfiles.store import StoreUnavailable, open_stream, read_bytes
from apps.teams.models import Role, Team
from apps.teams.services import ensure_role
from apps.teams.types import AnyUser
from workers.metalearn.checkpoint_layout import META_FILE

__all__ = [
    "PRODUCTION_ALIAS",
    "alias_move",
    "create_next_version",
    "metamodel_autoregister",
    "metamodel_register_from_run",
    "model_name_for",
]

logger = logging.getLogger(__name__)

#: The alias that needs an approve verdict on the version it points at.
PRODUCTION_ALIAS = "production"
#: Attempts at the next version number when registrations of one name race.
VERSION_ATTEMPTS = 5
ALIAS_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")


def create_next_version(*, team: Team | int, name: str, **fields: Any) -> MetaModel:
    """Create the meta-model as the next version of ``(team, name)``. Two
    registrations of one name at once collide on the unique constraint; the loser
    reads the new highest version and tries again."""
    team_id = team if isinstance(team, int) else team.pk
    for attempt in range(VERSION_ATTEMPTS):
        latest = MetaModel.objects.filter(team_id=team_id, name=name).aggregate(v=Max("version"))["v"]
        try:
            with transaction.atomic():
                return MetaModel.objects.create(
                    team_id=team_id, name=name, version=(latest or 0) + 1, **fields
                )
        except IntegrityError:
            if attempt == VERSION_ATTEMPTS - 1:
                raise
            logger.info("registry: version %s of %s taken, retrying", (latest or 0) + 1, name)
    raise AssertionError("unreachable")


def model_name_for(*, taskset_name: str, algorithm: str) -> str:
    """``"Sine waves"`` and ``"maml"`` give ``"sine-waves-maml"``."""
    max_length = MetaModel._meta.get_field("name").max_length or 80
    return slugify(f"{taskset_name}-{algorithm}")[:max_length].strip("-") or "model"


def _finite_floats(values: Any) -> dict[str, float]:
    if not isinstance(values, dict):
        return {}
    return {
        str(k): float(v)
        for k, v in values.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    }


def _metrics_of(run: Run) -> dict[str, float]:
    """The run's final metrics: the last training step's and the last evaluation's
    (``val_*``)."""
    summary = run.summary if isinstance(run.summary, dict) else {}
    return {**_finite_floats(summary.get("metrics")), **_finite_floats(summary.get("val"))}


# -- registering a training run -----------------------------------------------------------


def _registrable_run(run_id: int) -> Run:
    """The run, if it is a succeeded training run; ValidationError on ``run`` if not."""
    run = (
        Run.objects.select_related("taskset_version__taskset", "experiment", "launched_by")
        .filter(pk=run_id)
        .first()
    )
    if run is None:
        raise ValidationError({"run": "No such run."})
    if run.kind != RunKind.TRAIN:
        raise ValidationError({"run": "Only meta-training runs register meta-models."})
    if run.status != RunStatus.SUCCEEDED:
        raise ValidationError({"run": f"Only a succeeded run registers; this one is {run.status}."})
    return run


def _stage_checkpoint(run: Run) -> tuple[Path, str, int]:
    """Copy the run's newest complete stored checkpoint into a staging folder: the
    folder, the weights' sha256 and size. ValidationError on ``run`` when there is
    none; ``StoreUnavailable`` when the store cannot be reached."""
    weights = run_checkpoint_key(run)
    opened = open_stream(weights) if weights is not None else None
    if opened is None:
        raise ValidationError({"run": "The run has no complete checkpoint to register."})
    staged = staging_dir()
    try:
        sha256, size = copy_hashed(opened[0], staged / storage.WEIGHTS_FILE)
        record = read_bytes(weights.rsplit("/", 1)[0] + "/" + META_FILE)
        if record is None:
            raise OSError(META_FILE)
        (staged / storage.CHECKPOINT_JSON).write_bytes(record)
    except OSError:
        shutil.rmtree(staged, ignore_errors=True)
        raise ValidationError({"run": "The run's checkpoint cannot be read."}) from None
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    return staged, sha256, size


def metamodel_register_from_run(*, run_id: int) -> MetaModel:
    """Register the succeeded training run ``run_id`` as the next version of the
    meta-model named after its task set and algorithm (``"sine-waves-maml"``).

    Idempotent: a run registers once (``training_run`` is one-to-one); a second call
    returns the existing meta-model. The newest complete checkpoint's
    ``params.safetensors`` and ``checkpoint.json`` are copied into the meta-model's
    folder. Raises ValidationError on ``run`` when the run is not a succeeded
    training run with a checkpoint.
    """
    existing = MetaModel.objects.filter(training_run_id=run_id).first()
    if existing is not None:
        return existing
    run = _registrable_run(run_id)
    staged, sha256, size = _stage_checkpoint(run)

    found: list[MetaModel] = []

    def create() -> MetaModel:
        # The run's row lock serialises registrations of the same run.
        Run.objects.select_for_update().filter(pk=run.pk).first()
        again = MetaModel.objects.filter(training_run_id=run.pk).first()
        if again is not None:
            found.append(again)
            raise _AlreadyRegistered
        return create_next_version(
            team=run.team_id,
            name=model_name_for(taskset_name=run.taskset_version.taskset.name, algorithm=run.algorithm),
            experiment=run.experiment,
            source=MetaModelSource.RUN,
            training_run=run,
            taskset_version=run.taskset_version,
            algorithm=run.algorithm,
            config=run.config,
            metrics=_metrics_of(run),
            code_version=run.code_version,
            weights_sha256=sha256,
            weights_bytes=size,
            description=f"Registered from run #{run.pk}.",
            created_by=run.launched_by,
        )

    try:
        meta_model = with_files(staged, create, field="run")
    except _AlreadyRegistered:
        return found[0]
    logger.info("run %s: registered as %s (meta-model %s)", run.pk, meta_model, meta_model.pk)
    return meta_model


class _AlreadyRegistered(Exception):
    """Another registration of the same run committed first."""


def metamodel_autoregister(*, run_id: int) -> MetaModel | None:
    """:func:`metamodel_register_from_run` for the worker, after a training run
    succeeded. Never raises: a failure is logged and recorded as a ``registry_failed``
    event on the run, whose success stands."""
    try:
        return metamodel_register_from_run(run_id=run_id)
    except Exception as exc:  # noqa: BLE001 - the run succeeded; registering is best effort
        if isinstance(exc, ValidationError):
            reason = " ".join(exc.messages)
            logger.warning("run %s: not registered as a meta-model: %s", run_id, reason)
        elif isinstance(exc, StoreUnavailable):
            reason = str(exc)
            logger.warning("run %s: not registered as a meta-model: %s", run_id, reason)
        else:
            reason = f"an internal error ({type(exc).__name__}); the worker's log has the details"
            logger.exception("run %s: registering the meta-model failed", run_id)
        try:
            attempt = Run.objects.filter(pk=run_id).values_list("attempt", flat=True).first() or 0
            RunEvent.objects.create(
                run_id=run_id,
                kind="registry_failed",
                message=f"Not registered as a meta-model: {reason}",
                attempt=attempt,
            )
        except Exception:  # noqa: BLE001
            logger.exception("run %s: could not record the registry failure", run_id)
        return None


# -- aliases ----------------------------------------------------------------------------


@transaction.atomic
def alias_move(
    *, team: Team, actor: AnyUser, model_name: str, alias: str, meta_model: MetaModel
) -> ModelAlias:
    """Point ``model_name@alias`` at ``meta_model`` (creating the alias if new) and
    record the move: who, when, from which version, to which. Members only.

    ``production`` may only point at a version whose latest verdict is approve.
    Moving an alias to the version it already points at changes nothing.
    """
    ensure_role(user=actor, team=team, required=Role.MEMBER)
    alias = (alias or "").strip().lower()
    if not ALIAS_RE.match(alias):
        raise ValidationError(
            {"alias": "Use 1 to 40 lowercase letters, digits, - or _, e.g. candidate or production."}
        )
    if meta_model.team_id != team.pk or meta_model.name != model_name:
        raise ValidationError({"meta_model": f"Choose a version of {model_name} in this team."})
    if alias == PRODUCTION_ALIAS:
        # Lock the meta-model so that a verdict recorded meanwhile is seen.
        MetaModel.objects.select_for_update().filter(pk=meta_model.pk).first()
        verdict = latest_verdict(meta_model)
        if verdict != Verdict.APPROVE:
            now = (
                f"its latest verdict is {Verdict(verdict).label.lower()}" if verdict else "it has no verdict"
            )
            raise ValidationError(
                {"alias": f"Production needs an approve verdict on {meta_model}; {now}. Record one first."}
            )
    pointer, created = ModelAlias.objects.select_for_update().get_or_create(
        team=team, model_name=model_name, alias=alias, defaults={"meta_model": meta_model}
    )
    previous = None if created else pointer.meta_model_id
    if previous == meta_model.pk:
        return pointer
    if not created:
        pointer.meta_model = meta_model
        pointer.save(update_fields=["meta_model", "updated_at"])
    AliasMove.objects.create(alias=pointer, from_model_id=previous, to_model=meta_model, moved_by=actor)
    return pointer
