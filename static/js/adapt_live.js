// The adaptation pages: the form's small helpers, and the adapted model's review page.
//
// Review page (#adapted-page): while the run is queued or running, /ws/runs/<id>/ sends
// run.state on (re)connect (the database's metrics replace what the page holds), then
// run.progress events whose points (support_loss, query_loss, query_accuracy... at each
// inner step) are appended to the curve, and run.status events. When the status changes,
// the result partial (#adapted-live) is re-read with htmx; on "succeeded" it brings the
// figures. The database is the source of truth; the socket only notifies.
//
// Curve charts ([data-curve="name name"]) set data-points (steps drawn) and data-last-step
// (the last inner step shown) after each draw; browser tests and benchmarks read them.
// Result charts ([data-adapt-chart=ID]) read their data from <script id=ID> (json_script):
//   data-chart="xy":        {"x": [...sorted], "series": [{"label", "kind": "line"|"points", "values"}]}
//   data-chart="curve":     {"series": {name: [[step, value], ...]}}
//   data-chart="histogram": {"x": [bin edges], "counts": [per bin, last repeated], "metric"}
(function () {
  "use strict";

  var C = window.MetaCharts.COLOURS;
  var COLORS = {
    support_loss: C.blue, query_loss: C.amber, support_accuracy: C.blue, query_accuracy: C.amber,
    "true function": C.grey, "before adaptation": C.red, "after adaptation": C.green,
    support: C.blue, query: C.amber, ideal: C.grey,
  };
  var HEIGHT = 260;
  var MIN_WIDTH = 220;

  function lineSeries(label, dots) {
    return { label: label, stroke: COLORS[label] || C.ink, width: 1.75, spanGaps: true, points: { show: !!dots, size: 5 } };
  }

  function pointSeries(label) {
    var color = COLORS[label] || C.ink;
    return window.MetaCharts.pointSeries(label, {
      stroke: color, fill: label === "query" ? "#fff" : color, size: label === "support" ? 9 : 6,
    });
  }

  // {name: [[step, value], ...]} -> uPlot aligned data over the union of steps.
  function alignSeries(store, names) {
    var steps = new Map();
    names.forEach(function (name, column) {
      (store[name] || []).forEach(function (p) {
        var row = steps.get(p[0]);
        if (!row) { row = new Array(names.length).fill(null); steps.set(p[0], row); }
        row[column] = p[1];
      });
    });
    var xs = Array.from(steps.keys()).sort(function (a, b) { return a - b; });
    var data = [xs];
    names.forEach(function (_, column) {
      data.push(xs.map(function (x) { return steps.get(x)[column]; }));
    });
    return data;
  }

  // A multi-series line chart of named metrics over steps, redrawn in place.
  function CurveChart(el, names, xLabel) {
    this.el = el;
    this.names = names;
    this.xLabel = xLabel || "inner step";
    this.plot = null;
    this.shown = "";
  }

  CurveChart.prototype.draw = function (store) {
    var present = this.names.filter(function (name) { return store[name] && store[name].length; });
    var data = alignSeries(store, present);
    var xs = data[0];
    this.el.dataset.points = String(xs.length);
    this.el.dataset.lastStep = xs.length ? String(xs[xs.length - 1]) : "";
    this.el.dataset.series = present.join(" ");
    window.MetaCharts.emptyNote(this.el, !present.length);
    if (!present.length) {
      if (this.plot) { this.plot.destroy(); this.plot = null; this.shown = ""; }
      return;
    }
    if (typeof window.uPlot !== "function") return;
    var key = present.join(" ");
    if (this.plot && this.shown === key) {
      this.plot.setData(data);
      return;
    }
    if (this.plot) this.plot.destroy();
    this.shown = key;
    this.plot = window.MetaCharts.plot(this.el, {
      height: HEIGHT,
      series: [{ label: this.xLabel }].concat(present.map(function (name) { return lineSeries(name, true); })),
      // Whole steps only on the x axis.
      axes: [{ label: this.xLabel, incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000] }, { size: window.MetaCharts.axisSize }],
    }, data, { minWidth: MIN_WIDTH, resize: true });
  };

  // -- result charts (server data through json_script) ---------------------------------

  function drawXY(el, data) {
    var series = [{ label: data.xlabel || "x" }].concat(
      data.series.map(function (s) { return s.kind === "points" ? pointSeries(s.label) : lineSeries(s.label, false); })
    );
    var columns = [data.x].concat(data.series.map(function (s) { return s.values; }));
    return window.MetaCharts.plot(el, {
      height: 320,
      series: series,
      axes: [{ label: data.xlabel || "x" }, { label: data.ylabel || "y", size: window.MetaCharts.axisSize }],
    }, columns, { minWidth: MIN_WIDTH });
  }

  function drawHistogram(el, data) {
    return window.MetaCharts.histogram(el, {
      edges: data.x,
      counts: [data.counts],
      series: [{ label: "tasks", stroke: C.blue, fill: "rgba(47, 111, 237, 0.25)", width: 1.5 }],
      metric: data.metric || "score",
      height: HEIGHT,
      minWidth: MIN_WIDTH,
    });
  }

  function drawResultChart(el) {
    if (el.dataset.rendered === "1") return;
    var source = document.getElementById(el.dataset.adaptChart);
    if (!source) return;
    var data = JSON.parse(source.textContent);
    if (!data) return;
    var kind = el.dataset.chart;
    if (kind === "curve") {
      var names = Object.keys(data.series || {}).filter(function (n) { return !/_ci95$/.test(n); });
      var chart = new CurveChart(el, names);
      chart.draw(data.series || {});
    } else if (typeof window.uPlot === "function") {
      if (kind === "xy") drawXY(el, data);
      else if (kind === "histogram") drawHistogram(el, data);
    }
    el.dataset.rendered = "1";
  }

  function drawResultCharts(root) {
    var scope = root && root.querySelectorAll ? root : document;
    if (scope.matches && scope.matches("[data-adapt-chart]")) drawResultChart(scope);
    scope.querySelectorAll("[data-adapt-chart]").forEach(drawResultChart);
  }

  // -- the review page ------------------------------------------------------------------

  function showProgress(step, total) {
    if (typeof step !== "number") return;
    var stepEl = document.getElementById("adapt-step");
    if (stepEl) stepEl.textContent = String(step);
    if (typeof total === "number") {
      var totalEl = document.getElementById("adapt-total");
      if (totalEl) totalEl.textContent = String(total);
    }
    window.MetaLive.setProgress("adapt-progress", step, total);
  }

  function reviewPage(root) {
    var charts = Array.prototype.map.call(root.querySelectorAll("[data-curve]"), function (el) {
      return new CurveChart(el, el.dataset.curve.split(/\s+/).filter(Boolean));
    });
    window.MetaLive.followRun(root, {
      panelId: "adapted-live",
      badgeId: "adapt-status",
      draw: function (metrics) { charts.forEach(function (chart) { chart.draw(metrics); }); },
      progress: showProgress,
    });
  }

  // -- the form -------------------------------------------------------------------------

  function adaptForm(form) {
    if (form.dataset.wired === "1") return;
    form.dataset.wired = "1";
    function showTarget() {
      var checked = form.querySelector('input[name="target"]:checked');
      var target = checked ? checked.value : "";
      form.querySelectorAll("[data-target-section]").forEach(function (section) {
        section.hidden = section.dataset.targetSection.split(" ").indexOf(target) < 0;
      });
    }
    form.addEventListener("change", function (event) {
      if (event.target && event.target.name === "target") showTarget();
    });
    var random = form.querySelector("[data-random-task]");
    if (random) {
      random.addEventListener("click", function () {
        var count = parseInt(random.dataset.randomTask, 10) || 600;
        var input = form.querySelector('input[name="task_index"]');
        if (input) input.value = String(Math.floor(Math.random() * count));
        var testTask = form.querySelector('input[name="target"][value="test_task"]');
        if (testTask) { testTask.checked = true; showTarget(); }
      });
    }
    showTarget();
    // Meta-SGD and ANIL: warn once the steps typed pass the number meta-trained with.
    var warning = form.querySelector("#steps-warning");
    var steps = form.querySelector('input[name="steps"]');
    if (warning && steps) {
      var trained = parseInt(warning.dataset.trainedSteps, 10);
      var checkSteps = function () {
        var asked = parseInt(steps.value, 10);
        warning.hidden = !(asked > trained);
      };
      steps.addEventListener("input", checkSteps);
      checkSteps();
    }
  }

  function wireForms(root) {
    var scope = root && root.querySelectorAll ? root : document;
    if (scope.matches && scope.matches("[data-adapt-form]")) adaptForm(scope);
    scope.querySelectorAll("[data-adapt-form]").forEach(adaptForm);
  }

  function init() {
    var page = document.getElementById("adapted-page");
    if (page) reviewPage(page);
    drawResultCharts(document);
    wireForms(document);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
  // htmx 2 fires htmx:load on every element it swaps in: draw and wire the new content.
  document.addEventListener("htmx:load", function (event) {
    drawResultCharts(event.target);
    wireForms(event.target);
  });
})();
