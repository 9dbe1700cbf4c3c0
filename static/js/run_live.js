// Live updates over websockets. The database is the source of truth: each (re)connect
// starts from the server's state, and status changes re-fetch the page's partial.
//   Run page (#run-page): /ws/runs/<id>/ sends run.state on connect, then run.progress
//     (new chart points, step, speed, ETA) and run.status events.
//   Run lists ([data-team-live]): /ws/teams/<slug>/ sends team.state on connect, then
//     relays run.status events; badges swap in place, and a newly queued run not on the
//     page refreshes the list's partial.
(function () {
  "use strict";

  var FINISHED = window.MetaLive.FINISHED;
  var LABELS = window.MetaLive.LABELS;

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

  function setBadge(badge, status) {
    if (!LABELS[status]) return;
    badge.className = "badge badge-" + status;
    badge.dataset.status = status;
    badge.textContent = LABELS[status];
  }

  // -- the run page ------------------------------------------------------------------

  function runPage(root) {
    var runId = parseInt(root.dataset.runId, 10);
    var liveUrl = root.dataset.liveUrl;
    var stateEl = document.getElementById("run-state");
    var state = stateEl ? JSON.parse(stateEl.textContent) : { run: {}, metrics: {} };
    var metrics = state.metrics || {};
    var status = state.run.status;
    var charts = ["chart-loss", "chart-val"]
      .map(function (id) { return document.getElementById(id); })
      .filter(Boolean)
      .map(function (el) { return new window.MetaCharts.SeriesChart(el); });
    var live = null;
    var frame = null;

    function redraw() {
      if (frame) return;
      frame = window.requestAnimationFrame(function () {
        frame = null;
        charts.forEach(function (chart) { chart.draw(metrics); });
      });
    }

    function showProgress(step, total, speed, eta) {
      if (typeof step === "number") {
        setText("run-step", String(step));
        var bar = document.getElementById("run-progress");
        if (bar) {
          bar.setAttribute("aria-valuenow", String(step));
          if (typeof total === "number" && total > 0) {
            bar.setAttribute("aria-valuemax", String(total));
            bar.firstElementChild.style.width = Math.min(100, (100 * step) / total).toFixed(1) + "%";
          }
        }
      }
      if (typeof total === "number") setText("run-total-steps", String(total));
      if (speed !== undefined) setText("run-speed", speed ? speed.toFixed(1) + " steps/s" : "—");
      if (eta !== undefined) setText("run-eta", formatDuration(eta));
    }

    // Re-read the status panel (badge, worker, error, history, cancel button) from the server.
    function refreshPanel() {
      if (window.htmx && liveUrl) window.htmx.ajax("GET", liveUrl, { target: "#run-live", swap: "outerHTML" });
    }

    function shownStatus() {
      var panel = document.getElementById("run-live");
      return panel ? panel.dataset.status : null;
    }

    function onMessage(message) {
      if (message.type === "run.state" && message.run && message.run.id === runId) {
        metrics = message.metrics || {};
        status = message.run.status;
        showProgress(message.run.step, message.run.total_steps, message.run.steps_per_sec, message.run.eta_seconds);
        if (shownStatus() !== status) refreshPanel();
        redraw();
      } else if (message.type === "run.progress" && message.run_id === runId) {
        window.MetaCharts.mergePoints(metrics, message.points);
        showProgress(message.step, message.total_steps, message.steps_per_sec, message.eta_seconds);
        redraw();
      } else if (message.type === "run.status" && message.run_id === runId) {
        status = message.status;
        // The worker stores every point before it reports the end: re-read them all, so a
        // page opened mid-run also ends with the complete curve.
        if (FINISHED[status] && live) live.send({ type: "run.resync" });
        var badge = document.getElementById("run-status");
        if (badge) setBadge(badge, status);
        showProgress(message.step, message.total_steps);
        refreshPanel();
      }
    }

    redraw();
    if (!FINISHED[status]) {
      live = window.MetaLive.socket("/ws/runs/" + runId + "/", {
        onMessage: onMessage,
        shouldReconnect: function () { return !FINISHED[status]; },
      });
    }
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
      setBadge(badge, status);
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
