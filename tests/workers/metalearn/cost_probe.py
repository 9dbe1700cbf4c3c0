"""Run in a fresh process by ``test_cost.py``: the peak RSS growth of one meta-gradient
on a meta-batch 4x the config's, against the cost estimate of the 3x more tasks.

Usage: ``python -m tests.workers.metalearn.cost_probe '<config json>'``; prints JSON.
"""

from __future__ import annotations

import gc
import json
import resource
import sys

import torch

from workers.metalearn.algorithms import make_algorithm
from workers.metalearn.config import parse_config
from workers.metalearn.cost import estimate_cost
from workers.metalearn.episodes import FamilyInfo, to_episode
from workers.metalearn.families import make_family
from workers.metalearn.shapes import family_info_dict
from workers.metalearn.types import EpisodeSpec


def main(raw: str) -> None:
    torch.set_num_threads(1)
    config = parse_config(json.loads(raw))
    family = make_family(config.family)
    algo = make_algorithm(config, FamilyInfo.of(family, config))
    meta = {k: v.requires_grad_() for k, v in algo.init_params().items()}
    spec = EpisodeSpec(shots=config.shots, query=config.query, ways=config.ways)
    # The first meta-batch warms the allocator and kernels up and sets the peak.
    algo.meta_grads(meta, to_episode(family.sample("train", config.meta_batch, spec, seed=0)))
    gc.collect()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    algo.meta_grads(meta, to_episode(family.sample("train", 4 * config.meta_batch, spec, seed=1)))
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    estimate = estimate_cost(config, family_info_dict(family, config))
    print(json.dumps({"measured": after - before, "estimated": 3 * estimate.activation_bytes}))


if __name__ == "__main__":
    main(sys.argv[1])
