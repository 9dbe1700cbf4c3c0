// The task embedding map on a meta-model's page (#task-map): the stored map
// (json_script #task-map-data: points [[x, y]...], params {name: [values]}) drawn as
// an SVG scatter, coloured by the parameter chosen in the select (blue = low,
// orange = high), or in one colour when the family has none.
(function () {
  "use strict";

  var SVG = "http://www.w3.org/2000/svg";
  var W = 600, H = 400, PAD = 20;
  var LOW = [47, 111, 237], HIGH = [232, 121, 20];

  function colour(t) {
    var c = LOW.map(function (lo, i) { return Math.round(lo + (HIGH[i] - lo) * t); });
    return "rgb(" + c.join(",") + ")";
  }

  function extent(values) {
    var lo = Infinity, hi = -Infinity;
    values.forEach(function (v) { if (v < lo) lo = v; if (v > hi) hi = v; });
    return [lo, hi > lo ? hi : lo + 1];
  }

  function draw(root, data, name) {
    var svg = root.querySelector("[data-task-map-plot]");
    var xs = extent(data.points.map(function (p) { return p[0]; }));
    var ys = extent(data.points.map(function (p) { return p[1]; }));
    var values = name ? data.params[name] : null, range = values ? extent(values) : null;
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    data.points.forEach(function (p, i) {
      var dot = document.createElementNS(SVG, "circle");
      dot.setAttribute("cx", (PAD + (W - 2 * PAD) * (p[0] - xs[0]) / (xs[1] - xs[0])).toFixed(1));
      dot.setAttribute("cy", (H - PAD - (H - 2 * PAD) * (p[1] - ys[0]) / (ys[1] - ys[0])).toFixed(1));
      dot.setAttribute("r", "3");
      dot.setAttribute("fill", values ? colour((values[i] - range[0]) / (range[1] - range[0])) : "rgb(47,111,237)");
      dot.setAttribute("fill-opacity", "0.75");
      svg.appendChild(dot);
    });
    root.querySelector("[data-task-map-legend]").textContent = values
      ? name + ": blue " + range[0].toFixed(2) + " to orange " + range[1].toFixed(2)
      : "The family has no task parameters to colour by.";
    root.dataset.colour = name || "";
    root.dataset.drawn = String(data.points.length);
  }

  function init() {
    var root = document.getElementById("task-map");
    if (!root || root.dataset.wired === "1") return;
    root.dataset.wired = "1";
    var data = JSON.parse(document.getElementById(root.dataset.source).textContent);
    var select = root.querySelector("[data-task-map-colour]");
    var names = Object.keys(data.params || {});
    (names.length ? names : [""]).forEach(function (name) {
      var option = document.createElement("option");
      option.value = name;
      option.textContent = name || "nothing";
      select.appendChild(option);
    });
    select.addEventListener("change", function () { draw(root, data, select.value); });
    draw(root, data, select.value);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
