// Line charts of a run's metrics, drawn with the vendored uPlot (static/vendor/uplot).
// A chart element lists candidate metric names in data-series ("val_accuracy val_loss"):
// it plots the first one that has points. After each draw it sets data-metric (the name
// shown) and data-points (how many points), which the browser tests read; they read the
// points drawn from the element's metaChart (this chart) too.
(function () {
  "use strict";

  var HEIGHT = 260;

  function SeriesChart(el) {
    this.el = el;
    this.candidates = (el.dataset.series || "").split(/\s+/).filter(Boolean);
    this.plot = null;
    this.name = null;
    this.empty = null;
    this.shown = [[], []];  // the steps and values drawn last
    el.metaChart = this;
    var self = this;
    window.addEventListener("resize", function () {
      if (self.plot) self.plot.setSize({ width: self.width(), height: HEIGHT });
    });
  }

  SeriesChart.prototype.width = function () {
    return Math.max(this.el.clientWidth || 0, 200);
  };

  SeriesChart.prototype.pick = function (metrics) {
    for (var i = 0; i < this.candidates.length; i++) {
      var points = metrics[this.candidates[i]];
      if (points && points.length) return this.candidates[i];
    }
    return null;
  };

  SeriesChart.prototype.showEmpty = function () {
    if (this.plot) { this.plot.destroy(); this.plot = null; this.name = null; }
    if (!this.empty) {
      this.empty = document.createElement("p");
      this.empty.className = "muted chart-empty";
      this.empty.textContent = "No points yet.";
      this.el.appendChild(this.empty);
    }
    this.shown = [[], []];
    this.el.dataset.metric = "";
    this.el.dataset.points = "0";
  };

  // metrics: {name: [[step, value], ...]} ordered by step.
  SeriesChart.prototype.draw = function (metrics) {
    var name = this.pick(metrics);
    if (!name) return this.showEmpty();
    if (this.empty) { this.empty.remove(); this.empty = null; }
    var points = metrics[name];
    var data = [new Array(points.length), new Array(points.length)];
    for (var i = 0; i < points.length; i++) {
      data[0][i] = points[i][0];
      data[1][i] = points[i][1];
    }
    this.shown = data;
    if (typeof window.uPlot !== "function") {
      // The chart library failed to load: keep the counts so the page still reports progress.
      this.el.dataset.metric = name;
      this.el.dataset.points = String(points.length);
      return;
    }
    if (this.plot && this.name === name) {
      this.plot.setData(data);
    } else {
      if (this.plot) this.plot.destroy();
      this.name = name;
      this.plot = new window.uPlot(
        {
          width: this.width(),
          height: HEIGHT,
          scales: { x: { time: false } },
          legend: { live: true },
          series: [
            { label: "step" },
            { label: name, stroke: "#2f6fed", width: 1.5, spanGaps: true },
          ],
          axes: [{ label: "step" }, { size: 60 }],
        },
        data,
        this.el
      );
    }
    this.el.dataset.metric = name;
    this.el.dataset.points = String(points.length);
  };

  // Merge new points into a {name: [[step, value], ...]} store, keeping each series
  // ordered by step; a step seen before (a replay after resuming) replaces the old value.
  function mergePoints(store, points) {
    Object.keys(points || {}).forEach(function (name) {
      var incoming = points[name];
      if (!Array.isArray(incoming) || !incoming.length) return;
      var series = store[name] || (store[name] = []);
      var last = series.length ? series[series.length - 1][0] : -Infinity;
      var inOrder = incoming.every(function (p, i) {
        return p[0] > (i ? incoming[i - 1][0] : last);
      });
      if (inOrder) {
        incoming.forEach(function (p) { series.push([p[0], p[1]]); });
        return;
      }
      var byStep = new Map(series.map(function (p) { return [p[0], p[1]]; }));
      incoming.forEach(function (p) { byStep.set(p[0], p[1]); });
      store[name] = Array.from(byStep.entries()).sort(function (a, b) { return a[0] - b[0]; });
    });
    return store;
  }

  // Exponential moving average with TensorBoard's debiasing (the first value is not
  // pulled towards zero): weight 0 returns the values, 0.99 smooths hard. Nulls are
  // kept as gaps and do not move the average.
  function ema(values, weight) {
    if (!(weight > 0)) return values.slice();
    var out = new Array(values.length);
    var last = 0;
    var n = 0;
    for (var i = 0; i < values.length; i++) {
      var v = values[i];
      if (v === null || v === undefined || !isFinite(v)) { out[i] = null; continue; }
      n += 1;
      last = last * weight + (1 - weight) * v;
      out[i] = last / (1 - Math.pow(weight, n));
    }
    return out;
  }

  window.MetaCharts = { SeriesChart: SeriesChart, mergePoints: mergePoints, ema: ema };
})();
