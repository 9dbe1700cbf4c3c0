// Shared front-end helpers, loaded on every page before the page's own scripts.
(function () {
  "use strict";

  function socketUrl(path) {
    return (location.protocol === "https:" ? "wss:" : "ws:") + "//" + location.host + path;
  }

  // A websocket that reconnects with exponential backoff (0.5 s doubling to 30 s, with
  // jitter) until handlers.shouldReconnect() says no. Every JSON message with a `type`
  // goes to handlers.onMessage. Returns { send(message) }, which sends a JSON message
  // when the socket is open and drops it otherwise (a reconnect re-reads the state).
  function liveSocket(path, handlers) {
    var delay = 500;
    var timer = null;
    var ws = null;
    function connect() {
      timer = null;
      ws = new WebSocket(socketUrl(path));
      ws.onopen = function () {
        delay = 500;
        document.body.dataset.socket = "open";
      };
      ws.onmessage = function (event) {
        var message;
        try { message = JSON.parse(event.data); } catch (e) { return; }
        if (message && typeof message.type === "string") handlers.onMessage(message);
      };
      ws.onclose = function () {
        document.body.dataset.socket = "closed";
        if (handlers.shouldReconnect && !handlers.shouldReconnect()) return;
        var wait = delay * (0.75 + Math.random() * 0.5);
        delay = Math.min(delay * 2, 30000);
        timer = setTimeout(connect, wait);
      };
    }
    window.addEventListener("online", function () {
      if (timer) { clearTimeout(timer); delay = 500; connect(); }
    });
    connect();
    return {
      send: function (message) {
        if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(message));
      },
    };
  }

  var FINISHED = { succeeded: true, failed: true, cancelled: true };
  var LABELS = { queued: "Queued", running: "Running", succeeded: "Succeeded", failed: "Failed", cancelled: "Cancelled" };

  function setBadge(badge, status) {
    if (!badge || !LABELS[status]) return;
    badge.className = "badge badge-" + status;
    badge.dataset.status = status;
    badge.textContent = LABELS[status];
  }

  // Follow one run on its page. `root` carries data-run-id and data-live-url (the status
  // panel's partial). The state starts from <script id="run-state"> (json_script). Then
  // the page subscribes first and reads the snapshot second: /ws/runs/<id>/ joins the
  // run's group, then reads the database and sends run.state (on each (re)connect); its
  // points are merged by step into what the page holds, never replacing it. The worker
  // sends a point only once it is stored, so every point sent before the socket joined
  // is in the snapshot and every later one comes over the socket: no hole. run.progress
  // merges its points the same way; run.status updates the badge and re-reads the status
  // panel with htmx, and so does run.warning (a loss spike joined the history). When
  // the run finishes the page asks for run.resync: the worker stores every point
  // before it reports the end, so the page ends with the whole curve.
  // view: { panelId, badgeId, draw(metrics), progress(step, total, speed, eta) }.
  function followRun(root, view) {
    var runId = parseInt(root.dataset.runId, 10);
    var liveUrl = root.dataset.liveUrl;
    var stateEl = document.getElementById("run-state");
    var state = stateEl ? JSON.parse(stateEl.textContent) : { run: {}, metrics: {} };
    var metrics = state.metrics || {};
    var status = state.run.status;
    var live = null;
    var frame = null;

    function redraw() {
      if (frame) return;
      frame = window.requestAnimationFrame(function () {
        frame = null;
        view.draw(metrics);
      });
    }

    function refreshPanel() {
      if (window.htmx && liveUrl) {
        window.htmx.ajax("GET", liveUrl, { target: "#" + view.panelId, swap: "outerHTML" });
      }
    }

    function shownStatus() {
      var panel = document.getElementById(view.panelId);
      return panel ? panel.dataset.status : null;
    }

    function onMessage(message) {
      if (message.type === "run.state" && message.run && message.run.id === runId) {
        window.MetaCharts.mergePoints(metrics, message.metrics);
        status = message.run.status;
        view.progress(message.run.step, message.run.total_steps, message.run.steps_per_sec, message.run.eta_seconds);
        if (shownStatus() !== status) refreshPanel();
        redraw();
      } else if (message.type === "run.progress" && message.run_id === runId) {
        window.MetaCharts.mergePoints(metrics, message.points);
        view.progress(message.step, message.total_steps, message.steps_per_sec, message.eta_seconds);
        redraw();
      } else if (message.type === "run.status" && message.run_id === runId) {
        status = message.status;
        if (FINISHED[status] && live) live.send({ type: "run.resync" });
        setBadge(document.getElementById(view.badgeId), status);
        view.progress(message.step, message.total_steps);
        refreshPanel();
      } else if (message.type === "run.warning" && message.run_id === runId) {
        refreshPanel(); // a loss spike: the panel's warning and history
      }
    }

    redraw();
    if (!FINISHED[status]) {
      live = liveSocket("/ws/runs/" + runId + "/", {
        onMessage: onMessage,
        shouldReconnect: function () { return !FINISHED[status]; },
      });
    }
  }

  // htmx failures are never silent. A 4xx/5xx answer, an unreachable server or a timeout
  // shows a message in the page's alert region (#request-error in base.html) until it is
  // dismissed. A text/plain answer is the server's own message (metaweb/middleware.py
  // sends one for every failed htmx request); otherwise the status is named.
  var MAX_MESSAGE_CHARS = 300;

  function showRequestError(text) {
    var region = document.getElementById("request-error");
    if (!region) return;
    region.querySelector("[data-error-text]").textContent = text;
    region.hidden = false;
  }

  function responseMessage(xhr) {
    var type = xhr.getResponseHeader("Content-Type") || "";
    var body = (xhr.responseText || "").trim();
    if (type.indexOf("text/plain") === 0 && body && body.length <= MAX_MESSAGE_CHARS) return body;
    return "The server answered " + xhr.status + (xhr.statusText ? " " + xhr.statusText : "") + ".";
  }

  var REQUEST_ERRORS = {
    "htmx:responseError": function (detail) { return responseMessage(detail.xhr); },
    "htmx:sendError": function () { return "Could not reach the server. Check your connection and try again."; },
    "htmx:timeout": function () { return "The server took too long to answer. Try again."; },
    "htmx:swapError": function () { return "The page could not show the server's answer. Reload the page."; },
  };
  Object.keys(REQUEST_ERRORS).forEach(function (name) {
    document.addEventListener(name, function (event) { showRequestError(REQUEST_ERRORS[name](event.detail)); });
  });
  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("[data-dismiss-error]") : null;
    if (!button) return;
    var region = document.getElementById("request-error");
    if (region) region.hidden = true;
  });

  // Sizes and colours computed on the server travel as data attributes and are set
  // through the CSSOM here: the Content-Security-Policy allows no style="" attributes.
  // data-width="42.5" is a width in percent; data-heat="0.3" the alpha of a heat-map cell.
  function applyDataStyles(root) {
    root.querySelectorAll("[data-width]").forEach(function (el) {
      el.style.width = Math.max(0, Math.min(100, Number(el.dataset.width) || 0)) + "%";
    });
    root.querySelectorAll("[data-heat]").forEach(function (el) {
      el.style.backgroundColor = "rgba(47, 111, 237, " + (Number(el.dataset.heat) || 0) + ")";
    });
  }
  document.addEventListener("DOMContentLoaded", function () { applyDataStyles(document); });
  document.addEventListener("htmx:load", function (event) { applyDataStyles(event.detail.elt.parentNode || document); });
  // Move the progress bar #id (role=progressbar, its first child the fill) to step of
  // total: the same percentage the server renders (Run.progress_pct).
  function setProgress(id, step, total) {
    var bar = document.getElementById(id);
    if (!bar || typeof step !== "number") return;
    bar.setAttribute("aria-valuenow", String(step));
    if (typeof total === "number" && total > 0) {
      bar.setAttribute("aria-valuemax", String(total));
      bar.firstElementChild.style.width = Math.min(100, (100 * step) / total).toFixed(1) + "%";
    }
  }

  window.MetaLive = {
    socket: liveSocket,
    followRun: followRun,
    setBadge: setBadge,
    setProgress: setProgress,
    FINISHED: FINISHED,
    LABELS: LABELS,
  };
})();
