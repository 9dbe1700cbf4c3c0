// Selecting runs to compare: a checkbox per row (data-select-run) and a
// "Compare (n)" button in the [data-run-select] bar above the table, enabled for
// data-min..data-max runs. It opens <data-compare-url>?ids=1,2,3, so a selection
// is a link that can be shared. Members' "Archive (n)" and "Restore (n)" forms
// ([data-archive-form]) post the same ticked ids. The selection outlives htmx swaps of the table
// (a new search or page): ticked ids are kept here and ticked again after a swap.
(function () {
  "use strict";
  var selected = [];

  function bar() { return document.querySelector("[data-run-select]"); }

  function refresh() {
    var el = bar();
    if (!el) return;
    var min = parseInt(el.dataset.min, 10), max = parseInt(el.dataset.max, 10);
    document.querySelectorAll("[data-select-run]").forEach(function (box) {
      box.checked = selected.indexOf(box.dataset.selectRun) !== -1;
    });
    var button = el.querySelector("[data-compare-button]");
    el.querySelector("[data-compare-count]").textContent = String(selected.length);
    button.disabled = selected.length < min || selected.length > max;
    el.querySelector("[data-compare-hint]").textContent = selected.length > max
      ? "At most " + max + " runs can be compared; untick " + (selected.length - max) + "."
      : "Tick " + min + " to " + max + " runs to compare them.";
    el.querySelectorAll("[data-archive-form]").forEach(function (form) {
      form.querySelector("[data-archive-count]").textContent = String(selected.length);
      form.querySelector("[data-archive-button]").disabled = selected.length === 0;
      form.elements.ids.value = selected.join(",");
    });
  }

  document.addEventListener("change", function (event) {
    var box = event.target.closest ? event.target.closest("[data-select-run]") : null;
    if (!box) return;
    var id = box.dataset.selectRun, at = selected.indexOf(id);
    if (box.checked && at === -1) selected.push(id);
    if (!box.checked && at !== -1) selected.splice(at, 1);
    refresh();
  });

  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("[data-compare-button]") : null;
    if (!button || button.disabled) return;
    window.location.href = bar().dataset.compareUrl + "?ids=" + selected.join(",");
  });

  document.addEventListener("DOMContentLoaded", refresh);
  document.addEventListener("htmx:afterSettle", refresh);
})();
