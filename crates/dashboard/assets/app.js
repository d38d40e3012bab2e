// fledge dashboard: live updates without reloading. The server renders every fragment; this
// script only swaps them in (server-sent events) and filters the overview's rows as one types.
(function () {
  "use strict";
  var state = document.getElementById("live-state");
  var filter = document.getElementById("filter");

  function applyFilter() {
    if (!filter) { return; }
    var words = filter.value.toLowerCase().split(/\s+/).filter(Boolean);
    var rows = document.querySelectorAll("tr[data-filter]");
    for (var i = 0; i < rows.length; i++) {
      var text = rows[i].getAttribute("data-filter");
      rows[i].hidden = !words.every(function (w) { return text.indexOf(w) >= 0; });
    }
  }
  if (filter) {
    filter.addEventListener("input", applyFilter);
  }

  var src = document.body.getAttribute("data-stream");
  if (!src || !window.EventSource) {
    if (state) { state.textContent = "Live updates: off"; }
    return;
  }
  var es = new EventSource(src);
  es.addEventListener("open", function () {
    if (state) { state.textContent = "Live updates: on"; }
  });
  es.addEventListener("error", function () {
    if (state) { state.textContent = "Live updates: reconnecting…"; }
  });
  es.addEventListener("fragment", function (e) {
    var d = JSON.parse(e.data);
    var el = document.getElementById(d.id);
    // The page marks each fragment with its digest: an unchanged one is left alone.
    if (!el || el.getAttribute("data-hash") === d.hash) { return; }
    el.setAttribute("data-hash", d.hash);
    // Keep the keyboard focus on the same control when its fragment is replaced.
    var focused = document.activeElement;
    var refocus = null;
    if (focused && el.contains(focused) && focused.getAttribute("data-action")) {
      refocus = focused.getAttribute("data-action");
    }
    el.innerHTML = d.html;
    if (refocus) {
      var again = el.querySelector('[data-action="' + refocus + '"]');
      if (again) { again.focus(); }
    }
    applyFilter();
    document.body.setAttribute("data-updates", String(Number(document.body.getAttribute("data-updates") || "0") + 1));
  });
})();
