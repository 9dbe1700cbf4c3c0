// The sweep page (#sweep-page). The database is the source of truth: the team socket
// (/ws/teams/<slug>/) says that a run changed state, and the page re-fetches its
// leaderboard partial (#sweep-live). A run.status of a run on the page, or a newly
// queued run (the sweep's next one), triggers the refresh; bursts are coalesced. While
// the sweep runs, the partial is also re-read every 5 s for the runs' eval metrics,
// which the team socket does not carry. The parallel coordinates are redrawn after
// each swap from #sweep-parallel-data.
(function () {
  "use strict";

  var REFRESH_MS = 300, POLL_MS = 5000;

  function drawParallel() {
    var script = document.getElementById("sweep-parallel-data");
    var container = document.getElementById("parallel-chart");
    if (!script || !container || !window.ParallelCoords) return;
    var data = JSON.parse(script.textContent);
    var axes = data.keys.map(function (key) {
      return { name: key, values: data.rows.map(function (row) { return row.config[key]; }) };
    });
    var values = data.rows.map(function (row) { return row.metrics[data.metric]; });
    axes.push({ name: data.metric, values: values });
    window.ParallelCoords.draw(container, {
      axes: axes,
      ids: data.rows.map(function (row) { return row.id; }),
      colours: data.rows.map(function (row, i) { return i === 0 && typeof values[0] === "number" ? "#c0392b" : "#7f8c8d"; }),
      onFilter: function () {},
    });
  }

  function init() {
    var page = document.getElementById("sweep-page");
    if (!page) return;
    var pending = null;
    function refresh() {
      if (pending || !window.htmx) return;
      pending = setTimeout(function () {
        pending = null;
        window.htmx.ajax("GET", page.dataset.liveUrl, { target: "#sweep-live", swap: "outerHTML" });
      }, REFRESH_MS);
    }
    function running() {
      var live = document.getElementById("sweep-live");
      return live && live.dataset.sweepStatus === "running";
    }
    document.body.addEventListener("htmx:afterSettle", function (event) {
      if (event.target && event.target.id === "sweep-live") drawParallel();
    });
    drawParallel();
    setInterval(function () { if (running() && !document.hidden) refresh(); }, POLL_MS);
    window.MetaLive.socket("/ws/teams/" + encodeURIComponent(page.dataset.teamSlug) + "/", {
      onMessage: function (message) {
        if (message.type === "team.state") return refresh();
        if (message.type !== "run.status") return;
        var id = String(parseInt(message.run_id, 10));
        var known = document.querySelector('#sweep-leaderboard [data-run-id="' + id + '"]');
        if (known || (message.status === "queued" && running())) refresh();
      },
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
