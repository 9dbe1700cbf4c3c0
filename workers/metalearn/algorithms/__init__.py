"""Meta-learning algorithms over parameter dicts (``torch.func``), one per config name.

:func:`make_algorithm` builds the algorithm a config names, for a family, after
checking that they fit together (:func:`check_compatible`). Every algorithm is an
:class:`~workers.metalearn.algorithms.base.Algorithm`: the training loop,
``evaluate`` and ``adapt`` drive them all through the same few methods.
"""

from __future__ import annotations

import torch

from workers.metalearn.algorithms.base import Algorithm, Params, inner_step
from workers.metalearn.algorithms.maml import ANIL, FOMAML, MAML, MetaSGD
from workers.metalearn.algorithms.mnn import MNN
from workers.metalearn.algorithms.protonet import ProtoNet
from workers.metalearn.algorithms.reptile import Reptile
from workers.metalearn.algorithms.seed_mnn import SeedMNN
from workers.metalearn.config import ConfigError, TrainConfig
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
    cls.name: cls for cls in (MAML, FOMAML, Reptile, MetaSGD, ANIL, ProtoNet, MNN, SeedMNN)
}


def check_compatible(config: TrainConfig, info: FamilyInfo) -> None:
    """Raise :class:`ConfigError` naming ``algorithm`` when it does not fit the family."""
    if config.algorithm == "protonet" and not info.classification:
        raise ConfigError(
            {"algorithm": f"protonet is for classification; family {info.name!r} is regression"}
        )
    if config.algorithm == "seed-mnn" and (info.classification or not info.desc_dim):
        raise ConfigError(
            {
                "algorithm": "seed-mnn needs a regression family with a task description; "
                f"family {info.name!r} is {info.kind}" + ("" if info.desc_dim else " without a description")
            }
        )


def make_algorithm(config: TrainConfig, info: FamilyInfo) -> Algorithm:
    """The algorithm ``config.algorithm`` for a family, its networks initialised from
    ``config.seed`` (the global torch RNG is left as it was)."""
    check_compatible(config, info)
    cls = ALGORITHM_CLASSES[config.algorithm]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return cls(config, info)
