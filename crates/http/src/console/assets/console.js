// Sendmux console: small enhancements over pages that work without script.
// Copy buttons, confirmations, the team switcher, and the live event feed (SSE).
(function () {
  "use strict";

  document.querySelectorAll("[data-copy]").forEach(function (button) {
    button.hidden = false;
    button.addEventListener("click", function () {
      var source = document.getElementById(button.getAttribute("data-copy"));
      if (!source) return;
      var text = source.textContent;
      var done = function () {
        button.textContent = "Copied";
        setTimeout(function () { button.textContent = "Copy"; }, 2000);
      };
      if (navigator.clipboard && navigator.clipboard.writeText) {
        navigator.clipboard.writeText(text).then(done, function () { select(source); });
      } else {
        select(source);
      }
    });
  });

  function select(node) {
    var range = document.createRange();
    range.selectNodeContents(node);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
    });
  });

  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () { select.form.submit(); });
  });
  document.querySelectorAll("[data-hide-with-js]").forEach(function (node) { node.hidden = true; });

  var feed = document.getElementById("live-feed");
  if (feed && window.EventSource) {
    var status = document.getElementById("live-status");
    var source = new EventSource(feed.getAttribute("data-stream"));
    source.addEventListener("open", function () {
      status.textContent = "Connected: new events appear here as they happen.";
      status.className = "live-status live-on";
    });
    source.addEventListener("error", function () {
      status.textContent = "Reconnecting…";
      status.className = "live-status";
    });
    source.addEventListener("event", function (message) {
      var event;
      try { event = JSON.parse(message.data); } catch (e) { return; }
      var item = document.createElement("li");
      item.className = "feed-item";
      var type = document.createElement("span");
      type.className = "badge tone-neutral";
      type.textContent = event.type;
      var about = document.createElement("span");
      about.textContent = " " + (event.summary || "") + " ";
      var id = document.createElement("code");
      id.textContent = event.id;
      var when = document.createElement("time");
      when.dateTime = event.created_at;
      when.textContent = " " + event.created_at.replace("T", " ").replace("Z", " UTC");
      item.append(type, about, id, when);
      feed.prepend(item);
      while (feed.children.length > 100) feed.removeChild(feed.lastChild);
    });
  }
})();
