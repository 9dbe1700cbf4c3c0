"""The interpretability views of a meta-model, read without torch. The task-space
explorer of an MNN meta-model conditioned on the task description:
what its page may show (``explorer_reason``) and the one-time export of its
hypernetwork (``explorer_model``), read without torch (``safetensors.numpy``). The
browser evaluates the export on every slider move (``static/js/task_explorer.js``);
the export and its numpy forward pass are :mod:`workers.metalearn.explorer`'s.
The task embedding map of ProtoNets and support-set MNNs: whether there is one, and
the stored one (computed by ``workers/task_map.py``)."""

from __future__ import annotations

import json
from typing import Any

from safetensors import SafetensorError
from safetensors.numpy import load_file

from apps.registry import storage
from apps.registry.models import MetaModel
from apps.runfiles import keys
from apps.runfiles.folders import fetch_folder
from apps.runfiles.store import StoreUnavailable, read_bytes
from workers.metalearn.checkpoint_layout import parse_record
from workers.metalearn.config import ConfigError, parse_config
from workers.metalearn.explorer import explorable, explorer_export
from workers.metalearn.families import make_family
from workers.metalearn.shapes import Facts
from workers.metalearn.specs import embeds_tasks

#: Why there is nothing to explore when the stored files cannot be read.
UNREADABLE = "The meta-model's files are missing or unreadable."


def _record(meta_model: MetaModel) -> tuple[Any, Facts] | None:
    try:
        raw = read_bytes(keys.join(keys.meta_model(meta_model.pk), storage.CHECKPOINT_JSON))
        if raw is None:
            return None
        record = parse_record(raw)
        return parse_config(record["config"]), Facts.of(record["family_info"])
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, ConfigError, StoreUnavailable):
        return None


#: Why there is nothing to explore for another algorithm than the MNN.
NOT_MNN = "Only MNN meta-models have a task space to explore."


def explorer_reason(meta_model: MetaModel) -> str:
    """'' when the model page offers the explorer, else why not."""
    if meta_model.algorithm != "mnn":
        return NOT_MNN
    found = _record(meta_model)
    return UNREADABLE if found is None else explorable(*found)


def explorer_model(meta_model: MetaModel) -> dict[str, Any]:
    """The export for the browser; raises :class:`ConfigError` (``explorer``) with the
    reason when there is none."""
    if meta_model.algorithm != "mnn":
        raise ConfigError({"explorer": NOT_MNN})
    found = _record(meta_model)
    if found is None:
        raise ConfigError({"explorer": UNREADABLE})
    config, facts = found
    why = explorable(config, facts)
    if why:
        raise ConfigError({"explorer": why})
    try:
        folder = fetch_folder(keys.meta_model(meta_model.pk), storage.meta_model_files)
        params = load_file(str(folder / storage.WEIGHTS_FILE))
        family = make_family(config.family)
        return explorer_export(
            params,
            config,
            facts,
            desc_names=list(family.desc_names),  # type: ignore[attr-defined]
            desc_ranges=list(family.desc_ranges()),  # type: ignore[attr-defined]
            input_range=family.input_range(),  # type: ignore[attr-defined]
        )
    except (OSError, SafetensorError, KeyError, AttributeError, ConfigError, StoreUnavailable):
        raise ConfigError({"explorer": UNREADABLE}) from None


# -- the task embedding map --------------------------------------------------------------------


def task_map_reason(meta_model: MetaModel) -> str:
    """'' when the model embeds tasks (ProtoNets, an MNN on the support set), else why not."""
    found = _record(meta_model)
    if found is None:
        return UNREADABLE
    config, facts = found
    return embeds_tasks(config.algorithm, facts.desc_dim, config.mnn_condition)


def task_map_for(meta_model: MetaModel) -> dict[str, Any] | None:
    """The stored map (``workers/task_map.py``), or None when not computed (or unreadable)."""
    try:
        raw = read_bytes(keys.join(keys.meta_model(meta_model.pk), storage.TASK_MAP_FILE))
        data = json.loads(raw) if raw is not None else None
    except (OSError, UnicodeDecodeError, ValueError, StoreUnavailable):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("points"), list):
        return None
    return data
