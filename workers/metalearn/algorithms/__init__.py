"""Meta-learning algorithms over parameter dicts (``torch.func``), one per config name.

:func:`make_algorithm` builds the algorithm a config names, for a family, after
checking that they fit together (:func:`check_compatible`). Every algorithm is an
:class:`~workers.metalearn.algorithms.base.Algorithm`: the training loop,
``evaluate`` and ``adapt`` drive them all through the same few methods.
"""

from __future__ import annotations

import torch

from workers.metalearn import specs
from workers.metalearn.algorithms.base import Algorithm, Params, inner_step
from workers.metalearn.algorithms.maml import ANIL, FOMAML, MAML, MetaSGD
from workers.metalearn.algorithms.mnn import MNN
from workers.metalearn.algorithms.protonet import ProtoNet
from workers.metalearn.algorithms.reptile import Reptile
from workers.metalearn.algorithms.seed_mnn import SeedMNN
from workers.metalearn.config import TrainConfig
from workers.metalearn.episodes import FamilyInfo

__all__ = [
    "ALGORITHM_CLASSES",
    "ANIL",
    "FOMAML",
    "MAML",
    "MNN",
    "Algorithm",
    "MetaSGD",
    "Params",
    "ProtoNet",
    "Reptile",
    "SeedMNN",
    "check_compatible",
    "inner_step",
    "make_algorithm",
]

ALGORITHM_CLASSES: dict[str, type[Algorithm]] = {
    cls.spec.name: cls for cls in (MAML, FOMAML, Reptile, MetaSGD, ANIL, ProtoNet, MNN, SeedMNN)
}
assert set(ALGORITHM_CLASSES) == set(specs.SPECS), "every spec has its module, and every module its spec"


def check_compatible(config: TrainConfig, info: FamilyInfo) -> None:
    """Raise :class:`ConfigError` naming ``algorithm`` when it does not fit the family
    (the rule is the algorithm's spec, :mod:`workers.metalearn.specs`)."""
    specs.check_compatible(config.algorithm, info, config)


def make_algorithm(config: TrainConfig, info: FamilyInfo) -> Algorithm:
    """The algorithm ``config.algorithm`` for a family, its networks initialised from
    ``config.seed`` (the global torch RNG is left as it was)."""
    check_compatible(config, info)
    cls = ALGORITHM_CLASSES[config.algorithm]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return cls(config, info)
