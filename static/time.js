// Shows every <time datetime="...Z"> in the reader's local time with the zone named, e.g.
// "28 Nov 2026, 03:07 CET". Without JavaScript the server's UTC text stays.
(function () {
  "use strict";
  var withSeconds = /:\d\d:\d\d UTC$/;
  document.querySelectorAll("time[datetime]").forEach(function (el) {
    var when = new Date(el.getAttribute("datetime"));
    if (isNaN(when.getTime())) return;
    var options = {
      day: "numeric", month: "short", year: "numeric",
      hour: "2-digit", minute: "2-digit", timeZoneName: "short"
    };
    if (withSeconds.test(el.textContent.trim())) options.second = "2-digit";
    el.title = el.textContent.trim();
    el.textContent = when.toLocaleString(undefined, options);
  });
})();
