"""``static/js/parallel_coords.js`` in a blank page: a swept rate that spans decades gets
a log axis (evenly spaced decades, as a log-uniform sweep draws them), a narrow one
stays linear, and brushing works on either."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

SCRIPT = Path(__file__).resolve().parents[2] / "static" / "js" / "parallel_coords.js"
#: The chart's own geometry: axes run from y=TOP down to y=HEIGHT - BOTTOM.
TOP, BOTTOM_Y = 34, 320 - 40

DRAW = """(axes) => {
  const box = document.createElement("div");
  box.style.width = "600px";
  document.body.appendChild(box);
  ParallelCoords.draw(box, {axes: axes, ids: [1, 2, 3], colours: ["#000", "#111", "#222"]});
  const ys = Array.from(box.querySelectorAll("path.pc-line")).map(
    (p) => p.getAttribute("d").split("L").map((point) => +point.split(",")[1]));
  const axesOut = Array.from(box.querySelectorAll("g.pc-axis")).map((g) => ({
    scale: g.dataset.scale,
    title: g.querySelector(".pc-title").textContent,
    ticks: Array.from(g.querySelectorAll("text:not(.pc-title)")).map((t) => t.textContent),
  }));
  return {ys: ys, axes: axesOut};
}"""


def test_a_rate_spanning_decades_gets_a_log_axis(chromium):
    page = chromium.new_page()
    try:
        page.set_content("<!doctype html><html><body></body></html>")
        page.add_script_tag(path=str(SCRIPT))
        drawn = page.evaluate(
            DRAW,
            [
                {"name": "inner_lr", "values": [0.001, 0.01, 0.1]},
                {"name": "meta_lr", "values": [0.001, 0.002, 0.003]},
                {"name": "val_loss", "values": [3.4, 3.0, None]},
            ],
        )
        # Brushing the log axis's middle keeps the run at 0.01 alone.
        axis = page.locator('g[data-axis="inner_lr"] line').bounding_box()
        x, middle_y = axis["x"] + axis["width"] / 2, axis["y"] + axis["height"] / 2
        page.mouse.move(x, middle_y - 20)
        page.mouse.down()
        page.mouse.move(x, middle_y + 20, steps=4)
        page.mouse.up()
        assert page.locator("div[data-kept]").get_attribute("data-kept") == "1"
    finally:
        page.close()
    inner, meta, loss = drawn["axes"]
    assert inner == {"scale": "log", "title": "inner_lr (log)", "ticks": ["0.001", "0.01", "0.1"]}
    assert meta["scale"] == "linear" and meta["title"] == "meta_lr"
    assert loss["scale"] == "linear"
    middle = (TOP + BOTTOM_Y) / 2
    # Log: 0.01 halfway between 0.001 and 0.1; linear: 0.002 halfway between 0.001 and 0.003.
    assert [round(ys[0], 1) for ys in drawn["ys"]] == [BOTTOM_Y, middle, TOP]
    assert [round(ys[1], 1) for ys in drawn["ys"]] == [BOTTOM_Y, middle, TOP]
    assert drawn["ys"][2][2] > BOTTOM_Y  # a missing value sits below its axis
