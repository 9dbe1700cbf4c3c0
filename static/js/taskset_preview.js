// Task-set preview charts: one small uPlot per regression task (drawn through MetaCharts).
//
// The server renders, for each chart, an element
//   <div class="preview-chart" data-preview-chart="ID"></div>
// and its data with json_script as <script id="ID" type="application/json">:
//   {"x": [..sorted..], "series": [{"label", "kind": "points"|"line", "values": [..|null]}]}
// (uPlot's aligned data: one shared, sorted x; null where a series has no point).
// Charts are drawn on page load and whenever htmx swaps new content in.
(function () {
  "use strict";

  var C = window.MetaCharts.COLOURS;
  var STYLES = {
    "support": { stroke: C.blue, fill: C.blue, size: 8 },
    "query": { stroke: C.amber, fill: "#ffffff", size: 6 },
    "true function": { stroke: C.grey, width: 1.5 },
  };

  function seriesOptions(s) {
    var style = STYLES[s.label] || { stroke: C.ink, fill: C.ink, size: 6 };
    if (s.kind === "line") {
      return { label: s.label, stroke: style.stroke, width: style.width || 1.5, spanGaps: true, points: { show: false } };
    }
    return window.MetaCharts.pointSeries(s.label, style);
  }

  function draw(el) {
    if (el.dataset.rendered === "1" || typeof window.uPlot === "undefined") {
      return;
    }
    var source = document.getElementById(el.dataset.previewChart);
    if (!source) {
      return;
    }
    var data = JSON.parse(source.textContent);
    var columns = [data.x].concat(data.series.map(function (s) { return s.values; }));
    window.MetaCharts.plot(el, {
      width: Math.max(220, Math.min(el.clientWidth || 340, 480)),
      height: 220,
      cursor: { drag: { x: false, y: false } },
      series: [{ label: "x" }].concat(data.series.map(seriesOptions)),
      axes: [{ size: 32 }, { size: 44 }],
    }, columns);
    el.dataset.rendered = "1";
  }

  function drawAll(root) {
    var scope = root && root.querySelectorAll ? root : document;
    if (scope.matches && scope.matches("[data-preview-chart]")) {
      draw(scope);
    }
    scope.querySelectorAll("[data-preview-chart]").forEach(draw);
  }

  document.addEventListener("DOMContentLoaded", function () { drawAll(document); });
  // htmx 2 fires htmx:load on every element it adds (and on the body at start-up).
  document.addEventListener("htmx:load", function (event) { drawAll(event.target); });
})();
