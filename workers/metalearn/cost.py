"""What a run config costs, estimated without torch: parameters, activation memory
per meta-batch, and checkpoint bytes; and the check against a queue's budget.

The estimate is an order of magnitude, not an allocator trace:

* **parameters**: exact, the sum over the spec's meta-parameter shapes
  (:func:`workers.metalearn.specs.expected_shapes`).
* **activation bytes per meta-batch**: ``tasks x examples per task x activation
  values per example x 4 bytes x graph factor``. The values per example are what
  autograd keeps for the backward pass: the input and every layer's output (the
  MLP's hidden layers and head; per conv block the conv, norm and ReLU outputs at
  full size and the pooled output). Examples per task are ``shots + query``
  (times ``ways`` when classifying). Each example counts twice (its forward
  outputs and the gradients of the backward pass), and a support example
  ``2 x inner_steps`` times in second-order inner loops, whose every step's
  forward and backward stay in the graph.
* **checkpoint bytes**: float32 parameters plus Adam's two moments, ``12 x parameters``.

``tests/workers/metalearn/test_cost.py`` compares it with torch on tiny configs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from workers.metalearn.shapes import CONV_BLOCKS, Facts, FamilyFacts, uses_conv
from workers.metalearn.specs import expected_shapes, spec_of
from workers.metalearn.types import ConfigError

#: float32
BYTES_PER_VALUE = 4
#: A checkpoint holds the parameters and Adam's ``exp_avg`` and ``exp_avg_sq``.
CHECKPOINT_COPIES = 3
#: The budget keys, in the order they are checked.
BUDGET_KEYS = ("parameters", "checkpoint_bytes", "activation_bytes")


@dataclass(frozen=True)
class CostEstimate:
    parameters: int
    activation_bytes: int
    checkpoint_bytes: int

    def value(self, key: str) -> int:
        return int(getattr(self, key))


def format_bytes(count: float) -> str:
    """``1536`` -> ``"1.5 KiB"``; binary units up to TiB."""
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if abs(count) < 1024:
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"


def format_count(count: float) -> str:
    """``117_000_000`` -> ``"117.0 M"``."""
    for unit in ("", " k", " M"):
        if abs(count) < 1000:
            return f"{count:.0f}{unit}" if not unit else f"{count:.1f}{unit}"
        count /= 1000
    return f"{count:.1f} G"


def activation_values(config: Any, facts: Facts) -> int:
    """Activation values autograd keeps per example for one forward pass."""
    inputs = math.prod(facts.input_shape) if facts.input_shape else 1
    outputs = facts.ways if facts.classification else 1
    if not uses_conv(facts.input_shape):
        return inputs + sum(int(h) for h in config.hidden) + outputs
    filters = int(config.conv_filters)
    _, height, width = (int(s) for s in facts.input_shape)
    total = inputs
    for _ in range(CONV_BLOCKS):
        total += 3 * filters * height * width  # conv, norm and ReLU outputs
        height, width = height // 2, width // 2
        total += filters * height * width  # the pooled output
    return total + outputs


def second_order(config: Any) -> bool:
    spec = spec_of(config.algorithm)
    return spec.applies("inner_steps") and spec.applies("first_order") and not config.first_order


def training_ways(config: Any) -> int:
    """Classes of a meta-training episode: ``train_ways`` where set (ProtoNets), else ``ways``."""
    return int(getattr(config, "train_ways", None) or config.ways)


def graph_passes_per_task(config: Any, facts: Facts) -> int:
    """Example passes per task that autograd keeps at once (see the module doc)."""
    per_class = training_ways(config) if facts.classification else 1
    support, query = int(config.shots) * per_class, int(config.query) * per_class
    support_passes = 2 * int(config.inner_steps) if second_order(config) else 2
    return support * support_passes + query * 2


def estimate_cost(config: Any, family_info: FamilyFacts | Mapping[str, Any]) -> CostEstimate:
    """The cost of training ``config`` (a ``TrainConfig``) on a family (its facts)."""
    facts = Facts.of(family_info)
    parameters = sum(math.prod(shape) for shape in expected_shapes(config, facts).values())
    per_pass = activation_values(config, facts) * BYTES_PER_VALUE
    activations = int(config.meta_batch) * graph_passes_per_task(config, facts) * per_pass
    return CostEstimate(
        parameters=parameters,
        activation_bytes=activations,
        checkpoint_bytes=parameters * BYTES_PER_VALUE * CHECKPOINT_COPIES,
    )


def _width_field(config: Any, facts: Facts) -> tuple[str, float]:
    defaults = type(config).model_fields
    if uses_conv(facts.input_shape):
        return "conv_filters", config.conv_filters / defaults["conv_filters"].default
    return "hidden", sum(config.hidden) / sum(defaults["hidden"].default)


def fields_to_lower(config: Any, facts: Facts, key: str) -> list[str]:
    """The settings behind an over-budget ``key``, the furthest above its default first."""
    defaults = type(config).model_fields
    ratios = dict([_width_field(config, facts)])
    if config.algorithm == "mnn":
        ratios["mnn_hidden"] = config.mnn_hidden / defaults["mnn_hidden"].default
    if key == "activation_bytes":
        for name in ("meta_batch", "query", "shots"):
            ratios[name] = getattr(config, name) / defaults[name].default
        if second_order(config):
            ratios["inner_steps"] = config.inner_steps / max(defaults["inner_steps"].default, 1)
        if facts.classification:
            name = "train_ways" if getattr(config, "train_ways", None) else "ways"
            ratios[name] = training_ways(config) / defaults["ways"].default
    return sorted(ratios, key=lambda name: -ratios[name])


def _describe(key: str, value: int) -> str:
    if key == "parameters":
        return f"{format_count(value)} parameters"
    label = "checkpoints of" if key == "checkpoint_bytes" else "activation memory per meta-batch of"
    return f"{label} {format_bytes(value)}"


def check_budget(
    config: Any, family_info: FamilyFacts | Mapping[str, Any], budget: Mapping[str, int], *, queue: str
) -> CostEstimate:
    """Raise :class:`ConfigError` keyed by the setting to lower when the estimate
    passes ``budget`` (``{"parameters": n, "checkpoint_bytes": n, "activation_bytes": n}``,
    any key may be missing); otherwise return the estimate."""
    facts = Facts.of(family_info)
    estimate = estimate_cost(config, facts)
    for key in BUDGET_KEYS:
        limit = budget.get(key)
        if limit is None or estimate.value(key) <= limit:
            continue
        fields = fields_to_lower(config, facts, key)
        others = f" (or {', '.join(fields[1:3])})" if len(fields) > 1 else ""
        limit_text = format_count(limit) if key == "parameters" else format_bytes(limit)
        raise ConfigError(
            {
                fields[0]: f"Estimated {_describe(key, estimate.value(key))}; the {queue} queue allows "
                f"{limit_text}. Lower {fields[0]}{others}."
            }
        )
    return estimate
