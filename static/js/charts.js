// The one layer over the vendored uPlot (static/vendor/uplot) that every chart page uses:
// colours, sizing (width from the element, one window resize handler), point series, the
// "No points yet." note and the adaptation histogram (window.MetaCharts). Below them,
// line charts of a run's metrics (SeriesChart), which on the run page fetch a zoom's
// finer points from the metrics API (the page's are downsampled).
// A chart element lists candidate metric names in data-series ("val_accuracy val_loss"):
// it plots the first one that has points. After each draw it sets data-metric (the name
// shown) and data-points (how many points), which the browser tests read; they read the
// points drawn from the element's metaChart (this chart) too. A "log scale" checkbox
// above each such chart switches its y axis (data-scale: "linear" or "log").
(function () {
  "use strict";

  // Colours of the .swatch-N classes in app.css, in that order, then the neutral ones.
  var COLOURS = {
    blue: "#2f6fed", red: "#d64545", green: "#1f9d55", amber: "#c98a04", violet: "#7c3aed", teal: "#0e9aa7",
    grey: "#6b7385", ink: "#1d2430",
  };
  var PALETTE = [COLOURS.blue, COLOURS.red, COLOURS.green, COLOURS.amber, COLOURS.violet, COLOURS.teal];
  var sized = []; // {plot, el, min, height}: charts that follow the window's width

  function width(el, min) {
    return Math.max(el.clientWidth || 0, min);
  }

  // A uPlot chart drawn into el, or null when the library did not load. The x scale is
  // numeric (not time) and the width follows el (at least sizing.minWidth, default 200)
  // unless options say otherwise; with sizing.resize it follows the window too.
  function plot(el, options, data, sizing) {
    if (typeof window.uPlot !== "function") return null;
    var min = (sizing && sizing.minWidth) || 200;
    var chart = new window.uPlot(Object.assign({ width: width(el, min), scales: { x: { time: false } } }, options), data, el);
    if (sizing && sizing.resize) sized.push({ plot: chart, el: el, min: min, height: options.height });
    return chart;
  }

  window.addEventListener("resize", function () {
    // A destroyed or swapped-out chart has left the document: forget it.
    sized = sized.filter(function (s) { return s.plot.root.isConnected; });
    sized.forEach(function (s) { s.plot.setSize({ width: width(s.el, s.min), height: s.height }); });
  });

  // A y axis's width from its widest tick label (uPlot's axis.size as a function), so
  // that large values ("1,000,000") are not cut off at the chart's left edge.
  function axisSize(u, values, axisIdx, cycleNum) {
    var axis = u.axes[axisIdx];
    if (cycleNum > 1) return axis._size; // uPlot settles sizes in a few cycles
    var longest = (values || []).reduce(function (a, v) { return String(v).length > a.length ? String(v) : a; }, "");
    var size = axis.ticks.size + axis.gap;
    if (longest) {
      u.ctx.font = axis.font[0];
      size += u.ctx.measureText(longest).width / window.devicePixelRatio;
    }
    return Math.max(Math.ceil(size), 40);
  }

  // A log y axis shows values above zero only: the others become gaps, counted in hidden.
  function logValues(values) {
    var hidden = 0;
    var out = values.map(function (v) { if (v !== null && v <= 0) { hidden++; return null; } return v; });
    return { values: out, hidden: hidden };
  }

  function logNote(hidden) {
    if (!hidden) return "";
    return hidden === 1 ? "1 value at or below 0 is hidden on the log scale."
      : hidden + " values at or below 0 are hidden on the log scale.";
  }

  // Markers without a connecting line; style: {stroke, fill, size}.
  function pointSeries(label, style) {
    return {
      label: label,
      stroke: style.stroke,
      paths: function () { return null; },
      points: { show: true, size: style.size, stroke: style.stroke, fill: style.fill, width: 1.5 },
    };
  }

  // Show or take away the "No points yet." note of a chart element.
  function emptyNote(el, show) {
    var note = el.querySelector(".chart-empty");
    if (show && !note) {
      note = document.createElement("p");
      note.className = "muted chart-empty";
      note.textContent = "No points yet.";
      el.appendChild(note);
    } else if (!show && note) {
      note.remove();
    }
  }

  // Post-adaptation scores over shared bins, as stepped lines: each count holds from its
  // left edge to the next. h: {edges, counts: [per series: per bin, last one repeated],
  // series: [uPlot series options], metric, height}.
  function histogram(el, h) {
    if (typeof window.uPlot !== "function") return null;
    var stepped = window.uPlot.paths && window.uPlot.paths.stepped ? window.uPlot.paths.stepped({ align: 1 }) : undefined;
    var series = h.series.map(function (s) { return Object.assign({}, s, { paths: stepped, points: { show: false } }); });
    return plot(el, {
      height: h.height,
      series: [{ label: h.metric }].concat(series),
      axes: [{ label: "post-adaptation " + h.metric }, { label: "tasks", size: 50 }],
    }, [h.edges].concat(h.counts), { minWidth: h.minWidth, resize: true });
  }

  var HEIGHT = 260;

  function SeriesChart(el) {
    this.el = el;
    this.candidates = (el.dataset.series || "").split(/\s+/).filter(Boolean);
    this.plot = null;
    this.name = null;
    this.shown = [[], []];  // the steps and values drawn last
    this.metrics = null; // the last metrics drawn, to go back to after a zoom
    this.zoomed = null; // [lo, hi] while showing a zoom's finer points
    this.request = 0;
    this.log = false; // a log-scaled y axis (values at or below 0 become gaps)
    this.logBox = this.scaleToggle();
    el.metaChart = this;
    var self = this;
    // The page's points are downsampled (at most 2,000 a metric): a double click
    // leaves a zoom and redraws them, live points included.
    el.addEventListener("dblclick", function () {
      if (!self.zoomed) return;
      self.zoomed = null;
      self.request++;
      if (self.metrics) self.draw(self.metrics);
    });
  }

  // The "log scale" checkbox above the chart, with the note of the values it hides
  // (data-scale on the element says which scale is drawn).
  SeriesChart.prototype.scaleToggle = function () {
    var self = this;
    var bar = document.createElement("div");
    bar.className = "chart-scale muted";
    var label = document.createElement("label");
    var box = document.createElement("input");
    box.type = "checkbox";
    box.setAttribute("data-testid", (this.el.dataset.testid || this.el.id) + "-log");
    label.append(box, " log scale");
    this.logHidden = document.createElement("span");
    bar.append(this.logHidden, " ", label);
    if (this.el.parentNode) this.el.parentNode.insertBefore(bar, this.el);
    this.el.dataset.scale = "linear";
    box.addEventListener("change", function () { self.setLog(box.checked); });
    return box;
  };

  SeriesChart.prototype.setLog = function (on) {
    this.log = on;
    this.logBox.checked = on;
    this.el.dataset.scale = on ? "log" : "linear";
    if (this.plot) this.build(this.name, this.shown);
  };

  // What uPlot gets for data: on the log scale, values at or below 0 become gaps.
  SeriesChart.prototype.plotted = function (data) {
    var safe = this.log ? logValues(data[1]) : { values: data[1], hidden: 0 };
    this.logHidden.textContent = logNote(safe.hidden);
    return [data[0], safe.values];
  };

  // A drag across the chart (uPlot zooms to it): when the element names a metrics
  // endpoint (data-zoom-url, the run page), ask it for that range's finer points.
  SeriesChart.prototype.zoom = function (u) {
    if (!this.el.dataset.zoomUrl || !this.name || u.select.width < 3) return;
    var lo = Math.max(0, Math.floor(u.posToVal(u.select.left, "x")));
    var hi = Math.ceil(u.posToVal(u.select.left + u.select.width, "x"));
    u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
    this.zoomTo(lo, hi);
  };

  // Show steps lo..hi with their every stored point (a drag, or a link to a step).
  SeriesChart.prototype.zoomTo = function (lo, hi) {
    var url = this.el.dataset.zoomUrl;
    if (!url || !this.name || !(hi > lo)) return;
    var self = this;
    var ticket = ++this.request;
    var params = new URLSearchParams({
      name: this.name, lo: String(lo), hi: String(hi), points: "2000", edges: "true",
    });
    this.el.dataset.zoom = "loading";
    fetch(url + "?" + params.toString(), { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) throw new Error("status " + response.status);
        return response.json();
      })
      .then(function (body) {
        if (ticket !== self.request || !self.plot) return;
        self.zoomed = [lo, hi];
        self.shown = [body.x, body.y];
        self.plot.setData(self.plotted(self.shown));
        // The answer reaches one point past each edge (lines cross them); the view is the range.
        self.plot.setScale("x", { min: lo, max: hi });
        self.el.dataset.points = String(body.x.length);
        self.el.dataset.zoom = lo + "-" + hi;
      })
      .catch(function () {
        if (ticket === self.request) self.el.dataset.zoom = "error";
      });
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
    this.logHidden.textContent = ""; // no values drawn, none hidden
    emptyNote(this.el, true);
    this.shown = [[], []];
    this.el.dataset.metric = "";
    this.el.dataset.points = "0";
  };

  // metrics: {name: [[step, value], ...]} ordered by step. While zoomed, live points
  // are kept for later and the zoom's points stay on screen.
  SeriesChart.prototype.draw = function (metrics) {
    this.metrics = metrics;
    if (this.zoomed && this.plot) return;
    var name = this.pick(metrics);
    if (!name) return this.showEmpty();
    emptyNote(this.el, false);
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
      this.plot.setData(this.plotted(data));
    } else {
      this.build(name, data);
    }
    this.el.dataset.metric = name;
    this.el.dataset.points = String(points.length);
  };

  // (Re)draw the chart of metric name from data, on the y scale chosen.
  SeriesChart.prototype.build = function (name, data) {
    var self = this;
    if (this.plot) this.plot.destroy();
    this.name = name;
    this.plot = plot(this.el, {
      height: HEIGHT,
      legend: { live: true },
      scales: { x: { time: false }, y: this.log ? { distr: 3 } : {} },
      series: [
        { label: "step" },
        { label: name, stroke: COLOURS.blue, width: 1.5, spanGaps: true },
      ],
      axes: [{ label: "step" }, { size: axisSize }],
      // With a zoom endpoint, a drag selects and zoom() loads the finer points.
      cursor: this.el.dataset.zoomUrl ? { drag: { x: true, y: false, setScale: false } } : {},
      hooks: { setSelect: [function (u) { self.zoom(u); }] },
    }, this.plotted(data), { resize: true });
    if (this.zoomed) this.plot.setScale("x", { min: this.zoomed[0], max: this.zoomed[1] });
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

  window.MetaCharts = {
    COLOURS: COLOURS, PALETTE: PALETTE, width: width, plot: plot, pointSeries: pointSeries, emptyNote: emptyNote,
    histogram: histogram, SeriesChart: SeriesChart, mergePoints: mergePoints, ema: ema, axisSize: axisSize,
    logValues: logValues, logNote: logNote,
  };
})();
