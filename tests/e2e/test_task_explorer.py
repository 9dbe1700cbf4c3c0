"""The task-space explorer: its JavaScript (``static/js/task_explorer.js``) in Chromium
against the numpy reference (``workers.metalearn.explorer.explorer_predict``, itself
tested against the engine's torch forward pass) to 1e-5, in a blank page; then the
whole journey on the real stack: the launch form's MNN condition, a short MNN run,
its model page's sliders redrawing the curve with no request per move."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.e2e.ui import (
    await_launch_fields,
    create_experiment,
    create_taskset,
    expect_status,
    launch_run,
    log_in,
)
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


def _meta_model_of(run_id: int, timeout: float = 30.0):
    from apps.registry.models import MetaModel

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        meta = MetaModel.objects.filter(training_run_id=run_id).first()
        if meta is not None:
            return meta
        time.sleep(0.2)
    raise AssertionError(f"run {run_id}: no meta-model registered in {timeout:.0f} s")


def test_the_model_page_explores_the_task_space(live_stack, e2e_page, e2e_user):
    page, base = e2e_page, live_stack.base_url
    user, team = e2e_user
    log_in(page, base, user.username)
    create_taskset(page, base, team.slug, name="Sine waves")
    create_experiment(page, base, team.slug, name="Explorer test")

    # The launch form: an MNN on sinusoid reads the description by default; picking
    # the support set brings the set encoder's width (an htmx swap).
    page.goto(f"{base}/t/{team.slug}/runs/new/")
    page.select_option("#id_taskset", label="Sine waves")
    page.select_option("#id_algorithm", "mnn")
    await_launch_fields(page)
    assert page.locator("#id_mnn_condition").input_value() == "description"
    assert page.locator("#id_mnn_embed_dim").count() == 0
    page.select_option("#id_mnn_condition", "support")
    page.wait_for_selector("#id_mnn_embed_dim")

    run_id = launch_run(
        page, base, team.slug, experiment="Explorer test", taskset="Sine waves",
        fields={"algorithm": "mnn", "mnn_condition": "description", "meta_batch": 4, "iterations": 200,
                "eval_interval": 200, "device": "cpu"},
        advanced={"eval_tasks": 10, "checkpoint_interval": 200},
    )  # fmt: skip
    expect_status(page, "succeeded", timeout_s=90)
    meta = _meta_model_of(run_id)

    fetched: list[str] = []
    page.on(
        "request", lambda request: fetched.append(request.url) if "explorer.json" in request.url else None
    )
    seen = len(page.console_log)
    page.goto(f"{base}/models/{meta.pk}/")
    assert page.get_attribute("#metamodel-condition", "data-mnn-condition") == "description"
    page.wait_for_selector('#task-explorer[data-draws="1"]')
    names = page.eval_on_selector_all("[data-explorer-sliders] input", "els => els.map(e => e.name)")
    assert names == ["amplitude", "phase"]
    first = page.get_attribute("[data-explorer-plot] path.curve", "d")
    for value in ("4.5", "0.5"):
        page.eval_on_selector(
            'input[name="amplitude"]',
            "(el, v) => { el.value = v; el.dispatchEvent(new Event('input', {bubbles: true})); }",
            value,
        )
    page.wait_for_selector('#task-explorer[data-draws="3"]')
    assert page.get_attribute("[data-explorer-plot] path.curve", "d") != first
    assert len(fetched) == 1  # the weights once; no request per move
    assert re.fullmatch(r"\d+\.\d+", page.get_attribute("#task-explorer", "data-last-ms"))
    print(f"last redraw: {page.get_attribute('#task-explorer', 'data-last-ms')} ms")
    on_this_page = page.console_log[seen:]
    assert not [line for line in on_this_page if "error" in line.lower()], on_this_page


def test_the_task_map_draws_every_task_coloured_by_a_parameter(chromium):
    """``static/js/task_map.js`` on the markup of the model page's map."""
    data = {
        "points": [[i / 10, (i % 7) / 3] for i in range(50)],
        "params": {"amplitude": [i / 10 for i in range(50)], "phase": [(i % 5) / 2 for i in range(50)]},
        "explained": [0.7, 0.2],
        "embedding_dim": 4,
    }
    markup = (
        '<!doctype html><html><body><script id="task-map-data" type="application/json">'
        + json.dumps(data)
        + '</script><div id="task-map" data-source="task-map-data"><select data-task-map-colour></select>'
        '<svg data-task-map-plot viewBox="0 0 600 400"></svg><p data-task-map-legend></p></div></body></html>'
    )
    page = chromium.new_page()
    try:
        page.set_content(markup)
        page.add_script_tag(path=str(SCRIPT.with_name("task_map.js")))
        page.wait_for_selector('#task-map[data-drawn="50"]')
        assert page.locator("[data-task-map-plot] circle").count() == 50
        fills = page.eval_on_selector_all("circle", "els => els.map(e => e.getAttribute('fill'))")
        assert (
            fills[0] == "rgb(47,111,237)" and fills[-1] == "rgb(232,121,20)"
        )  # low amplitude blue, high orange
        page.select_option("[data-task-map-colour]", "phase")
        assert page.get_attribute("#task-map", "data-colour") == "phase"
        assert "phase: blue 0.00 to orange 2.00" in page.inner_text("[data-task-map-legend]")
    finally:
        page.close()
