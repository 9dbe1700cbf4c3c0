"""The task embedding map's job: computed once for a registered meta-model (ProtoNets,
or an MNN on the support set) and stored beside its weights as
``meta/<id>/task_map.json`` in the run-file store. Idempotent: a map already stored is kept, so
a repeated request or a redelivered message does nothing more."""

from __future__ import annotations

import json
import logging

from apps.registry import storage
from apps.registry.models import MetaModel
from apps.runfiles import keys
from apps.runfiles.folders import fetch_folder
from apps.runfiles.store import exists, put_bytes
from workers.attempt import taskset_data_path
from workers.metalearn.checkpoint_layout import read_record
from workers.metalearn.config import ConfigError, parse_config
from workers.metalearn.families import make_family
from workers.metalearn.types import CheckpointError, DataError

logger = logging.getLogger(__name__)


def task_map_job(meta_model_id: int) -> str:
    """Compute and store the map; returns what happened ("computed", "exists",
    "missing" or "refused: <why>")."""
    meta_model = MetaModel.objects.select_related("taskset_version").filter(pk=meta_model_id).first()
    if meta_model is None:
        return "missing"
    prefix = keys.meta_model(meta_model.pk)
    target = keys.join(prefix, storage.TASK_MAP_FILE)
    if exists(target):
        return "exists"
    from workers.metalearn.embedding import task_map  # torch, in the worker only

    try:
        folder = fetch_folder(prefix, storage.meta_model_files)
        config = parse_config(read_record(folder)["config"])
        family = make_family(config.family, data_path=taskset_data_path(meta_model.taskset_version))
        data = task_map(folder, family)
    except (OSError, KeyError, ValueError, ConfigError, DataError, CheckpointError) as exc:
        logger.warning("meta-model %s: no task map: %s", meta_model_id, exc)
        return f"refused: {exc}"
    put_bytes(target, json.dumps(data, separators=(",", ":")).encode())
    logger.info("meta-model %s: task map of %d tasks stored", meta_model_id, len(data["points"]))
    return "computed"
