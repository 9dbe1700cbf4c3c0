// Live updates over websockets. The database is the source of truth: each (re)connect
// starts from the server's state, and status changes re-fetch the page's partial.
//   Run page (#run-page): /ws/runs/<id>/ sends run.state on connect, then run.progress
//     (new chart points, step, speed, ETA) and run.status events.
//   Run lists ([data-team-live]): /ws/teams/<slug>/ sends team.state on connect, then
//     relays run.status events; badges swap in place, and a newly queued run not on the
//     page refreshes the list's partial. So does queue.changed (a run of any team was
//     queued, started or ended) while the partial shows queued runs ([data-queue-wait]):
//     their places have moved. runs.archived (members archived or restored runs) refreshes
//     it too: archived runs leave the list, restored ones come back, counts change. A
//     queued run's page carries data-team-live too, and refreshes its status panel.
(function () {
  "use strict";

  function formatDuration(seconds) {
    if (seconds === null || seconds === undefined || !isFinite(seconds)) return "—";
    seconds = Math.round(seconds);
    var h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
    if (h) return h + " h " + String(m).padStart(2, "0") + " min";
    if (m) return m + " min " + String(s).padStart(2, "0") + " s";
    return s + " s";
  }

  function setText(id, text) {
    var el = document.getElementById(id);
    if (el) el.textContent = text;
  }

  // -- the run page ------------------------------------------------------------------

  function showProgress(step, total, speed, eta) {
    if (typeof step === "number") {
      setText("run-step", String(step));
      window.MetaLive.setProgress("run-progress", step, total);
    }
    if (typeof total === "number") setText("run-total-steps", String(total));
    if (speed !== undefined) setText("run-speed", speed ? speed.toFixed(1) + " steps/s" : "—");
    if (eta !== undefined) setText("run-eta", formatDuration(eta));
  }

  function runPage(root) {
    var charts = ["chart-loss", "chart-val", "chart-sys"]
      .map(function (id) { return document.getElementById(id); })
      .filter(Boolean)
      .map(function (el) { return new window.MetaCharts.SeriesChart(el); });
    // A spike's step in the status panel zooms the chart it names to the steps around it
    // (delegated: the panel is re-read with htmx).
    root.addEventListener("click", function (event) {
      var link = event.target.closest("[data-zoom-chart]");
      var el = link && document.getElementById(link.dataset.zoomChart);
      if (!el || !el.metaChart) return;
      el.scrollIntoView({ block: "center" });
      el.metaChart.zoomTo(Math.max(0, Number(link.dataset.zoomLo)), Number(link.dataset.zoomHi));
    });
    window.MetaLive.followRun(root, {
      panelId: "run-live",
      badgeId: "run-status",
      draw: function (metrics) { charts.forEach(function (chart) { chart.draw(metrics); }); },
      progress: showProgress,
    });
  }

  // -- run lists ---------------------------------------------------------------------

  function teamLive(el) {
    var slug = el.dataset.teamLive;
    var pending = null;
    function refreshList() {
      var target = el.querySelector("[data-live-refresh]");
      if (!target || !window.htmx || pending) return;
      pending = setTimeout(function () {
        pending = null;
        window.htmx.ajax("GET", location.pathname + location.search, {
          target: "#" + target.id, swap: "outerHTML",
        });
      }, 300);
    }
    window.MetaLive.socket("/ws/teams/" + encodeURIComponent(slug) + "/", {
      onMessage: function (message) {
        if (message.type === "team.state" && Array.isArray(message.runs)) {
          // On (re)connect: the database's statuses, in case events were missed meanwhile.
          message.runs.forEach(function (run) {
            showRun(String(parseInt(run.id, 10)), run.status, run.step);
          });
          return;
        }
        if (message.type === "runs.archived") {
          refreshList();
          return;
        }
        if (message.type === "queue.changed") {
          // A run of any team was queued, started or ended: the queued runs shown here moved.
          if (el.querySelector("[data-queue-wait]")) refreshList();
          return;
        }
        if (message.type !== "run.status") return;
        var id = String(parseInt(message.run_id, 10));
        var badges = document.querySelectorAll('[data-run-badge="' + id + '"]');
        // A run not on the page: a newly queued one may belong here.
        if (!badges.length) return message.status === "queued" ? refreshList() : undefined;
        showRun(id, message.status, message.step);
      },
    });
  }

  function showRun(id, status, step) {
    document.querySelectorAll('[data-run-badge="' + id + '"]').forEach(function (badge) {
      window.MetaLive.setBadge(badge, status);
    });
    if (typeof step !== "number") return;
    document.querySelectorAll('[data-run-step="' + id + '"]').forEach(function (span) {
      span.textContent = String(step);
    });
  }

  function init() {
    var page = document.getElementById("run-page");
    if (page) runPage(page);
    document.querySelectorAll("[data-team-live]").forEach(teamLive);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
