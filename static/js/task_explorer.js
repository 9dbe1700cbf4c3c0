// The task-space explorer of an MNN conditioned on the task description (the meta-model
// page, #task-explorer). The hypernetwork's weights are fetched once from
// data-model-url (registry:metamodel-explorer: base64 float32 arrays, the target MLP's
// layer shapes, the description's ranges and the input range); every slider move
// evaluates description -> hypernetwork -> the target MLP's weights -> predictions
// over the input range here, with no request, and redraws the curve.
//
// window.MetaExplorer.load(model) and .predict(loaded, desc, xs) are the evaluation,
// tested against workers/metalearn/explorer.py's explorer_predict (itself tested
// against the engine's torch forward pass) to 1e-5. The page sets data-last-ms (the
// last redraw's duration) and data-draws on #task-explorer.
(function () {
  "use strict";

  function decode(entry) {
    var raw = atob(entry.data);
    var bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
    var values = new Float32Array(bytes.buffer);  // little-endian, as every browser is
    return { shape: entry.shape, values: values };
  }

  // Decode the hypernetwork once: [{weight: {shape, values}, bias: {...}}, ...].
  function load(model) {
    return {
      hyper: model.hyper.map(function (layer) {
        return { weight: decode(layer.weight), bias: decode(layer.bias) };
      }),
      target: model.target,
      desc: model.desc,
      x: model.x,
    };
  }

  // out[r] = sum_c W[r, c] * v[c] + b[r], in float64 (W row-major [rows, cols]).
  function affine(weight, bias, v, relu) {
    var rows = weight.shape[0], cols = weight.shape[1], w = weight.values, out = new Float64Array(rows);
    for (var r = 0; r < rows; r++) {
      var sum = bias.values[r], base = r * cols;
      for (var c = 0; c < cols; c++) sum += w[base + c] * v[c];
      out[r] = relu && sum < 0 ? 0 : sum;
    }
    return out;
  }

  function predict(loaded, desc, xs) {
    var h = Float64Array.from(desc);
    var n = loaded.hyper.length;
    for (var i = 0; i < n; i++) h = affine(loaded.hyper[i].weight, loaded.hyper[i].bias, h, i < n - 1);
    // Cut the generated flat vector into the target MLP's layers (weight [rows, cols], then bias).
    var layers = [], offset = 0;
    loaded.target.forEach(function (layer) {
      var rows = layer.weight[0], cols = layer.weight[1];
      var weight = { shape: [rows, cols], values: h.subarray(offset, offset + rows * cols) };
      offset += rows * cols;
      var bias = { values: h.subarray(offset, offset + rows) };
      offset += rows;
      layers.push({ weight: weight, bias: bias });
    });
    var out = new Float64Array(xs.length);
    for (var k = 0; k < xs.length; k++) {
      var a = Float64Array.of(xs[k]);
      for (var j = 0; j < layers.length; j++) a = affine(layers[j].weight, layers[j].bias, a, j < layers.length - 1);
      out[k] = a[0];
    }
    return out;
  }

  function grid(x) {
    var xs = new Float64Array(x.points);
    for (var i = 0; i < x.points; i++) xs[i] = x.min + (x.max - x.min) * i / (x.points - 1);
    return xs;
  }

  var SVG = "http://www.w3.org/2000/svg";
  var W = 600, H = 260, PAD = 30;

  function draw(svg, xs, ys, x) {
    var lo = Math.min.apply(null, ys), hi = Math.max.apply(null, ys);
    var span = Math.max(hi - lo, 1e-6), top = hi + 0.1 * span, bottom = lo - 0.1 * span;
    function px(v) { return PAD + (W - 2 * PAD) * (v - x.min) / (x.max - x.min); }
    function py(v) { return H - PAD - (H - 2 * PAD) * (v - bottom) / (top - bottom); }
    var d = "";
    for (var i = 0; i < xs.length; i++) d += (i ? "L" : "M") + px(xs[i]).toFixed(1) + " " + py(ys[i]).toFixed(1);
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    var axis = document.createElementNS(SVG, "path");
    axis.setAttribute("class", "axis");
    axis.setAttribute("d", "M" + PAD + " " + (H - PAD) + "H" + (W - PAD) + "M" + PAD + " " + PAD + "V" + (H - PAD));
    svg.appendChild(axis);
    var curve = document.createElementNS(SVG, "path");
    curve.setAttribute("class", "curve");
    curve.setAttribute("d", d);
    svg.appendChild(curve);
    [[PAD, H - PAD + 14, x.min.toFixed(1)], [W - PAD - 16, H - PAD + 14, x.max.toFixed(1)],
     [2, PAD + 4, top.toFixed(2)], [2, H - PAD, bottom.toFixed(2)]].forEach(function (t) {
      var text = document.createElementNS(SVG, "text");
      text.setAttribute("x", t[0]);
      text.setAttribute("y", t[1]);
      text.textContent = t[2];
      svg.appendChild(text);
    });
  }

  function wire(root) {
    if (root.dataset.wired === "1") return;
    root.dataset.wired = "1";
    var status = root.querySelector("[data-explorer-status]");
    fetch(root.dataset.modelUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        return response.json().then(function (body) {
          if (!response.ok) throw new Error(body.error || "The explorer could not load this model.");
          return body;
        });
      })
      .then(function (model) {
        var loaded = load(model), xs = grid(model.x);
        var sliders = root.querySelector("[data-explorer-sliders]"), svg = root.querySelector("[data-explorer-plot]");
        var inputs = model.desc.map(function (entry) {
          var label = document.createElement("label");
          var input = document.createElement("input");
          input.type = "range";
          input.name = entry.name;
          input.min = String(entry.min);
          input.max = String(entry.max);
          input.step = String((entry.max - entry.min) / 200 || 0.01);
          input.value = String((entry.min + entry.max) / 2);
          var shown = document.createElement("span");
          label.appendChild(shown);
          label.appendChild(input);
          sliders.appendChild(label);
          return { input: input, shown: shown, name: entry.name };
        });
        var draws = 0;
        function redraw() {
          var started = performance.now();
          var desc = inputs.map(function (s) {
            s.shown.textContent = s.name + " = " + Number(s.input.value).toFixed(3);
            return Number(s.input.value);
          });
          draw(svg, xs, predict(loaded, desc, xs), model.x);
          draws += 1;
          root.dataset.lastMs = (performance.now() - started).toFixed(2);
          root.dataset.draws = String(draws);
        }
        inputs.forEach(function (s) { s.input.addEventListener("input", redraw); });
        redraw();
        status.textContent = "";
        status.hidden = true;
      })
      .catch(function (error) { status.textContent = error.message; });
  }

  window.MetaExplorer = { load: load, predict: predict };

  function init() {
    var root = document.getElementById("task-explorer");
    if (root) wire(root);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
