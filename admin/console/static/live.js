// mmlego console: keeps a page current without reloading it. A <main data-live="N"> is re-fetched
// every N seconds and swapped for the fresh one; nothing runs while the tab is hidden, and without
// JavaScript the page is complete as served.
(function () {
  "use strict";
  var main = document.querySelector("main[data-live]");
  if (!main || !window.fetch || !window.DOMParser) return;
  var seconds = Math.max(2, parseInt(main.getAttribute("data-live"), 10) || 5);
  var state = document.getElementById("live-state");
  var busy = false;

  function say(text, stale) {
    if (!state) return;
    state.textContent = text;
    state.classList.toggle("stale", !!stale);
  }

  function refresh() {
    if (busy || document.hidden) return;
    busy = true;
    fetch(window.location.href, { credentials: "same-origin", cache: "no-store", headers: { "Accept": "text/html" } })
      .then(function (r) {
        return r.text().then(function (html) { return { ok: r.ok, status: r.status, html: html }; });
      })
      .then(function (r) {
        if (!r.ok) {  // keep what is shown; say why it is not current
          say(r.status === 401 ? "not logged in: reload the page" : "not updated (HTTP " + r.status + ")", true);
          return;
        }
        var fresh = new DOMParser().parseFromString(r.html, "text/html").querySelector("main");
        var current = document.querySelector("main");
        if (fresh && current) {
          current.replaceWith(document.adoptNode(fresh));
          say("live · every " + seconds + " s", false);
        }
      })
      .catch(function () { say("not updated: the console is unreachable", true); })
      .then(function () { busy = false; });
  }

  say("live · every " + seconds + " s", false);
  window.setInterval(refresh, seconds * 1000);
  document.addEventListener("visibilitychange", function () { if (!document.hidden) refresh(); });
}());
