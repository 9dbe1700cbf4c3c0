"""Writes for meta-models: registering a training run's checkpoint, uploading an
external one, moving aliases, recording verdicts.

Files. A meta-model's folder ``<registry>/meta/<pk>/`` holds ``params.safetensors``
and ``checkpoint.json`` in the engine's checkpoint format, so
``workers.metalearn.load_checkpoint`` reads it as it is. Files are written into a
temporary folder beside it first; the row is created, then the folder is renamed
into place with ``os.replace``, inside the transaction. On any error the temporary
folder (or the renamed one) is removed and the transaction rolls back, so neither a
row without files nor files without a row remain.

Torch-free: uploads are checked by reading the safetensors header
(:mod:`apps.registry.weights`) against :func:`workers.metalearn.specs.expected_shapes`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils.text import slugify

from apps.experiments.models import Experiment, Run, RunEvent, RunKind, RunStatus
from apps.experiments.selectors import run_checkpoint_file
from apps.experiments.services.runs import code_version
from apps.registry import storage
from apps.registry.models import (
    AdaptedModel,
    AliasMove,
    MetaModel,
    MetaModelSource,
    ModelAlias,
    Review,
    Verdict,
)
from apps.registry.weights import WeightsError, read_safetensors_header
from apps.tasksets.models import TaskSetVersion
from apps.teams.models import Role, Team
from apps.teams.services import ensure_role
from workers.metalearn.checkpoint_layout import FORMAT, META_FILE
from workers.metalearn.config import ConfigError, config_to_dict, parse_config
from workers.metalearn.families import make_family
from workers.metalearn.shapes import family_info_dict, shape_differences
from workers.metalearn.specs import expected_shapes
from workers.metalearn.types import DataError

__all__ = [
    "CHECKPOINT_FORMAT",
    "PRODUCTION_ALIAS",
    "alias_move",
    "metamodel_autoregister",
    "metamodel_register_from_run",
    "metamodel_upload",
    "review_create",
]

logger = logging.getLogger(__name__)
AnyUser = AbstractBaseUser | AnonymousUser

#: ``workers.metalearn.checkpoint.FORMAT`` (that module imports torch).
CHECKPOINT_FORMAT = FORMAT
#: The alias that needs an approve verdict on the version it points at.
PRODUCTION_ALIAS = "production"
#: Uploads larger than this are refused while they are copied.
MAX_UPLOAD_BYTES = 512 * 1024 * 1024
#: A config larger than this (as compact JSON) is refused before it is parsed.
MAX_CONFIG_BYTES = 16 * 1024
MAX_COMMENT_CHARS = 5000
#: How many differences an upload's shape error lists.
SHAPE_ERRORS_SHOWN = 5
#: Attempts at the next version number when registrations of one name race.
VERSION_ATTEMPTS = 5
ALIAS_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
COPY_CHUNK = 1024 * 1024


# -- files ------------------------------------------------------------------------------


def _staging_dir() -> Path:
    """A fresh temporary folder beside the meta-model folders (same file system, so
    the final ``os.replace`` is atomic)."""
    parent = storage.registry_root() / "meta"
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=".tmp-", dir=parent))


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy_hashed(chunks: Iterator[bytes], target: Path, *, limit: int | None = None) -> tuple[str, int]:
    """Write ``chunks`` to ``target``; return its sha256 and size. Stops with a
    ValidationError on ``weights_file`` once more than ``limit`` bytes came."""
    digest = hashlib.sha256()
    size = 0
    with target.open("wb") as out:
        for chunk in chunks:
            size += len(chunk)
            if limit is not None and size > limit:
                raise ValidationError(
                    {"weights_file": f"The file is larger than the limit of {limit // 2**20} MiB."}
                )
            digest.update(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    return digest.hexdigest(), size


def _file_chunks(handle: IO[bytes]) -> Iterator[bytes]:
    if hasattr(handle, "chunks"):
        yield from handle.chunks(COPY_CHUNK)  # Django's UploadedFile
        return
    while chunk := handle.read(COPY_CHUNK):
        yield chunk


def _publish(staged: Path, meta_model_id: int) -> Path:
    """Rename the staged folder to the meta-model's folder (replacing a stale one
    that a rolled-back transaction may have left under the same id)."""
    final = storage.meta_model_dir(meta_model_id)
    for name in (storage.WEIGHTS_FILE, storage.CHECKPOINT_JSON):
        _fsync(staged / name)
    if final.exists():
        shutil.rmtree(final)
    os.replace(staged, final)
    _fsync(final.parent)
    return final


def _with_files(staged: Path, create: Callable[[], MetaModel]) -> MetaModel:
    """Create the row with ``create`` and move ``staged`` into its folder, in one
    transaction. On any error no row and no folder remain."""
    final: Path | None = None
    try:
        with transaction.atomic():
            meta_model = create()
            final = _publish(staged, meta_model.pk)
        return meta_model
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        if final is not None:
            shutil.rmtree(final, ignore_errors=True)
        raise


def _create_next_version(*, team: Team | int, name: str, **fields: Any) -> MetaModel:
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
    weights = run_checkpoint_file(run)
    if weights is None:
        raise ValidationError({"run": "The run has no complete checkpoint to register."})

    staged = _staging_dir()
    try:
        sha256, size = _copy_hashed(_read_chunks(weights), staged / storage.WEIGHTS_FILE)
        shutil.copyfile(weights.parent / META_FILE, staged / storage.CHECKPOINT_JSON)
    except OSError:
        shutil.rmtree(staged, ignore_errors=True)
        raise ValidationError({"run": "The run's checkpoint cannot be read."}) from None
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise

    found: list[MetaModel] = []

    def create() -> MetaModel:
        # The run's row lock serialises registrations of the same run.
        Run.objects.select_for_update().filter(pk=run.pk).first()
        again = MetaModel.objects.filter(training_run_id=run.pk).first()
        if again is not None:
            found.append(again)
            raise _AlreadyRegistered
        return _create_next_version(
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
        meta_model = _with_files(staged, create)
    except _AlreadyRegistered:
        return found[0]
    logger.info("run %s: registered as %s (meta-model %s)", run.pk, meta_model, meta_model.pk)
    return meta_model


class _AlreadyRegistered(Exception):
    """Another registration of the same run committed first."""


def _read_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        yield from _file_chunks(handle)


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


# -- uploads ----------------------------------------------------------------------------


def _upload_config(*, config: Any, version: TaskSetVersion) -> tuple[Any, dict[str, Any], Any]:
    """The parsed config (family from the task-set version), the family's facts as
    a checkpoint records them, and the family. ValidationError on ``config`` or
    ``taskset_version``."""
    if not isinstance(config, dict):
        raise ValidationError({"config": "The configuration must be a JSON object."})
    try:
        size = len(json.dumps(config, separators=(",", ":"), allow_nan=False).encode())
    except (TypeError, ValueError):
        raise ValidationError(
            {"config": "The configuration must be plain JSON (numbers, text, lists)."}
        ) from None
    if size > MAX_CONFIG_BYTES:
        raise ValidationError(
            {"config": f"The configuration is {size:,} bytes; the limit is {MAX_CONFIG_BYTES:,}."}
        )
    data = dict(config)
    data["family"] = {"name": version.taskset.family, "version": 1, "params": version.params or {}}
    try:
        parsed = parse_config(data)
    except ConfigError as exc:
        raise ValidationError({"config": [f"{k}: {v}" for k, v in exc.errors.items()]}) from None
    try:
        family = make_family(parsed.family, data_path=version.data_file.path if version.data_file else None)
    except (ConfigError, DataError) as exc:
        raise ValidationError({"taskset_version": f"The task set cannot be used: {exc}"}) from None
    except OSError:
        raise ValidationError({"taskset_version": "The task set's data file cannot be read."}) from None
    return parsed, family_info_dict(family, parsed), family


def _json_scalar(value: Any) -> Any:
    """numpy scalars in a family's ``describe()`` as plain numbers."""
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def _check_shapes(*, path: Path, expected: dict[str, list[int]]) -> dict[str, list[int]]:
    try:
        header = read_safetensors_header(path)
    except WeightsError as exc:
        raise ValidationError({"weights_file": str(exc)}) from None
    actual = {name: tensor.shape for name, tensor in header.items()}
    differences = shape_differences(expected, actual)
    if differences:
        shown = "; ".join(differences[:SHAPE_ERRORS_SHOWN])
        more = len(differences) - SHAPE_ERRORS_SHOWN
        tail = f" (and {more} more)" if more > 0 else ""
        raise ValidationError(
            {
                "weights_file": f"The tensors do not fit this configuration's backbone "
                f"({len(differences)} difference{'s' if len(differences) != 1 else ''}): {shown}{tail}."
            }
        )
    return actual


