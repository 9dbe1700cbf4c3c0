// The side-by-side page (templates/reviews/compare.html): draws the adaptation curves
// and the shared-bin histograms from the #compare-data JSON (json_script) with the
// vendored uPlot (through MetaCharts, static/js/charts.js), on load and after each htmx swap of #compare-result. After a draw,
// each chart element carries data-series (models drawn) and data-points (x values),
// which the browser tests read. Colours match the .swatch-N classes in app.css.
(function () {
  "use strict";

  var HEIGHT = 280;
  var MIN_WIDTH = 240;
  var plots = [];
  var drawn = null; // the #compare-data element last drawn (a swap brings a new one)

  function mark(el, series, points) {
    el.dataset.series = String(series);
    el.dataset.points = String(points);
  }

  function destroyAll() {
    plots.forEach(function (plot) { plot.destroy(); });
    plots = [];
  }

  function keep(plot) {
    if (plot) plots.push(plot);
  }

  function seriesOptions(labels, extra) {
    var palette = window.MetaCharts.PALETTE;
    return labels.map(function (label, i) {
      var options = { label: label, stroke: palette[i % palette.length], width: 2, spanGaps: false };
      return Object.assign(options, extra || {});
    });
  }

  function drawCurves(el, data) {
    mark(el, data.curves.length, data.steps.length);
    keep(window.MetaCharts.plot(el, {
      height: HEIGHT,
      series: [{ label: "inner step" }].concat(seriesOptions(data.labels, { points: { show: true, size: 5 } })),
      axes: [{ label: "inner step" }, { label: "mean query loss", size: window.MetaCharts.axisSize }],
    }, [data.steps].concat(data.curves), { minWidth: MIN_WIDTH, resize: true }));
  }

  function drawHistogram(el, data) {
    var edges = data.bin_edges;
    if (!edges || edges.length < 2) return;
    mark(el, data.hist.length, edges.length - 1);
    keep(window.MetaCharts.histogram(el, {
      edges: edges,
      // The last count is repeated at the right edge to close the step.
      counts: data.hist.map(function (counts) { return counts.concat([counts[counts.length - 1]]); }),
      series: seriesOptions(data.labels),
      metric: data.metric,
      height: HEIGHT,
      minWidth: MIN_WIDTH,
    }));
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
  });
})();
