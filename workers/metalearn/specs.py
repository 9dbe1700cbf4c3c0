"""One declarative spec per algorithm: what it needs, which settings apply to it,
and the names and shapes of its meta-parameters for a config. Torch-free.

The engine (:mod:`workers.metalearn.algorithms`, :mod:`workers.metalearn.config`)
and the web side (launch form, run service, upload checks, adaptation form)
import these facts; none of them restates them. Adding an algorithm means adding
its module under ``algorithms/``, its spec here, and their tests.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from workers.metalearn.shapes import Facts, FamilyFacts, Shapes, backbone_shapes, linear, uses_conv
from workers.metalearn.types import ConfigError

#: Settings every algorithm uses (besides the algorithm and the task family).
COMMON_FIELDS = frozenset(
    {
        "meta_batch", "iterations", "grad_clip", "shots", "query", "eval_interval", "eval_tasks",
        "checkpoint_interval", "seed", "device", "bf16", "compile", "train_tasks",
    }
)  # fmt: skip
#: Settings of the backbones (``hidden`` for the MLP, ``conv_filters`` for images).
BACKBONE_FIELDS = frozenset({"hidden", "conv_filters"})
#: The inner loop of the gradient-based learners.
INNER_FIELDS = frozenset({"inner_lr", "inner_steps"})
#: What an MNN's hypernetwork reads (``mnn_condition``): the family's task description,
#: or a set encoding of the support set.
MNN_CONDITIONS: tuple[str, ...] = ("description", "support")


@dataclass(frozen=True)
class AlgorithmSpec:
    """What the rest of the system needs to know about one algorithm.

    ``fields`` are the config settings that change what it does (the launch form
    shows only those); ``shapes(config, facts)`` gives its meta-parameters'
    ``{name: shape}``, equal to the torch module's ``init_params()``.
    """

    name: str
    label: str
    shapes: Callable[[Any, Facts], Shapes]
    fields: frozenset[str]
    #: Refuses regression families (ProtoNets' prototypes are per class).
    classification_only: bool = False
    #: Refuses families without a task description (and classification families).
    needs_description: bool = False
    #: Conditions on the task description when the family has one.
    uses_description: bool = False
    #: Adapts to a task with gradient steps (False: no inner loop at all).
    adapts: bool = True
    #: Settings read only when the model does not read the task description.
    undescribed_fields: frozenset[str] = frozenset()
    #: Reads the description or the support set as ``mnn_condition`` says.
    conditioned: bool = False
    #: Adapting with more inner steps than meta-training took can diverge (Meta-SGD's
    #: learned per-weight rates, ANIL's head on fixed features): adaptation defaults to
    #: the trained number and warns beyond it.
    bounded_steps: bool = False
    #: The settings that stop a diverging run, most effective first, as measured by
    #: ``benchmarks/divergence_remedies.py``; None: all of the algorithm's own, unmeasured (ANIL,
    #: ProtoNets and seed-mnn gave no NaN or inf when probed). See ``workers.tasks.divergence_hint``.
    divergence_remedies: tuple[str, ...] | None = None

    def applies(self, field: str) -> bool:
        return field in self.fields

    def condition(self, desc_dim: int | None, asked: str | None = None) -> str | None:
        """What the model reads of a task: ``"description"``, ``"support"`` (a set
        encoder over the K shots), or None (neither: the other algorithms). ``asked``
        is the config's ``mnn_condition``; unset, the description wins where the
        family has one."""
        if self.needs_description:
            return "description"
        if not self.conditioned:
            return None
        if asked is not None:
            return asked
        return "description" if desc_dim else "support"

    def check_condition(self, facts: Facts, asked: str | None) -> None:
        """Raise :class:`ConfigError` (``mnn_condition``) for a description asked of a
        family without one."""
        if self.conditioned and asked == "description" and not facts.desc_dim:
            raise ConfigError(
                {
                    "mnn_condition": f"family {facts.name!r} has no task description; "
                    "condition on the support set instead"
                }
            )

    def check_family(self, facts: Facts) -> None:
        """Raise :class:`ConfigError` (``algorithm``) when the family does not suit it."""
        if self.classification_only and not facts.classification:
            raise ConfigError(
                {"algorithm": f"{self.name} is for classification; family {facts.name!r} is {facts.kind}"}
            )
        if self.needs_description and (facts.classification or not facts.desc_dim):
            suffix = "" if facts.desc_dim else " without a description"
            raise ConfigError(
                {
                    "algorithm": f"{self.name} needs a regression family with a task description; "
                    f"family {facts.name!r} is {facts.kind}{suffix}"
                }
            )

    def describes(self, desc_dim: int | None, asked: str | None = None) -> bool:
        """Whether a model of this algorithm (``mnn_condition`` ``asked``) reads the
        task description of a family with ``desc_dim`` description features."""
        if self.needs_description:
            return True
        return self.uses_description and bool(desc_dim) and self.condition(desc_dim, asked) != "support"


# -- meta-parameter shapes, one function per kind of algorithm --------------------------


def _backbone(config: Any, facts: Facts) -> Shapes:
    """MAML, FOMAML, Reptile and ANIL: the backbone's weights."""
    return backbone_shapes(facts.input_shape, facts.ways, config)[0]


