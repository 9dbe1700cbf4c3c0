"""Run in a fresh process by ``test_cost.py``: the peak RSS of a fresh process after one
meta-gradient on ``factor`` times the config's meta-batch, with the cost estimate of one
config meta-batch. Two such processes (factors 1 and 5) give the measured growth of 4
meta-batches, free of the allocator's reuse of memory freed within one process.

Usage: ``python -m tests.workers.metalearn.cost_probe '<config json>' <factor>``; prints JSON.
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


def main(raw: str, factor: int) -> None:
    torch.set_num_threads(1)
    config = parse_config(json.loads(raw))
    family = make_family(config.family)
    algo = make_algorithm(config, FamilyInfo.of(family, config))
    meta = {k: v.requires_grad_() for k, v in algo.init_params().items()}
    spec = EpisodeSpec(shots=config.shots, query=config.query, ways=config.ways)
    episode = to_episode(family.sample("train", factor * config.meta_batch, spec, seed=0))
    gc.collect()
    algo.meta_grads(meta, episode)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    estimate = estimate_cost(config, family_info_dict(family, config))
    print(json.dumps({"peak": peak, "activation": estimate.activation_bytes}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
