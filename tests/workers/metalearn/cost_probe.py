"""Run in a fresh process by ``test_cost.py``: the memory one meta-gradient takes on
``factor`` times the config's meta-batch, with the cost estimate of one config
meta-batch. The memory is the process's peak resident size during the call (Linux's
``VmHWM``, reset through ``/proc/self/clear_refs`` just before) less its resident size
before: a maximum since the process started would also count what imports took.

Usage: ``python -m tests.workers.metalearn.cost_probe '<config json>' <factor>``; prints JSON.
"""

from __future__ import annotations

import gc
import json
import re
import sys
from pathlib import Path

import torch

from workers.metalearn.algorithms import make_algorithm
from workers.metalearn.config import parse_config
from workers.metalearn.cost import estimate_cost
from workers.metalearn.episodes import FamilyInfo, to_episode
from workers.metalearn.families import make_family
from workers.metalearn.shapes import family_info_dict
from workers.metalearn.types import EpisodeSpec


def _status_bytes(field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    assert match, field
    return int(match.group(1)) * 1024


def main(raw: str, factor: int) -> None:
    torch.set_num_threads(1)
    config = parse_config(json.loads(raw))
    family = make_family(config.family)
    algo = make_algorithm(config, FamilyInfo.of(family, config))
    meta = {k: v.requires_grad_() for k, v in algo.init_params().items()}
    spec = EpisodeSpec(shots=config.shots, query=config.query, ways=config.ways)
    episode = to_episode(family.sample("train", factor * config.meta_batch, spec, seed=0))
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # the peak resident size starts again here
    before = _status_bytes("VmRSS")
    algo.meta_grads(meta, episode)
    grew = _status_bytes("VmHWM") - before
    estimate = estimate_cost(config, family_info_dict(family, config))
    print(json.dumps({"peak": grew, "activation": estimate.activation_bytes}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