def _metasgd(config: Any, facts: Facts) -> Shapes:
    """The backbone's weights and a learning rate ``lr.<name>`` of the same shape each."""
    weights = _backbone(config, facts)
    return {**weights, **{f"lr.{k}": list(v) for k, v in weights.items()}}


def _protonet(config: Any, facts: Facts) -> Shapes:
    """The backbone's body (the embedding); no head."""
    return {k: v for k, v in _backbone(config, facts).items() if k.startswith("body.")}


def _mnn(config: Any, facts: Facts) -> Shapes:
    """The conv body (images only), the hypernetwork ``hyper.*`` writing the target
    network (the whole MLP, or the conv net's head), and the set encoder
    ``encoder.*`` when the family has no description."""
    backbone, feature_dim = backbone_shapes(facts.input_shape, facts.ways, config)
    if uses_conv(facts.input_shape):
        body = {k: v for k, v in backbone.items() if k.startswith("body.")}
        target = {k: v for k, v in backbone.items() if k.startswith("head.")}
    else:
        body, target = {}, backbone
        feature_dim = math.prod(facts.input_shape)
    hidden = int(config.mnn_hidden)
    encoder: Shapes = {}
    if SPECS["mnn"].describes(facts.desc_dim, getattr(config, "mnn_condition", None)):
        r_dim = facts.desc_dim
    else:
        in_dim = feature_dim if facts.classification else feature_dim + 1
        embed = int(config.mnn_embed_dim)
        encoder = {**linear("encoder.0.", in_dim, hidden), **linear("encoder.2.", hidden, embed)}
        r_dim = embed * (facts.ways if facts.classification else 1)
    n_target = sum(math.prod(shape) for shape in target.values())
    hyper = {
        **linear("hyper.0.", r_dim, hidden),
        **linear("hyper.2.", hidden, hidden),
        **linear("hyper.4.", hidden, n_target),
    }
    return {**body, **hyper, **encoder}


#: seed-mnn's fixed network: ``Dense(128) -> Dense(64) -> Dense(1)``.
SEED_MNN_LAYERS = (("dense", 128), ("dense_1", 64), ("dense_2", 1))


def _seed_mnn(config: Any, facts: Facts) -> Shapes:
    """The fixed MLP on ``concat(description, x)``."""
    shapes: Shapes = {}
    width = int(facts.desc_dim or 0) + math.prod(facts.input_shape)
    for name, size in SEED_MNN_LAYERS:
        shapes.update(linear(f"{name}.", width, size))
        width = size
    return shapes


# -- the specs -----------------------------------------------------------------------------

#: The meta-optimiser's settings (seed-mnn keeps its own fixed optimiser).
META_LR_FIELDS = frozenset({"meta_lr", "meta_lr_schedule"})
_GRADIENT = COMMON_FIELDS | BACKBONE_FIELDS | INNER_FIELDS | META_LR_FIELDS
_INNER_FIRST = ("inner_steps", "inner_lr", "meta_lr")

