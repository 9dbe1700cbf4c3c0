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

  window.MetaLive = {
    socket: liveSocket,
    FINISHED: { succeeded: true, failed: true, cancelled: true },
    LABELS: { queued: "Queued", running: "Running", succeeded: "Succeeded", failed: "Failed", cancelled: "Cancelled" },
  };
})();