def metamodel_upload(
    *,
    team: Team,
    actor: AnyUser,
    experiment: Experiment,
    taskset_version: TaskSetVersion,
    name: str,
    config: dict[str, Any],
    weights_file: IO[bytes],
    description: str = "",
) -> MetaModel:
    """Register an external meta-model: a safetensors file of meta-parameters and
    the training config it belongs to. Members only.

    The config is validated by the engine's ``parse_config`` with the task set's
    family; the file must be safetensors (a pickle, a zip, garbage or a truncated
    file is refused; nothing is unpickled), its tensors float32 and named and shaped
    as the config's algorithm expects on the family. The weights are stored as
    uploaded, beside a ``checkpoint.json`` that ``load_checkpoint`` accepts.
    ValidationErrors name the form field; on error nothing is saved.
    """
    ensure_role(user=actor, team=team, required=Role.MEMBER)
    if experiment.team_id != team.pk:
        raise ValidationError({"experiment": "Choose one of this team's experiments."})
    if taskset_version.taskset.team_id != team.pk:
        raise ValidationError({"taskset_version": "Choose one of this team's task sets."})
    name = slugify(name or "")
    max_length = MetaModel._meta.get_field("name").max_length or 80
    if not name:
        raise ValidationError({"name": "Give the model a name with letters or digits, e.g. sine-maml."})
    if len(name) > max_length:
        raise ValidationError({"name": f"Use at most {max_length} characters."})
    parsed, family_info, family = _upload_config(config=config, version=taskset_version)
    try:
        expected = expected_shapes(parsed, family_info)
    except ConfigError as exc:
        raise ValidationError({"config": [f"{k}: {v}" for k, v in exc.errors.items()]}) from None

    staged = _staging_dir()
    try:
        weights = staged / storage.WEIGHTS_FILE
        sha256, size = _copy_hashed(_file_chunks(weights_file), weights, limit=MAX_UPLOAD_BYTES)
        shapes = _check_shapes(path=weights, expected=expected)
        checkpoint = {
            "format": CHECKPOINT_FORMAT,
            "step": 0,
            "algorithm": parsed.algorithm,
            "config": config_to_dict(parsed),
            "family": family.describe(),
            "family_info": family_info,
            "shapes": shapes,
            "dtypes": {k: "float32" for k in shapes},
            "optimizer": {},
            "rng": {},
            "metrics": {},
            "source": "upload",
        }
        (staged / storage.CHECKPOINT_JSON).write_text(
            json.dumps(checkpoint, indent=1, sort_keys=True, default=_json_scalar), encoding="utf-8"
        )
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise

    def create() -> MetaModel:
        return _create_next_version(
            team=team,
            name=name,
            experiment=experiment,
            source=MetaModelSource.UPLOAD,
            training_run=None,
            taskset_version=taskset_version,
            algorithm=parsed.algorithm,
            config=config_to_dict(parsed),
            metrics={},
            code_version=code_version(),
            weights_sha256=sha256,
            weights_bytes=size,
            description=(description or "").strip() or f"Uploaded by {actor.get_username()}.",
            created_by=actor,
        )

    return _with_files(staged, create)