SPECS: dict[str, AlgorithmSpec] = {
    spec.name: spec
    for spec in (
        # The inner-loop learners: fewer inner steps, or a tenth of the inner rate, stopped every
        # diverging case measured, whether a large inner or meta rate caused it; a smaller meta
        # rate only the latter; a clip under Adam seldom (benchmarks/divergence_remedies.py).
        AlgorithmSpec(
            "maml", "MAML", _backbone, _GRADIENT | {"first_order"}, divergence_remedies=_INNER_FIRST
        ),
        AlgorithmSpec("fomaml", "First-order MAML", _backbone, _GRADIENT, divergence_remedies=_INNER_FIRST),
        AlgorithmSpec("reptile", "Reptile", _backbone, _GRADIENT, divergence_remedies=_INNER_FIRST),
        AlgorithmSpec(
            "metasgd",
            "Meta-SGD",
            _metasgd,
            _GRADIENT | {"first_order"},
            bounded_steps=True,
            # Its learned rates grow until the inner loop blows up (an independent per-task
            # Meta-SGD too, benchmarks/metasgd_divergence.py): only fewer steps or a slower meta
            # rate help, not a clip, a smaller initial rate or first order (divergence_remedies.py).
            divergence_remedies=("inner_steps", "meta_lr"),
        ),
        AlgorithmSpec("anil", "ANIL", _backbone, _GRADIENT | {"first_order"}, bounded_steps=True),
        AlgorithmSpec(
            "protonet",
            "Prototypical Networks",
            _protonet,
            # train_ways: the embedding has no head, so its weights fit episodes of any ways.
            COMMON_FIELDS | BACKBONE_FIELDS | META_LR_FIELDS | {"train_ways"},
            classification_only=True,
            adapts=False,
        ),
        AlgorithmSpec(
            "mnn",
            "MNN (hypernetwork)",
            _mnn,
            COMMON_FIELDS
            | BACKBONE_FIELDS
            | META_LR_FIELDS
            | {"inner_lr", "first_order", "mnn_hidden", "mnn_embed_dim", "mnn_finetune_steps"}
            | {"mnn_condition"},
            divergence_remedies=("meta_lr",),  # its fine-tuning rate, a clip, first order: no help
            uses_description=True,
            undescribed_fields=frozenset({"mnn_embed_dim"}),  # the set encoder's width
            conditioned=True,
        ),
        AlgorithmSpec(
            "seed-mnn",
            "seed-mnn (baseline)",
            _seed_mnn,
            COMMON_FIELDS,
            needs_description=True,
            uses_description=True,
            adapts=False,
        ),
    )
}
#: Algorithm names, in the order forms list them.
ALGORITHM_NAMES: tuple[str, ...] = tuple(SPECS)
#: Every setting some algorithm uses, and ``ways`` (classification families).
ALGORITHM_FIELDS = frozenset({"ways"}).union(*(spec.fields for spec in SPECS.values()))


def spec_of(algorithm: str) -> AlgorithmSpec:
    """The spec of ``algorithm``; :class:`ConfigError` (``algorithm``) if unknown."""
    try:
        return SPECS[algorithm]
    except KeyError:
        raise ConfigError({"algorithm": f"unknown algorithm {algorithm!r}"}) from None


def launch_fields(
    algorithm: str,
    *,
    kind: str | None,
    input_shape: tuple[int, ...] | None,
    described: bool | None = None,
    condition: str | None = None,
) -> frozenset[str]:
    """The settings that apply to ``algorithm`` on a family of ``kind`` whose inputs
    have ``input_shape`` and whose tasks are ``described`` or not (None when unknown:
    then nothing is left out for it), the model conditioned as ``condition`` (the
    config's ``mnn_condition``) asks. ``ways`` applies to classification only; the
    MLP's ``hidden`` sizes to vector inputs and the conv net's ``conv_filters`` to
    images."""
    spec = spec_of(algorithm)
    fields = set(spec.fields)
    if kind in (None, "classification"):
        fields.add("ways")
    if input_shape is not None:
        fields.discard("hidden" if uses_conv(input_shape) else "conv_filters")
    if described and spec.condition(1, condition) != "support":
        fields -= spec.undescribed_fields
    return frozenset(fields)


def embeds_tasks(algorithm: str, desc_dim: int | None, condition: str | None) -> str:
    """'' when a model of ``algorithm`` (``mnn_condition`` ``condition``, on a family
    with ``desc_dim``) embeds a task from its support set (the task embedding map):
    ProtoNets, and the MNN's set encoder; else why not."""
    if algorithm == "protonet":
        return ""
    if algorithm == "mnn" and SPECS["mnn"].condition(desc_dim, condition) == "support":
        return ""
    return "Only ProtoNets and MNNs on the support set embed tasks."


def check_compatible(
    algorithm: str, family_info: FamilyFacts | Mapping[str, Any], config: Any = None
) -> None:
    """Raise :class:`ConfigError` naming ``algorithm`` when it does not fit the family
    (or ``mnn_condition`` when ``config`` asks a description the family lacks)."""
    spec, facts = spec_of(algorithm), Facts.of(family_info)
    spec.check_family(facts)
    spec.check_condition(facts, getattr(config, "mnn_condition", None))


def expected_shapes(config: Any, family_info: FamilyFacts | Mapping[str, Any]) -> Shapes:
    """``{name: shape}`` of the meta-parameters ``make_algorithm(config, info)`` creates.

    ``family_info`` is a ``FamilyInfo``, anything with its fields, or its ``to_dict()``.
    Raises :class:`ConfigError` (keyed ``algorithm`` or ``family``) where the engine
    would refuse the combination.
    """
    check_compatible(config.algorithm, family_info, config)
    return spec_of(config.algorithm).shapes(config, Facts.of(family_info))
