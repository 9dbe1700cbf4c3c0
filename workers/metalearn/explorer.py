"""The task-space explorer's model, torch-free: an MNN conditioned on the task
description, exported once as plain float32 arrays, and its forward pass in numpy.

The web process exports a registered meta-model with :func:`explorer_export` (its
``params.safetensors`` read by ``safetensors.numpy``, no torch) and the browser
evaluates the same arrays in plain JavaScript (``static/js/task_explorer.js``) on
every slider move: description -> hypernetwork (``hyper.0``, ReLU, ``hyper.2``,
ReLU, ``hyper.4``) -> the target MLP's flat weights, cut in the order of
:func:`workers.metalearn.shapes.backbone_shapes` -> predictions over the input
range. :func:`explorer_predict` is the reference of both: tested against the
engine's own forward pass (torch) and the JavaScript against it, to 1e-5.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from workers.metalearn.shapes import Facts, backbone_shapes, uses_conv
from workers.metalearn.specs import SPECS
from workers.metalearn.types import ConfigError

EXPLORER_FORMAT = 1
#: The hypernetwork's linear layers, in order (ReLU between them).
HYPER_LAYERS = ("hyper.0.", "hyper.2.", "hyper.4.")
#: Points of the input range the explorer draws.
GRID_POINTS = 200


def explorable(config: Any, facts: Facts) -> str:
    """'' when the model can be explored, else why not (for the page)."""
    if config.algorithm != "mnn":
        return "Only MNN meta-models have a task space to explore."
    if not SPECS["mnn"].describes(facts.desc_dim, config.mnn_condition):
        return "This MNN reads the support set, not a task description."
    if facts.classification or uses_conv(facts.input_shape) or math.prod(facts.input_shape) != 1:
        return "The explorer draws regression models of one input."
    return ""


def _array(values: np.ndarray) -> dict[str, Any]:
    data = np.ascontiguousarray(values, dtype="<f4")
    return {"shape": list(data.shape), "data": base64.b64encode(data.tobytes()).decode("ascii")}


def _decode(entry: Mapping[str, Any]) -> np.ndarray:
    raw = base64.b64decode(str(entry["data"]))
    return np.frombuffer(raw, dtype="<f4").reshape([int(s) for s in entry["shape"]])


def explorer_export(
    params: Mapping[str, np.ndarray],
    config: Any,
    facts: Facts,
    *,
    desc_names: list[str],
    desc_ranges: list[tuple[float, float]],
    input_range: tuple[float, float],
) -> dict[str, Any]:
    """JSON-ready: the hypernetwork's layers (base64 float32), the target MLP's
    layer shapes in flat order, the sliders (names, ranges) and the input range.
    Raises :class:`ConfigError` (``algorithm``) when :func:`explorable` says no."""
    why = explorable(config, facts)
    if why:
        raise ConfigError({"algorithm": why})
    target, _ = backbone_shapes(facts.input_shape, facts.ways, config)
    names = list(target)
    layers = [{"weight": target[names[i]], "bias": target[names[i + 1]]} for i in range(0, len(names), 2)]
    hyper = [
        {"weight": _array(params[f"{p}weight"]), "bias": _array(params[f"{p}bias"])} for p in HYPER_LAYERS
    ]
    return {
        "format": EXPLORER_FORMAT,
        "hyper": hyper,
        "target": layers,
        "desc": [
            {"name": name, "min": float(low), "max": float(high)}
            for name, (low, high) in zip(desc_names, desc_ranges, strict=True)
        ],
        "x": {"min": float(input_range[0]), "max": float(input_range[1]), "points": GRID_POINTS},
    }


def explorer_predict(model: Mapping[str, Any], desc: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The generated model's predictions ``[N]`` at inputs ``x`` ``[N]`` for the task
    description ``desc`` ``[D]``, in float64 as the browser computes them."""
    h = np.asarray(desc, dtype=np.float64)
    for i, layer in enumerate(model["hyper"]):
        h = _decode(layer["weight"]).astype(np.float64) @ h + _decode(layer["bias"]).astype(np.float64)
        if i < len(model["hyper"]) - 1:
            h = np.maximum(h, 0.0)
    out = np.asarray(x, dtype=np.float64).reshape(-1, 1)
    offset = 0
    for i, layer in enumerate(model["target"]):
        rows, cols = layer["weight"]
        weight = h[offset : offset + rows * cols].reshape(rows, cols)
        offset += rows * cols
        bias = h[offset : offset + rows]
        offset += rows
        out = out @ weight.T + bias
        if i < len(model["target"]) - 1:
            out = np.maximum(out, 0.0)
    return out[:, 0]
