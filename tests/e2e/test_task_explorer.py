"""The task-space explorer's JavaScript (``static/js/task_explorer.js``) in Chromium
against the numpy reference (``workers.metalearn.explorer.explorer_predict``, itself
tested against the engine's torch forward pass), to 1e-5. No server needed: the
script is loaded into a blank page."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from workers.metalearn.algorithms import make_algorithm
from workers.metalearn.config import FamilySpec, parse_config
from workers.metalearn.episodes import FamilyInfo
from workers.metalearn.explorer import explorer_export, explorer_predict
from workers.metalearn.families import make_family
from workers.metalearn.shapes import Facts

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

SCRIPT = Path(__file__).resolve().parents[2] / "static" / "js" / "task_explorer.js"
SINE = FamilyInfo(name="sinusoid", version=1, kind="regression", input_shape=(1,), desc_dim=2, ways=1)


def test_the_browser_evaluates_the_hypernetwork_as_numpy_does(chromium):
    config = parse_config({"algorithm": "mnn"})  # the default sizes: MLP 1-40-40-1, hypernetwork 128 wide
    torch.manual_seed(2)
    params = {
        k: v + 0.03 * torch.randn_like(v) for k, v in make_algorithm(config, SINE).init_params().items()
    }
    family = make_family(FamilySpec(name="sinusoid"))
    model = explorer_export(
        {k: v.numpy() for k, v in params.items()},
        config,
        Facts.of(SINE),
        desc_names=list(family.desc_names),
        desc_ranges=list(family.desc_ranges()),
        input_range=family.input_range(),
    )
    xs = np.linspace(-5, 5, model["x"]["points"])
    descs = [[0.1, 0.0], [2.5, 1.5], [5.0, float(np.pi)], [3.3, 0.2]]
    page = chromium.new_page()
    try:
        page.set_content("<!doctype html><html><body></body></html>")
        page.add_script_tag(path=str(SCRIPT))
        found = page.evaluate(
            """([model, descs, xs]) => {
                const loaded = window.MetaExplorer.load(model);
                const out = descs.map((d) => Array.from(window.MetaExplorer.predict(loaded, d, xs)));
                const started = performance.now();
                for (let i = 0; i < 20; i++) window.MetaExplorer.predict(loaded, descs[i % descs.length], xs);
                return {out, ms: (performance.now() - started) / 20};
            }""",
            [json.loads(json.dumps(model)), descs, xs.tolist()],
        )
    finally:
        page.close()
    for desc, values in zip(descs, found["out"], strict=True):
        expected = explorer_predict(model, np.array(desc), xs)
        assert np.allclose(values, expected, rtol=1e-5, atol=1e-5), (
            desc,
            np.abs(np.array(values) - expected).max(),
        )
    print(f"one evaluation of the hypernetwork and 200 points: {found['ms']:.2f} ms")