# -- aliases ----------------------------------------------------------------------------


def latest_verdict(meta_model: MetaModel) -> str | None:
    return (
        Review.objects.filter(meta_model=meta_model)
        .order_by("-created_at", "-pk")
        .values_list("verdict", flat=True)
        .first()
    )


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


# -- verdicts ---------------------------------------------------------------------------


@transaction.atomic
def review_create(
    *,
    actor: AnyUser,
    verdict: str,
    comment: str = "",
    meta_model: MetaModel | None = None,
    adapted_model: AdaptedModel | None = None,
) -> Review:
    """Record a verdict (approve, reject, needs work) with a comment on exactly one
    of a meta-model or an adapted model. Members only. Reviews are append-only: the
    history of verdicts is the list of reviews, the latest one counts."""
    if (meta_model is None) == (adapted_model is None):
        raise ValidationError({"subject": "Review either a meta-model or an adapted model."})
    subject = meta_model if meta_model is not None else adapted_model
    assert subject is not None
    ensure_role(user=actor, team=subject.team_id, required=Role.MEMBER)
    if verdict not in Verdict.values:
        raise ValidationError({"verdict": f"Choose one of: {', '.join(Verdict.labels).lower()}."})
    comment = (comment or "").strip()
    if len(comment) > MAX_COMMENT_CHARS:
        raise ValidationError({"comment": f"Use at most {MAX_COMMENT_CHARS} characters."})
    return Review.objects.create(
        team_id=subject.team_id,
        meta_model=meta_model,
        adapted_model=adapted_model,
        verdict=verdict,
        comment=comment,
        author=actor,
    )
