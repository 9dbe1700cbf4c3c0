// The compare-runs page (templates/experiments/run_compare.html): one uPlot chart per
// metric, every run overlaid in its colour (read from the page's .run-colour-N swatches,
// the one place colours live). Data comes from the JSON endpoint in #compare-runs-data
// (series_url), already downsampled by the server; the first draw uses the data sent
// with the page (config.initial), and dragging across a chart asks it for the finer range. Smoothing (EMA, MetaCharts.ema) is applied here, over the points
// served, so the slider redraws without a request. After each draw a chart element
// carries data-state (loading, ready, error), data-runs (runs with points), data-points
// (points drawn) and data-log ("1" on the log scale), which the browser tests read.
(function () {
  "use strict";

  var HEIGHT = 280;
  var MIN_WIDTH = 300;
  var charts = [];
  var drawn = null; // the #compare-runs-data element last set up (a swap brings a new one)
  var drawnParallel = null; // the #compare-parallel-data element last drawn
  var settings = { x: "step", smoothing: 0, log: false };

  function colourOf(index) {
    var swatch = document.querySelector('#compare-legend [data-colour="' + index + '"]');
    return swatch ? getComputedStyle(swatch).backgroundColor : "#2f6fed";
  }

  function CompareChart(el, config) {
    this.el = el;
    this.metric = el.dataset.metric;
    this.hover = document.querySelector('[data-hover-for="' + CSS.escape(this.metric) + '"]');
    this.config = config;
    this.plot = null;
    this.raw = null; // the last answer of the series endpoint
    this.initial = (config.initial || {})[this.metric] || null; // sent with the page
    this.range = null; // [from, to] while zoomed
    this.request = 0;
  }

  CompareChart.prototype.url = function () {
    var params = new URLSearchParams({
      ids: this.config.ids, metric: this.metric, x: settings.x, points: String(this.config.points),
    });
    if (this.range) { params.set("from", String(this.range[0])); params.set("to", String(this.range[1])); }
    return this.config.series_url + "?" + params.toString();
  };

  CompareChart.prototype.load = function () {
    var self = this;
    var ticket = ++this.request;
    var initial = this.initial;
    this.initial = null; // the page's data draws the first load only; later ones ask the server
    if (initial && !this.range && settings.x === "step") {
      this.raw = initial;
      this.draw();
      return;
    }
    this.el.dataset.state = "loading";
    fetch(this.url(), { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (response) {
        return response.json().then(function (body) {
          if (!response.ok) throw new Error(body.error || "The server refused the request (" + response.status + ").");
          return body;
        });
      })
      .then(function (body) {
        if (ticket !== self.request) return; // a newer request superseded this one
        self.raw = body;
        self.draw();
      })
      .catch(function (error) {
        if (ticket !== self.request) return;
        self.el.dataset.state = "error";
        if (self.hover) self.hover.textContent = "Could not load " + self.metric + ": " + error.message;
      });
  };

  // The served series, smoothed, with values <= 0 hidden on the log scale, joined on
  // one x axis (uPlot.join fills the other runs' gaps with nulls).
  CompareChart.prototype.tables = function () {
    var hidden = 0;
    var tables = this.raw.runs.map(function (run) {
      var ys = window.MetaCharts.ema(run.y, settings.smoothing);
      if (settings.log) {
        var safe = window.MetaCharts.logValues(ys);
        hidden += safe.hidden;
        ys = safe.values;
      }
      return { x: run.x, y: ys };
    });
    return { tables: tables, hidden: hidden };
  };

  CompareChart.prototype.options = function () {
    var self = this;
    var runs = this.config.runs;
    return {
      height: HEIGHT,
      // Zoomed: the x axis is the range asked for (the served points reach one past each edge).
      scales: {
        x: {
          time: false,
          range: function (u, min, max) { return self.range ? [self.range[0], self.range[1]] : [min, max]; },
        },
        y: settings.log ? { distr: 3 } : {},
      },
      legend: { show: false },
      cursor: { sync: { key: "compare-runs" }, drag: { x: true, y: false, setScale: false } },
      series: [{ label: settings.x }].concat(runs.map(function (run) {
        // Points show where they are sparse enough (uPlot's default), so a lone point is seen.
        return { label: run.label, stroke: colourOf(run.colour), width: 1.5, spanGaps: true };
      })),
      axes: [{ label: settings.x === "time" ? "seconds since start (estimated)" : "step" }, { size: window.MetaCharts.axisSize }],
      hooks: {
        setSelect: [function (u) { self.zoom(u); }],
        setCursor: [function (u) { self.showHover(u); }],
      },
    };
  };

  CompareChart.prototype.draw = function () {
    var built = this.tables();
    var joined = window.uPlot ? window.uPlot.join(built.tables.map(function (t) { return [t.x, t.y]; })) : null;
    var withPoints = this.raw.runs.filter(function (run) { return run.x.length > 0; }).length;
    var points = this.raw.runs.reduce(function (sum, run) { return sum + run.x.length; }, 0);
    this.smoothed = built.tables;
    if (joined) {
      if (this.plot) this.plot.destroy();
      this.plot = window.MetaCharts.plot(this.el, this.options(), joined, { minWidth: MIN_WIDTH, resize: true });
    }
    this.el.dataset.runs = String(withPoints);
    this.el.dataset.points = String(points);
    this.el.dataset.log = settings.log ? "1" : "0";
    this.el.dataset.state = "ready";
    if (this.hover) {
      this.hover.textContent = window.MetaCharts.logNote(built.hidden);
    }
  };

  CompareChart.prototype.zoom = function (u) {
    if (u.select.width < 3) return;
    var lo = u.posToVal(u.select.left, "x");
    var hi = u.posToVal(u.select.left + u.select.width, "x");
    u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
    this.range = [lo, hi];
    this.load();
  };

  // The value of every run at the hovered x: its last point at or before x.
  CompareChart.prototype.showHover = function (u) {
    if (!this.hover || !this.smoothed || u.cursor.left == null || u.cursor.left < 0) return;
    var x = u.posToVal(u.cursor.left, "x");
    var runs = this.config.runs;
    this.hover.textContent = "";
    var label = document.createElement("span");
    label.textContent = (settings.x === "time" ? "t=" : "step ") + Math.round(x);
    this.hover.appendChild(label);
    this.smoothed.forEach(function (table, i) {
      var at = lastAtOrBefore(table.x, x);
      var item = document.createElement("span");
      var swatch = document.createElement("span");
      swatch.className = "swatch run-colour-" + runs[i].colour;
      item.appendChild(swatch);
      var value = at < 0 ? null : table.y[at];
      item.appendChild(document.createTextNode(runs[i].label + ": " + (value === null ? "—" : formatValue(value))));
      this.hover.appendChild(item);
    }, this);
  };

  function lastAtOrBefore(xs, x) {
    var lo = 0, hi = xs.length - 1, found = -1;
    while (lo <= hi) {
      var mid = (lo + hi) >> 1;
      if (xs[mid] <= x) { found = mid; lo = mid + 1; } else { hi = mid - 1; }
    }
    return found;
  }

  function formatValue(v) {
    return Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(3) : v.toPrecision(5);
  }

  function redrawAll() {
    charts.forEach(function (chart) { if (chart.raw) chart.draw(); });
  }

  function reloadAll() {
    charts.forEach(function (chart) { chart.range = null; chart.load(); });
  }

  function bindControls() {
    document.querySelectorAll('input[name="compare-x"]').forEach(function (input) {
      input.addEventListener("change", function () { settings.x = input.value; reloadAll(); });
    });
    var smoothing = document.getElementById("compare-smoothing");
    var shown = document.getElementById("compare-smoothing-value");
    if (smoothing) smoothing.addEventListener("input", function () {
      settings.smoothing = Number(smoothing.value) || 0;
      if (shown) shown.textContent = smoothing.value;
      redrawAll();
    });
    var log = document.getElementById("compare-log");
    if (log) log.addEventListener("change", function () { settings.log = log.checked; redrawAll(); });
    var reset = document.getElementById("compare-reset-zoom");
    if (reset) reset.addEventListener("click", reloadAll);
  }

  // Parallel coordinates (static/js/parallel_coords.js) of #compare-parallel-data: the
  // varying config keys, then the chosen final metric; lines coloured by that metric
  // (blue low, red high, grey when the run has none).
  // Shows the "which config keys go with the metric" table of the chosen metric. The
  // page fits the random forest of its first metric only; another metric's table, with
  // its forest, is read from data-importance-src the first time it is shown.
  function loadImportance(el) {
    var src = el.dataset.importanceSrc;
    if (!src) return;
    delete el.dataset.importanceSrc;
    el.setAttribute("aria-busy", "true");
    fetch(src, { credentials: "same-origin", headers: { "HX-Request": "true" } })
      .then(function (response) {
        return response.text().then(function (text) {
          if (!response.ok) throw new Error(text || "HTTP " + response.status);
          el.innerHTML = text;
          el.dataset.importanceLoaded = "1";
        });
      })
      .catch(function (error) {
        var message = document.createElement("p");
        message.className = "msg msg-error";
        message.setAttribute("role", "alert");
        message.textContent = "Could not read the random forest for this metric: " + error.message;
        el.appendChild(message);
      })
      .finally(function () { el.removeAttribute("aria-busy"); });
  }

  function showImportance(metric) {
    document.querySelectorAll("[data-importance-metric]").forEach(function (el) {
      el.hidden = el.dataset.importanceMetric !== metric;
      if (!el.hidden) loadImportance(el);
    });
  }

  function setUpParallel() {
    var script = document.getElementById("compare-parallel-data");
    var section = document.getElementById("compare-parallel");
    var container = document.getElementById("parallel-chart");
    if (!script || !section || !container || !window.ParallelCoords) return;
    var data = JSON.parse(script.textContent);
    var select = document.getElementById("parallel-metric");
    function render() {
      var metric = select ? select.value : "";
      showImportance(metric);
      var axes = data.keys.map(function (key) {
        return { name: key, values: data.rows.map(function (row) { return row.config[key]; }) };
      });
      if (metric) axes.push({ name: metric, values: data.rows.map(function (row) { return row.metrics[metric]; }) });
      var values = metric ? axes[axes.length - 1].values : [];
      window.ParallelCoords.draw(container, {
        axes: axes,
        ids: data.rows.map(function (row) { return row.id; }),
        colours: data.rows.map(function (row, i) { return heat(values[i], values); }),
        onFilter: function (kept) { showKept(section, kept, data.rows.length); },
      });
    }
    if (select) select.addEventListener("change", render);
    render();
  }

  function heat(value, values) {
    var present = values.filter(function (v) { return typeof v === "number"; });
    if (typeof value !== "number" || !present.length) return "#999";
    var lo = Math.min.apply(null, present), hi = Math.max.apply(null, present);
    var t = hi > lo ? (value - lo) / (hi - lo) : 0.5;
    return "hsl(" + Math.round(220 - 220 * t) + ", 70%, 45%)";
  }

  function showKept(section, kept, total) {
    var label = document.getElementById("parallel-kept");
    var link = document.getElementById("parallel-compare");
    if (label) label.textContent = kept.length + " of " + total + " runs kept.";
    if (!link) return;
    var ok = kept.length >= Number(section.dataset.minRuns) && kept.length <= Number(section.dataset.maxRuns);
    link.hidden = !ok;
    if (ok) link.href = section.dataset.compareUrl + "?" + new URLSearchParams({ ids: kept.join(",") }).toString();
  }

  function setUp() {
    var parallel = document.getElementById("compare-parallel-data");
    if (parallel !== drawnParallel) { drawnParallel = parallel; setUpParallel(); }
    var script = document.getElementById("compare-runs-data");
    if (script === drawn) return;
    charts.forEach(function (chart) { if (chart.plot) chart.plot.destroy(); });
    charts = [];
    drawn = script;
    if (!script) return;
    var config = JSON.parse(script.textContent);
    settings = { x: "step", smoothing: 0, log: false };
    bindControls();
    document.querySelectorAll(".compare-chart").forEach(function (el) {
      var chart = new CompareChart(el, config);
      charts.push(chart);
      chart.load();
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    setUp();
    document.body.addEventListener("htmx:afterSettle", setUp);
  });
})();
