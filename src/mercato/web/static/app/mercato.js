/* Mercato back office behaviour. No inline scripts: the page policy forbids them.
 * Alpine.js is its CSP build, so widgets are registered here with Alpine.data.
 */
(function () {
  "use strict";

  // Charts: <div class="chart" data-chart="{...ECharts option...}">, drawn on load and
  // after every htmx swap; resized with the window.
  function drawCharts(root) {
    if (typeof window.echarts === "undefined") { return; }
    root.querySelectorAll(".chart[data-chart]").forEach(function (el) {
      if (el.dataset.drawn === "1") { return; }
      var option = JSON.parse(el.dataset.chart);
      var chart = window.echarts.init(el, null, { renderer: "svg" });
      chart.setOption(option);
      el.dataset.drawn = "1";
      window.addEventListener("resize", function () { chart.resize(); });
    });
  }

  document.addEventListener("DOMContentLoaded", function () { drawCharts(document); });
  document.addEventListener("htmx:afterSettle", function (event) { drawCharts(event.target); });

  // A server-sent event stream that asks htmx to refresh parts of the page:
  // <div data-live-source="/admin/.../stream" data-live-event="stock"> and elements with
  // hx-trigger="live-stock from:body" reload when the stream says so.
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-live-source]").forEach(function (el) {
      if (typeof window.EventSource === "undefined") { return; }
      var source = new EventSource(el.dataset.liveSource);
      var name = el.dataset.liveEvent || "message";
      source.addEventListener(name, function (message) {
        document.body.dispatchEvent(new CustomEvent("live-" + name, { detail: message.data }));
      });
    });
  });

  document.addEventListener("alpine:init", function () {
    // A disclosure: x-data="toggle" with @click="flip" and x-show="open".
    window.Alpine.data("toggle", function () {
      return { open: false, flip: function () { this.open = !this.open; } };
    });
    // A confirmation step: x-data="confirmStep", the dangerous button shows only after
    // the first one is pressed.
    window.Alpine.data("confirmStep", function () {
      return { asked: false, ask: function () { this.asked = true; }, cancel: function () { this.asked = false; } };
    });
  });
})();
