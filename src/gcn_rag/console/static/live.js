// gcn-rag console: refresh the endpoint page's state and charts in place (no library).
// Without this script the page still works: the window form reloads the page.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || !window.fetch) { return; }
  var every = Number(live.getAttribute("data-every")) || 5000;
  var timer = null;
  var stopped = false;

  function schedule() {
    if (timer !== null) { clearTimeout(timer); }
    if (!stopped) { timer = setTimeout(refresh, every); }
  }

  // replace each [data-part] of the page by the fragment's part of the same name; the
  // window form between them is left alone (a select being used keeps its focus)
  function swap(html) {
    var fresh = document.createElement("template");
    fresh.innerHTML = html;
    fresh.content.querySelectorAll("[data-part]").forEach(function (part) {
      var name = part.getAttribute("data-part");
      var here = live.querySelector('[data-part="' + name + '"]');
      if (here) { here.replaceWith(part); }
    });
    live.setAttribute("data-refreshed", String(Date.now()));
  }

  function refresh() {
    var src = live.getAttribute("data-src");
    fetch(src, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) {
        // signed out (sent to the sign-in page) or refused: stop, the page says what it had
        if (response.redirected || response.status === 401 || response.status === 403) {
          stopped = true;
          return null;
        }
        return response.ok ? response.text() : null;
      })
      .then(function (html) {
        if (html !== null) {
          swap(html);
        }
      })
      .catch(function () { /* the server restarts or the network blinks: try again */ })
      .then(schedule);
  }

  var form = document.getElementById("window-form");
  var select = document.getElementById("window");
  if (form && select) {
    select.addEventListener("change", function () {
      var src = live.getAttribute("data-src").replace(/window=[^&]*/, "window=" + encodeURIComponent(select.value));
      live.setAttribute("data-src", src);
      var url = new URL(window.location.href);
      url.searchParams.set("window", select.value);
      url.searchParams.delete("updated");
      window.history.replaceState(null, "", url.toString());
      refresh();
    });
  }
  schedule();
})();
