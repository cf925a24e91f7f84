/* Turnout console: draws the chart specs the server embeds (router/console/charts.py) with
 * ECharts, and refreshes them and the page's fragments from /ui/api/... without a reload.
 * Text from the server only ever reaches the page as text (or as fragments the server
 * rendered with autoescaping), never as markup built here. */
(function () {
  "use strict";

  var script = document.currentScript;
  var pageKind = script.getAttribute("data-page");
  var api = script.getAttribute("data-api");
  var data = JSON.parse(document.getElementById("console-data").textContent);
  var charts = {};
  var state = { refreshes: 0, failures: 0, updated: Date.now() };
  window.turnoutCharts = charts;
  window.turnoutConsole = state;

  var PALETTE = ["#2563eb", "#f59e0b", "#10b981", "#a855f7", "#ef4444", "#0ea5e9", "#84cc16", "#ec4899"];
  var ERROR_COLOUR = "#dc2626";
  var AXIS = { axisLine: { lineStyle: { color: "#9ca3af" } }, axisLabel: { color: "#4b5563" }, splitLine: { lineStyle: { color: "#eef0f3" } } };

  function esc(value) {
    return String(value).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }

  function num(value, digits) {
    if (value === null || value === undefined || value === "-" || Number.isNaN(value)) { return "-"; }
    if (typeof value !== "number") { return esc(value); }
    var d = digits === undefined ? 3 : digits;
    return Math.abs(value) >= 1000 ? Math.round(value).toLocaleString("en") : String(+value.toFixed(d));
  }

  function lookup(root, path) {
    return path.split(".").reduce(function (node, key) {
      return node === null || node === undefined ? undefined : node[key];
    }, root);
  }

  function variantIndex(name) {
    var variants = data.variants || [];
    var head = String(name).split(" ")[0];
    var i = variants.indexOf(head);
    return i;
  }

  function colourFor(name, i) {
    if (name === "errors") { return ERROR_COLOUR; }
    var v = variantIndex(name);
    return PALETTE[(v >= 0 ? v : i) % PALETTE.length];
  }

  function clean(value) {
    return value === null || value === undefined ? "-" : value;
  }

  function timeOf(ms) {
    var d = new Date(ms);
    return d.toISOString().slice(0, 16).replace("T", " ") + " UTC";
  }

  function axisTooltip(unit) {
    return function (items) {
      if (!items.length) { return ""; }
      var lines = ["<b>" + esc(timeOf(items[0].value[0])) + "</b>"];
      items.forEach(function (item) {
        lines.push(item.marker + esc(item.seriesName) + ": " + num(item.value[1], 2) + (unit ? " " + esc(unit) : ""));
      });
      return lines.join("<br>");
    };
  }

  function legend() {
    return { type: "scroll", top: 0, textStyle: { color: "#374151" } };
  }

  var BUILDERS = {
    timeseries: function (spec) {
      return {
        animation: false,
        legend: legend(),
        grid: { left: 8, right: 16, top: 34, bottom: 8, containLabel: true },
        tooltip: { trigger: "axis", formatter: axisTooltip(spec.unit === "%" ? "%" : "") },
        xAxis: Object.assign({ type: "time" }, AXIS),
        yAxis: Object.assign({ type: "value", max: spec.max, name: spec.unit, nameTextStyle: { color: "#6b7280" } }, AXIS),
        series: spec.series.map(function (s, i) {
          var colour = colourFor(s.name, i);
          var out = {
            name: s.name, type: "line", showSymbol: false, connectNulls: false,
            itemStyle: { color: colour }, lineStyle: { width: 2, color: colour },
            data: s.data.map(function (p) { return [p[0] * 1000, clean(p[1])]; })
          };
          if (s.style === "step") {
            out.step = "end";
            out.lineStyle = { type: "dashed", width: 1.5, color: colour };
          } else if (s.style === "stack") {
            out.stack = "total";
            out.areaStyle = { opacity: 0.55, color: colour };
            out.lineStyle = { width: 1, color: colour };
          }
          return out;
        })
      };
    },

    forest: function (spec) {
      var rows = spec.rows;
      var colour = function (r) { return colourFor(r.variant, 0); };
      return {
        animation: false,
        grid: { left: 8, right: 24, top: 8, bottom: 8, containLabel: true },
        tooltip: {
          trigger: "item",
          formatter: function (item) {
            var r = rows[item.dataIndex];
            return "<b>" + esc(r.label) + "</b><br>difference " + num(r.estimate, 4) +
              "<br>95% [" + num(r.low, 4) + ", " + num(r.high, 4) + "]<br>p " + num(r.p, 3);
          }
        },
        xAxis: Object.assign({ type: "value", scale: true, name: "difference", nameLocation: "middle", nameGap: 24 }, AXIS),
        yAxis: Object.assign({ type: "category", inverse: true, data: rows.map(function (r) { return r.label; }) }, AXIS),
        series: [
          {
            name: spec.series[0].name, type: "scatter", symbolSize: 10, z: 3,
            data: rows.map(function (r, i) {
              return { value: [clean(r.estimate), i], itemStyle: { color: colour(r) } };
            }),
            markLine: { silent: true, symbol: "none", label: { show: false }, lineStyle: { color: "#6b7280", type: "solid" }, data: [{ xAxis: 0 }] }
          },
          {
            name: spec.series[1].name, type: "custom", z: 2,
            encode: { x: [0, 1], y: 2 },
            data: rows.map(function (r, i) { return [clean(r.low), clean(r.high), i]; }),
            renderItem: function (params, apiFns) {
              var lo = apiFns.value(0), hi = apiFns.value(1), y = apiFns.value(2);
              if (Number.isNaN(lo) || Number.isNaN(hi)) { return null; }
              var a = apiFns.coord([lo, y]), b = apiFns.coord([hi, y]);
              var h = apiFns.size([0, 1])[1] * 0.22;
              var style = { stroke: colour(rows[params.dataIndex]), lineWidth: 2 };
              return {
                type: "group", children: [
                  { type: "line", shape: { x1: a[0], y1: a[1], x2: b[0], y2: b[1] }, style: style },
                  { type: "line", shape: { x1: a[0], y1: a[1] - h, x2: a[0], y2: a[1] + h }, style: style },
                  { type: "line", shape: { x1: b[0], y1: b[1] - h, x2: b[0], y2: b[1] + h }, style: style }
                ]
              };
            }
          }
        ]
      };
    },

    densities: function (spec) {
      var xs = spec.series.length ? spec.series[0].data : [[0], [1]];
      return {
        animation: false,
        legend: legend(),
        grid: { left: 8, right: 16, top: 34, bottom: 8, containLabel: true },
        tooltip: { trigger: "axis", valueFormatter: function (v) { return num(v, 2); } },
        xAxis: Object.assign({ type: "value", min: xs[0][0], max: xs[xs.length - 1][0], name: "reward" }, AXIS),
        yAxis: Object.assign({ type: "value", name: "density" }, AXIS),
        series: spec.series.map(function (s, i) {
          var colour = colourFor(s.name, i);
          return {
            name: s.name, type: "line", showSymbol: false, smooth: false,
            itemStyle: { color: colour }, lineStyle: { color: colour, width: 2 }, areaStyle: { opacity: 0.15, color: colour },
            data: s.data.map(function (p) { return [p[0], clean(p[1])]; }),
            markLine: { silent: true, symbol: "none", label: { show: false }, lineStyle: { type: "dotted", color: colour }, data: [{ xAxis: s.mean }] }
          };
        })
      };
    },

    bars: function (spec) {
      return {
        animation: false,
        legend: legend(),
        grid: { left: 8, right: 16, top: 34, bottom: 8, containLabel: true },
        tooltip: { trigger: "axis", valueFormatter: function (v) { return num(v, 3); } },
        xAxis: Object.assign({ type: "category", data: spec.categories }, AXIS),
        yAxis: Object.assign({ type: "value", max: 1 }, AXIS),
        series: spec.series.map(function (s, i) {
          return { name: s.name, type: "bar", itemStyle: { color: PALETTE[(i + 4) % PALETTE.length] }, data: s.data.map(clean) };
        })
      };
    },

    heatmap: function (spec) {
      var cells = spec.series[0].data;
      var top = cells.reduce(function (m, c) { return Math.max(m, c[2]); }, 1);
      return {
        animation: false,
        grid: { left: 8, right: 16, top: 16, bottom: 8, containLabel: true },
        tooltip: {
          formatter: function (item) {
            var c = item.value;
            return esc(spec.y_title) + " " + esc(spec.y[c[1]]) + "<br>" + esc(spec.x_title) + " " + esc(spec.x[c[0]]) + "<br><b>" + num(c[2], 0) + "</b>";
          }
        },
        xAxis: Object.assign({ type: "category", data: spec.x, name: spec.x_title, nameLocation: "middle", nameGap: 24, splitArea: { show: true } }, AXIS),
        yAxis: Object.assign({ type: "category", data: spec.y, name: spec.y_title, splitArea: { show: true } }, AXIS),
        visualMap: { show: false, min: 0, max: top, inRange: { color: ["#eff6ff", "#1d4ed8"] } },
        series: [{ name: spec.series[0].name, type: "heatmap", data: cells, label: { show: true, color: "#111827" } }]
      };
    },

    histogram: function (spec) {
      var bins = spec.series[0].bins;
      var label = function (b) {
        if (b.low === null) { return "< " + num(b.high, 2); }
        if (b.high === null) { return "> " + num(b.low, 2); }
        return num(b.low, 2) + " – " + num(b.high, 2);
      };
      return {
        animation: false,
        grid: { left: 8, right: 16, top: 16, bottom: 8, containLabel: true },
        tooltip: { trigger: "axis", valueFormatter: function (v) { return num(v, 0); } },
        xAxis: Object.assign({ type: "category", data: bins.map(label), name: "shadow score − primary score", nameLocation: "middle", nameGap: 40, axisLabel: { rotate: 45, color: "#4b5563", fontSize: 10 } }, { axisLine: AXIS.axisLine }),
        yAxis: Object.assign({ type: "value", name: "requests" }, AXIS),
        series: [{ name: spec.series[0].name, type: "bar", barCategoryGap: "8%", itemStyle: { color: PALETTE[3] }, data: bins.map(function (b) { return b.count; }) }]
      };
    },

    band: function (spec) {
      var estimate = spec.series[0], band = spec.series[1];
      return {
        animation: false,
        legend: legend(),
        grid: { left: 8, right: 16, top: 34, bottom: 8, containLabel: true },
        tooltip: { trigger: "axis", formatter: axisTooltip("") },
        xAxis: Object.assign({ type: "time" }, AXIS),
        yAxis: Object.assign({ type: "value", scale: true }, AXIS),
        series: [
          {
            name: estimate.name, type: "line", showSymbol: true, symbolSize: 4, itemStyle: { color: PALETTE[0] },
            data: estimate.data.map(function (p) { return [p[0] * 1000, clean(p[1])]; }),
            markLine: { silent: true, symbol: "none", label: { show: false }, lineStyle: { color: "#9ca3af" }, data: [{ yAxis: 0 }] }
          },
          {
            name: band.name, type: "custom", itemStyle: { color: PALETTE[0] },
            encode: { x: 0, y: [1, 2] },
            data: band.data.map(function (p) { return [p[0] * 1000, clean(p[1]), clean(p[2])]; }),
            renderItem: function (params, apiFns) {
              var t = apiFns.value(0), lo = apiFns.value(1), hi = apiFns.value(2);
              if (Number.isNaN(lo) || Number.isNaN(hi)) { return null; }
              var a = apiFns.coord([t, lo]), b = apiFns.coord([t, hi]);
              return { type: "line", shape: { x1: a[0], y1: a[1], x2: b[0], y2: b[1] }, style: { stroke: "rgba(37, 99, 235, 0.45)", lineWidth: 3 } };
            }
          }
        ]
      };
    },

    spark: function (spec) {
      var s = spec.series[0];
      return {
        animation: false,
        grid: { left: 0, right: 0, top: 4, bottom: 0 },
        tooltip: { trigger: "axis", formatter: axisTooltip("requests") },
        xAxis: { type: "time", show: false },
        yAxis: { type: "value", show: false, min: 0 },
        series: [{
          name: s.name, type: "line", showSymbol: false, itemStyle: { color: PALETTE[0] },
          lineStyle: { width: 1.5, color: PALETTE[0] }, areaStyle: { opacity: 0.18, color: PALETTE[0] },
          data: s.data.map(function (p) { return [p[0] * 1000, clean(p[1])]; })
        }]
      };
    }
  };

  function specFor(el) {
    var key = el.getAttribute("data-chart");
    if (pageKind === "overview") {
      var name = key.replace(/^spark-/, "");
      var exp = (data.experiments || []).filter(function (e) { return e.name === name; })[0];
      return exp ? exp.spark : null;
    }
    return lookup(data.charts || {}, key);
  }

  function draw(el) {
    var spec = specFor(el);
    var id = el.id;
    var chart = charts[id];
    if (chart && chart.getDom() !== el) {
      chart.dispose();
      chart = undefined;
      delete charts[id];
    }
    if (!spec) {
      el.classList.add("empty");
      el.setAttribute("data-empty", "no data yet");
      return;
    }
    el.classList.remove("empty");
    if (spec.kind === "forest") {
      el.style.height = Math.max(160, 44 + 26 * spec.rows.length) + "px";
    }
    if (!chart) {
      chart = echarts.init(el, null, { renderer: "canvas" });
      charts[id] = chart;
    }
    chart.setOption(BUILDERS[spec.kind](spec), { notMerge: true });
  }

  function drawAll() {
    Array.prototype.forEach.call(document.querySelectorAll("[data-chart]"), draw);
    Object.keys(charts).forEach(function (id) {
      if (!document.getElementById(id)) {
        charts[id].dispose();
        delete charts[id];
      }
    });
  }

  function showStatus(text, ok) {
    var el = document.getElementById("live-status");
    if (!el) { return; }
    el.textContent = text;
    el.className = "live " + (ok ? "ok" : "bad");
  }

  function applyFragments(fragments) {
    Object.keys(fragments || {}).forEach(function (name) {
      Array.prototype.forEach.call(document.querySelectorAll('[data-fragment="' + name + '"]'), function (el) {
        el.innerHTML = fragments[name]; // rendered and escaped by the server's templates
      });
    });
  }

  function refresh() {
    var url = api + window.location.search;
    return fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      })
      .then(function (fresh) {
        data = fresh;
        applyFragments(fresh.fragments);
        drawAll();
        state.refreshes += 1;
        state.updated = Date.now();
        showStatus("live · updated " + new Date().toLocaleTimeString(), true);
      })
      .catch(function (error) {
        state.failures += 1;
        showStatus("not updated: " + error.message, false);
      });
  }

  function schedule() {
    var every = Math.max(1, Number(data.refresh_s) || 5) * 1000;
    window.setTimeout(function tick() {
      var next = function () { window.setTimeout(tick, every); };
      if (document.hidden) { next(); return; }
      refresh().then(next, next);
    }, every);
  }

  var resizeTimer = null;
  window.addEventListener("resize", function () {
    window.clearTimeout(resizeTimer);
    resizeTimer = window.setTimeout(function () {
      Object.keys(charts).forEach(function (id) { charts[id].resize(); });
    }, 100);
  });

  drawAll();
  state.refresh = refresh;
  if (data.live !== false) {
    showStatus("live · every " + (data.refresh_s || 5) + " s", true);
    schedule();
  } else {
    showStatus("fixed range: not refreshing", true);
  }
})();
