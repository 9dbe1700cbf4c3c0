// The side-by-side page (templates/reviews/compare.html): draws the adaptation curves
// and the shared-bin histograms from the #compare-data JSON (json_script) with the
// vendored uPlot, on load and after each htmx swap of #compare-result. After a draw,
// each chart element carries data-series (models drawn) and data-points (x values),
// which the browser tests read. Colours match the .swatch-N classes in app.css.
(function () {
  "use strict";

  var PALETTE = ["#2f6fed", "#d64545", "#1f9d55", "#c98a04", "#7c3aed", "#0e9aa7"];
  var HEIGHT = 280;
  var plots = [];
  var drawn = null; // the #compare-data element last drawn (a swap brings a new one)

  function width(el) {
    return Math.max(el.clientWidth || 0, 240);
  }

  function mark(el, series, points) {
    el.dataset.series = String(series);
    el.dataset.points = String(points);
  }

  function destroyAll() {
    plots.forEach(function (plot) { plot.destroy(); });
    plots = [];
  }

  function seriesOptions(labels, extra) {
    return labels.map(function (label, i) {
      var options = { label: label, stroke: PALETTE[i % PALETTE.length], width: 2, spanGaps: false };
      return Object.assign(options, extra || {});
    });
  }

  function drawCurves(el, data) {
    var rows = [data.steps].concat(data.curves);
    mark(el, data.curves.length, data.steps.length);
    if (typeof window.uPlot !== "function") return;
    plots.push(new window.uPlot(
      {
        width: width(el),
        height: HEIGHT,
        scales: { x: { time: false } },
        series: [{ label: "inner step" }].concat(seriesOptions(data.labels, { points: { show: true, size: 5 } })),
        axes: [{ label: "inner step" }, { label: "mean query loss", size: 60 }],
      },
      rows,
      el
    ));
  }

  function drawHistogram(el, data) {
    var edges = data.bin_edges;
    if (!edges || edges.length < 2) return;
    // Stepped lines over the shared bins: each count holds from its left edge to the
    // next, and the last count is repeated at the right edge to close the step.
    var rows = [edges].concat(data.hist.map(function (counts) {
      return counts.concat([counts[counts.length - 1]]);
    }));
    mark(el, data.hist.length, edges.length - 1);
    if (typeof window.uPlot !== "function") return;
    var stepped = window.uPlot.paths && window.uPlot.paths.stepped ? window.uPlot.paths.stepped({ align: 1 }) : undefined;
    plots.push(new window.uPlot(
      {
        width: width(el),
        height: HEIGHT,
        scales: { x: { time: false } },
        series: [{ label: data.metric }].concat(seriesOptions(data.labels, { paths: stepped, points: { show: false } })),
        axes: [{ label: "post-adaptation " + data.metric }, { label: "tasks", size: 50 }],
      },
      rows,
      el
    ));
  }

  function draw() {
    var script = document.getElementById("compare-data");
    if (script === drawn && plots.length) return;
    destroyAll();
    drawn = script;
    if (!script) return;
    var data = JSON.parse(script.textContent);
    var curves = document.getElementById("compare-curves");
    var hist = document.getElementById("compare-hist");
    if (curves) drawCurves(curves, data);
    if (hist && data.kind === "batch") drawHistogram(hist, data);
  }

  document.addEventListener("DOMContentLoaded", function () {
    draw();
    document.body.addEventListener("htmx:afterSettle", draw);
    document.body.addEventListener("htmx:historyRestore", function () { drawn = null; draw(); });
    window.addEventListener("resize", function () {
      plots.forEach(function (plot) { plot.setSize({ width: width(plot.root.parentNode), height: HEIGHT }); });
    });
  });
})();
