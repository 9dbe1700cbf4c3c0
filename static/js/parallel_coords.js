// A small parallel-coordinates chart in SVG, written for the compare-runs page rather
// than vendored: the maintained libraries (parcoords-es, HiPlot) bring d3 or React for
// what is one axis per field, a polyline per run and a brush per axis.
//
// ParallelCoords.draw(container, {axes: [{name, values}], ids, colours, onFilter}) draws
// one vertical axis per entry (numeric when every value present is a number, on a log
// scale when they are all positive and span LOG_SPAN or more, as a swept learning rate
// does; else one tick per distinct value; a missing value sits below the axis) and one
// line per run.
// Dragging along an axis keeps the runs whose value lies in the dragged band; a click
// on the axis clears its band. onFilter(keptIds) is called after each change. The
// container carries data-lines, data-axes and data-kept for the browser tests.
(function () {
  "use strict";

  var SVG = "http://www.w3.org/2000/svg";
  var HEIGHT = 320, TOP = 34, BOTTOM = 40, SPACING = 130, SIDE = 60;
  // Positive values whose largest is this many times their smallest get a log axis.
  var LOG_SPAN = 100;

  function el(name, attrs, parent) {
    var node = document.createElementNS(SVG, name);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (parent) parent.appendChild(node);
    return node;
  }

  function isMissing(v) { return v === null || v === undefined; }

  // A scale from a value to a y in [TOP, HEIGHT - BOTTOM]; missing values go below.
  function scaleFor(values) {
    var present = values.filter(function (v) { return !isMissing(v); });
    var numeric = present.length > 0 && present.every(function (v) { return typeof v === "number"; });
    var bottom = HEIGHT - BOTTOM, missingY = bottom + 18;
    if (numeric) {
      var lo = Math.min.apply(null, present), hi = Math.max.apply(null, present);
      if (lo > 0 && hi / lo >= LOG_SPAN) return logScale(lo, hi, bottom, missingY);
      if (lo === hi) { lo -= 1; hi += 1; }
      return {
        kind: "linear",
        y: function (v) { return isMissing(v) ? missingY : bottom - (v - lo) / (hi - lo) * (bottom - TOP); },
        ticks: [[lo, bottom], [hi, TOP]].map(function (t) { return { label: fmt(t[0]), y: t[1] }; }),
      };
    }
    var labels = Array.from(new Set(present.map(text))).sort();
    var step = labels.length > 1 ? (bottom - TOP) / (labels.length - 1) : 0;
    return {
      y: function (v) {
        if (isMissing(v)) return missingY;
        return labels.length > 1 ? bottom - labels.indexOf(text(v)) * step : (bottom + TOP) / 2;
      },
      ticks: labels.map(function (l, i) { return { label: l, y: labels.length > 1 ? bottom - i * step : (bottom + TOP) / 2 }; }),
    };
  }

  // Ticks at both ends and at each power of ten between them.
  function logScale(lo, hi, bottom, missingY) {
    var a = Math.log10(lo), span = Math.log10(hi) - a;
    function y(v) { return bottom - (Math.log10(v) - a) / span * (bottom - TOP); }
    var values = [lo];
    for (var p = Math.ceil(a); p < Math.log10(hi); p++) {
      var decade = Math.pow(10, p);
      if (decade > lo) values.push(decade);
    }
    values.push(hi);
    return {
      kind: "log",
      y: function (v) { return isMissing(v) || !(v > 0) ? missingY : y(v); },
      ticks: values.map(function (v) { return { label: fmt(v), y: y(v) }; }),
    };
  }

  function text(v) { return typeof v === "string" ? v : JSON.stringify(v); }
  function fmt(v) { return Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(2) : String(+v.toPrecision(4)); }

  function drawAxis(svg, axis, x, scale, onBrush) {
    var g = el("g", { class: "pc-axis", "data-axis": axis.name, "data-scale": scale.kind || "labels" }, svg);
    el("line", { x1: x, x2: x, y1: TOP, y2: HEIGHT - BOTTOM }, g);
    var title = axis.name + (scale.kind === "log" ? " (log)" : "");
    el("text", { x: x, y: TOP - 14, "text-anchor": "middle", class: "pc-title" }, g).textContent = title;
    scale.ticks.slice(0, 12).forEach(function (t) {
      el("text", { x: x + 5, y: t.y + 4 }, g).textContent = t.label.length > 16 ? t.label.slice(0, 15) + "…" : t.label;
    });
    var brush = el("rect", { x: x - 9, width: 18, y: 0, height: 0, class: "pc-brush", visibility: "hidden" }, g);
    var hit = el("rect", { x: x - 12, width: 24, y: TOP - 6, height: HEIGHT - BOTTOM - TOP + 30, class: "pc-hit" }, g);
    var start = null;
    function yOf(event) { return event.clientY - svg.getBoundingClientRect().top; }
    hit.addEventListener("pointerdown", function (event) {
      start = yOf(event);
      hit.setPointerCapture(event.pointerId);
    });
    hit.addEventListener("pointermove", function (event) {
      if (start === null) return;
      var y = yOf(event);
      brush.setAttribute("y", Math.min(start, y));
      brush.setAttribute("height", Math.abs(y - start));
      brush.setAttribute("visibility", "visible");
    });
    hit.addEventListener("pointerup", function (event) {
      if (start === null) return;
      var y = yOf(event), band = Math.abs(y - start) < 3 ? null : [Math.min(start, y), Math.max(start, y)];
      start = null;
      if (!band) brush.setAttribute("visibility", "hidden");
      onBrush(band);
    });
  }

  function draw(container, options) {
    container.textContent = "";
    var axes = options.axes, ids = options.ids;
    var width = Math.max(container.clientWidth || 0, SIDE * 2 + SPACING * Math.max(axes.length - 1, 1));
    var gap = axes.length > 1 ? (width - 2 * SIDE) / (axes.length - 1) : 0;
    var svg = el("svg", { width: width, height: HEIGHT, role: "img", "aria-label": "Parallel coordinates" }, container);
    var scales = axes.map(function (axis) { return scaleFor(axis.values); });
    var bands = axes.map(function () { return null; });
    var lines = ids.map(function (id, row) {
      var d = axes.map(function (axis, i) {
        return (i ? "L" : "M") + (SIDE + i * gap).toFixed(1) + "," + scales[i].y(axis.values[row]).toFixed(1);
      }).join("");
      var path = el("path", { d: d, class: "pc-line", stroke: options.colours[row], "data-run-id": id }, svg);
      el("title", {}, path).textContent = "#" + id;
      return path;
    });
    function apply() {
      var kept = [];
      ids.forEach(function (id, row) {
        var inside = bands.every(function (band, i) {
          if (!band) return true;
          var y = scales[i].y(axes[i].values[row]);
          return y >= band[0] && y <= band[1];
        });
        lines[row].classList.toggle("pc-out", !inside);
        if (inside) kept.push(id);
      });
      container.dataset.kept = String(kept.length);
      if (options.onFilter) options.onFilter(kept);
    }
    axes.forEach(function (axis, i) {
      drawAxis(svg, axis, SIDE + i * gap, scales[i], function (band) { bands[i] = band; apply(); });
    });
    container.dataset.lines = String(ids.length);
    container.dataset.axes = String(axes.length);
    apply();
  }

  window.ParallelCoords = { draw: draw };
})();
