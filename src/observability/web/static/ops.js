/* Operations UI: fetches JSON from <base>/api/... with the admin key kept in sessionStorage,
   draws charts with uPlot (vendored), refreshes without reloading the page.
   Text from the server is only ever set through textContent: never parsed as HTML. */
(function () {
  "use strict";

  var body = document.body;
  var BASE = body.dataset.base || "";
  var PAGE = body.dataset.page || "";
  var NAME = body.dataset.name || "";
  var TOKEN_KEY = "ops.token";
  var RANGE_KEY = "ops.range";
  var AUTO_KEY = "ops.auto";
  var RANGES = ["15m", "1h", "6h", "24h", "7d"];
  var PALETTE = ["#1f5fbf", "#d9480f", "#2b8a3e", "#862e9c", "#c92a2a", "#0b7285", "#5c940d", "#e67700"];
  var params = new URLSearchParams(location.search);

  var refreshSeconds = Math.max(1, Number(params.get("refresh")) || Number(body.dataset.refresh) || 30);
  var range = params.get("range") || sessionStorage.getItem(RANGE_KEY) || "1h";
  if (RANGES.indexOf(range) < 0) { range = "1h"; }
  var autoRefresh = sessionStorage.getItem(AUTO_KEY) !== "off";
  // Dashboards show the whole fleet unless one instance is picked (?instance=...).
  var instance = params.get("instance") || "";
  var timer = null;
  var fetches = 0;
  var charts = new Map();
  var inFlight = false;

  // -- helpers ---------------------------------------------------------------------------------
  function el(tag, attrs) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (key) {
        var value = attrs[key];
        if (value === undefined || value === null) { return; }
        if (key === "text") { node.textContent = String(value); }
        else if (key === "className") { node.className = value; }
        else { node.setAttribute(key, value); }
      });
    }
    for (var i = 2; i < arguments.length; i++) {
      var child = arguments[i];
      if (child === null || child === undefined) { continue; }
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  function token() { return sessionStorage.getItem(TOKEN_KEY); }

  function toLogin() {
    var next = location.pathname + location.search;
    location.assign(BASE + "/login?next=" + encodeURIComponent(next));
  }

  function api(path) {
    var t = token();
    if (!t) { toLogin(); return Promise.reject(new Error("not logged in")); }
    fetches += 1;
    body.dataset.fetches = String(fetches);
    return fetch(BASE + "/api" + path, {
      headers: { "Authorization": "Bearer " + t, "Accept": "application/json" },
      cache: "no-store",
      credentials: "omit"
    }).then(function (response) {
      if (response.status === 401 || response.status === 403) {
        sessionStorage.removeItem(TOKEN_KEY);
        toLogin();
        throw new Error("not authorised");
      }
      if (!response.ok) {
        var failure = new Error("the server answered " + response.status);
        failure.status = response.status;  // a page may explain a 404 better than a banner
        throw failure;
      }
      return response.json();
    });
  }

  function banner(message, kind) {
    var node = document.getElementById("banner");
    if (!node) { return; }
    node.hidden = !message;
    node.className = "banner" + (kind ? " " + kind : "");
    node.textContent = message || "";
  }

  // Seconds since the epoch (chart points) or an ISO 8601 string (the operator API's times).
  function fmtTime(value) {
    var d = typeof value === "number" ? new Date(value * 1000) : new Date(value);
    return d.toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }

  function human(value, units, base) {
    var i = 0;
    while (Math.abs(value) >= base && i < units.length - 1) { value /= base; i++; }
    return (Math.abs(value) >= 100 ? value.toFixed(0) : value.toFixed(1)) + " " + units[i];
  }

  function fmt(value, unit) {
    if (value === null || value === undefined || Number.isNaN(value)) { return "–"; }
    if (typeof value !== "number") { return String(value); }
    switch (unit) {
      case "reqps": return value.toFixed(value < 10 ? 2 : 1) + " req/s";
      case "ops": return value.toFixed(value < 10 ? 2 : 1) + "/s";
      case "percentunit": return (value * 100).toFixed(value < 0.1 ? 2 : 1) + "%";
      case "s": return value < 1 ? (value * 1000).toFixed(value < 0.01 ? 1 : 0) + " ms" : value.toFixed(2) + " s";
      case "ms": return value.toFixed(value < 10 ? 1 : 0) + " ms";
      case "bytes": return human(value, ["B", "KiB", "MiB", "GiB", "TiB"], 1024);
      case "Bps": return human(value, ["B/s", "KiB/s", "MiB/s", "GiB/s"], 1024);
      default:
        if (Number.isInteger(value)) { return value.toLocaleString(); }
        return Math.abs(value) >= 100 ? value.toFixed(0) : value.toFixed(2);
    }
  }

  function level(value, thresholds) {
    if (value === null || value === undefined || !thresholds || !thresholds.length) { return ""; }
    var result = "ok";
    thresholds.forEach(function (t) {
      var hit = t.below ? value < t.value : value >= t.value;
      if (hit && (t.level === "bad" || result !== "bad")) { result = t.level; }
    });
    return result;
  }

  function setUpdated() {
    var node = document.getElementById("updated");
    if (node) { node.textContent = "Updated " + new Date().toLocaleTimeString(); }
  }

  // -- charts ----------------------------------------------------------------------------------
  function thresholdPlugin(thresholds) {
    return {
      hooks: {
        draw: function (u) {
          var ctx = u.ctx;
          (thresholds || []).forEach(function (t) {
            var y = u.valToPos(t.value, "y", true);
            if (!(y >= u.bbox.top && y <= u.bbox.top + u.bbox.height)) { return; }
            ctx.save();
            ctx.strokeStyle = t.level === "bad" ? "#c62828" : "#b25e00";
            ctx.setLineDash([6, 4]);
            ctx.lineWidth = 1;
            ctx.beginPath();
            ctx.moveTo(u.bbox.left, y);
            ctx.lineTo(u.bbox.left + u.bbox.width, y);
            ctx.stroke();
            ctx.restore();
          });
        }
      }
    };
  }

  function drawChart(container, key, data, unit, thresholds) {
    var times = data.time || [];
    var series = data.series || [];
    var hasData = series.some(function (s) { return s.values.some(function (v) { return v !== null; }); });
    var old = charts.get(key);
    var signature = series.map(function (s) { return s.label; }).join("|");
    if (!hasData) {
      if (old) { old.chart.destroy(); charts.delete(key); }
      container.replaceChildren(el("p", { className: "empty", text: "No data in this range yet." }));
      return;
    }
    var columns = [times].concat(series.map(function (s) { return s.values; }));
    if (old && old.signature === signature && old.container === container) {
      old.chart.setData(columns);
      fitOnePoint(old.chart, times);
      return;
    }
    if (old) { old.chart.destroy(); }
    container.replaceChildren();
    var width = Math.max(240, container.clientWidth || 400);
    var opts = {
      width: width,
      height: 200,
      legend: { show: true },
      cursor: { drag: { x: false, y: false } },
      scales: {
        x: { time: true },
        // From zero (rates, bytes, ratios are not negative): nearby values never collapse
        // into identical tick labels, and a single value sits below the top, not on it.
        y: { range: function (u, min, max) {
          if (min === null || max === null) { return [0, 1]; }
          var low = Math.min(0, min);
          var high = max === low ? low + 1 : max;
          return uPlot.rangeNum(low, high, 0.1, true);
        } }
      },
      axes: [
        { stroke: "#5b6472", grid: { stroke: "#eef0f3" }, space: 90 },
        { stroke: "#5b6472", grid: { stroke: "#eef0f3" }, size: 84,
          values: function (u, vals) { return vals.map(function (v) { return fmt(v, unit); }); } }
      ],
      series: [{ value: function (u, v) { return v === null ? "–" : fmtTime(v); } }].concat(series.map(function (s, i) {
        return {
          label: s.label,
          stroke: PALETTE[i % PALETTE.length],
          width: 2,
          spanGaps: true,
          // A lone value between gaps draws no line: show it as a point.
          points: { show: s.values.filter(function (v) { return v !== null; }).length < 3 },
          value: function (u, v) { return fmt(v, unit); }
        };
      })),
      plugins: [thresholdPlugin(thresholds)],
      // The time span shown, for tests and for anyone inspecting a chart that looks wrong.
      hooks: { setScale: [function (u, scaleKey) {
        if (scaleKey === "x") { container.dataset.xspan = String(u.scales.x.max - u.scales.x.min); }
      }] }
    };
    var chart = new uPlot(opts, columns, container);
    fitOnePoint(chart, times);
    charts.set(key, { chart: chart, signature: signature, container: container });
  }

  // One point (a fresh instance, a sparse series): uPlot spans a single time over a thousand
  // days (its range function is not consulted then), so show five minutes around it.
  function fitOnePoint(chart, times) {
    if (times.length === 1) { chart.setScale("x", { min: times[0] - 300, max: times[0] + 300 }); }
  }

  window.addEventListener("resize", function () {
    charts.forEach(function (entry) {
      var width = Math.max(240, entry.container.clientWidth || 400);
      entry.chart.setSize({ width: width, height: 200 });
    });
  });

  // -- panels ----------------------------------------------------------------------------------
  function linkFor(kind, row, index, table) {
    if (kind === "route") { return BASE + "/routes?route=" + encodeURIComponent(String(row[0])) + "&range=" + range; }
    if (kind === "error_group" && table.keys) { return BASE + "/errors/" + encodeURIComponent(table.keys[index]); }
    return null;
  }

  // A row's link into the host's API (an experiment's results): the API wants the token, so
  // a click fetches it with the token and shows the JSON under the table.
  function resultsLink(href, text) {
    var link = el("a", { href: href, text: text, className: "results-link" });
    link.addEventListener("click", function (event) {
      event.preventDefault();
      var card = link.closest("section.card");
      var shown = card.querySelector("pre.results") || el("pre", { className: "results" });
      card.appendChild(shown);
      shown.textContent = "Loading " + href + " …";
      fetch(href, { headers: { "Authorization": "Bearer " + token(), "Accept": "application/json" }, cache: "no-store", credentials: "omit" })
        .then(function (response) { return response.json().then(function (data) { return [response.status, data]; }); })
        .then(function (answer) { shown.textContent = href + " (" + answer[0] + ")\n" + JSON.stringify(answer[1], null, 2); })
        .catch(function (failure) { shown.textContent = href + ": " + failure.message; });
    });
    return link;
  }

  function renderTable(table, unit, thresholds, kind) {
    if (!table.rows || !table.rows.length) { return el("p", { className: "empty", text: "Nothing in this range." }); }
    var valueColumn = table.value_column;
    var unitColumn = table.unit_column !== undefined ? table.unit_column : (kind === "table" ? table.columns.length - 1 : valueColumn);
    var max = 0;
    if (kind === "topn" && valueColumn !== undefined) {
      table.rows.forEach(function (row) { max = Math.max(max, Number(row[valueColumn]) || 0); });
    }
    var head = el("tr");
    table.columns.forEach(function (c) { head.appendChild(el("th", { text: c })); });
    var tbody = el("tbody");
    table.rows.forEach(function (row, index) {
      var tr = el("tr");
      row.forEach(function (cell, col) {
        var text;
        var td = el("td");
        if (typeof cell === "number") {
          td.className = "num";
          if (table.units) { text = fmt(cell, table.units[col]); }
          else if (col === unitColumn) { text = fmt(cell, unit); }
          else if (table.columns[col] === "p95 ms") { text = fmt(cell, "ms"); }
          else if (table.columns[col] === "req/s") { text = fmt(cell, "reqps"); }
          else if (table.columns[col] === "last seen") { text = fmtTime(cell); td.className = ""; }
          else { text = fmt(cell, "short"); }
          var lvl = col === unitColumn ? level(cell, thresholds) : "";
          if (lvl && lvl !== "ok") { td.className += " " + lvl; }
        } else {
          text = cell === null || cell === undefined ? "–" : String(cell);
        }
        if (col === 0 && table.hrefs && table.hrefs[index]) {
          td.appendChild(resultsLink(table.hrefs[index], text));
        } else if (col === 0 && table.link) {
          var href = linkFor(table.link, row, index, table);
          td.appendChild(href ? el("a", { href: href, text: text }) : document.createTextNode(text));
        } else if (table.columns[col] === "severity") {
          td.appendChild(el("span", { className: "sev " + text.toLowerCase(), text: text }));
        } else if (kind === "topn" && col === valueColumn && max > 0) {
          td.className += " bar";
          var fill = el("div", { className: "fill" });
          fill.style.width = Math.round(100 * (Number(cell) || 0) / max) + "%";
          td.appendChild(fill);
          td.appendChild(el("span", { text: text }));
        } else {
          td.appendChild(document.createTextNode(text));
        }
        tr.appendChild(td);
      });
      tbody.appendChild(tr);
    });
    return el("table", { className: "data" }, el("thead", null, head), tbody);
  }

  function renderStats(stats, unit, thresholds) {
    if (!stats || !stats.length) { return el("p", { className: "empty", text: "No data yet." }); }
    var box = el("div", { className: "stats" });
    stats.forEach(function (s) {
      var lvl = level(s.value, thresholds);
      box.appendChild(el("div", { className: "stat" },
        el("div", { className: "value " + lvl, text: fmt(s.value, unit) }),
        el("div", { className: "label", text: s.label })));
    });
    return box;
  }

  function panelCard(panel, key) {
    var card = document.getElementById("panel-" + key);
    if (!card) {
      card = el("section", { className: "card span-" + (panel.width || 6), id: "panel-" + key, "data-kind": panel.kind },
        el("h2", { text: panel.title }),
        el("p", { className: "desc", text: panel.description }),
        el("div", { className: "body" }));
      document.getElementById("content").appendChild(card);
    }
    return card;
  }

  function renderPanel(panel, key) {
    var card = panelCard(panel, key);
    var holder = card.querySelector(".body");
    if (panel.error) {
      holder.replaceChildren(el("p", { className: "err", text: panel.error }));
      return;
    }
    if (panel.kind === "timeseries") {
      var chartBox = holder.querySelector(".chart");
      if (!chartBox) { chartBox = el("div", { className: "chart" }); holder.replaceChildren(chartBox); }
      drawChart(chartBox, key, panel, panel.unit, panel.thresholds);
    } else if (panel.kind === "stat") {
      holder.replaceChildren(renderStats(panel.stats, panel.unit, panel.thresholds));
    } else {
      holder.replaceChildren(renderTable(panel.table, panel.unit, panel.thresholds, panel.kind));
    }
    card.dataset.loaded = "true";
  }

  // -- pages -----------------------------------------------------------------------------------
  function instanceQuery() {
    return instance ? "&instance=" + encodeURIComponent(instance) : "";
  }

  // The selector offers what the server says it can show, and marks what it shows.
  function showScope(data) {
    var select = document.getElementById("instance");
    if (!select) { return; }
    var options = [el("option", { value: "", text: "all (the fleet)" })];
    (data.instances || []).forEach(function (id) { options.push(el("option", { value: id, text: id })); });
    if (instance && (data.instances || []).indexOf(instance) < 0) {
      options.push(el("option", { value: instance, text: instance }));
    }
    select.replaceChildren.apply(select, options);
    select.value = data.instance === "all" ? "" : data.instance;
    select.parentNode.hidden = false;
  }

  function loadDashboard() {
    return api("/dashboards/" + encodeURIComponent(NAME) + "?range=" + range + instanceQuery()).then(function (data) {
      showScope(data);
      (data.panels || []).forEach(function (panel) { renderPanel(panel, panel.slug); });
      banner(data.notes && data.notes.length ? data.notes.join("; ") : "", "info");
    });
  }

  function loadRoute() {
    var route = params.get("route") || "";
    document.getElementById("page-title").textContent = "Route: " + route;
    return api("/routes?route=" + encodeURIComponent(route) + "&range=" + range + instanceQuery()).then(function (data) {
      showScope(data);
      renderPanel({ kind: "timeseries", title: "Latency p50 / p95 / p99", width: 12, unit: "s", thresholds: [],
        description: "How long this route takes. A p99 far above p50 means a few requests wait much longer: look for slow queries or lock contention.",
        time: data.latency.time, series: data.latency.series }, "route-latency");
      renderPanel({ kind: "timeseries", title: "Traffic and 5xx ratio", width: 12, unit: "short", thresholds: [],
        description: "Requests per second and the share that failed. Errors here: open Errors and filter by this route.",
        time: data.traffic.time, series: data.traffic.series }, "route-traffic");
    });
  }

  // `links` maps a column to a function item -> href (or null): that cell becomes a link.
  function genericTable(items, preferred, links) {
    if (!items || !items.length) { return el("p", { className: "empty", text: "None." }); }
    var columns = [];
    preferred.concat(Object.keys(items[0])).forEach(function (c) {
      if (columns.indexOf(c) < 0 && items.some(function (it) { return it[c] !== undefined; })) { columns.push(c); }
    });
    columns = columns.slice(0, 8);
    var head = el("tr");
    columns.forEach(function (c) { head.appendChild(el("th", { text: c })); });
    var tbody = el("tbody");
    items.forEach(function (item) {
      var tr = el("tr");
      columns.forEach(function (c) {
        var v = item[c];
        var text;
        if (v === undefined || v === null) { text = ""; }
        else if (typeof v === "number" && /(_at|_since|^at|^since)$/.test(c) && v > 1e9) { text = fmtTime(v); }
        else if (Array.isArray(v)) { text = v.map(function (x) { return typeof x === "object" ? JSON.stringify(x) : String(x); }).join(", "); }
        else { text = typeof v === "object" ? JSON.stringify(v) : String(v); }
        var href = links && links[c] && text ? links[c](item) : null;
        tr.appendChild(href ? el("td", null, el("a", { href: href, text: text, className: "row-link" })) : el("td", { text: text }));
      });
      tbody.appendChild(tr);
    });
    return el("table", { className: "data" }, el("thead", null, head), tbody);
  }

  function simpleCard(key, title, description, content) {
    var card = document.getElementById("panel-" + key);
    if (!card) {
      card = el("section", { className: "card span-12", id: "panel-" + key },
        el("h2", { text: title }), el("p", { className: "desc", text: description }), el("div", { className: "body" }));
      document.getElementById("content").appendChild(card);
    }
    card.querySelector(".body").replaceChildren(content);
    card.dataset.loaded = "true";
    return card;
  }

  function loadAlerts() {
    return api("/alerts").then(function (data) {
      if (!data.available) { banner("No alert evaluator is connected to this UI.", "info"); }
      var alertCols = ["alertname", "name", "severity", "state", "active_since", "since", "value", "summary"];
      var active = data.firing.concat(data.pending);
      function incidentLink(a) {
        var name = a.alertname || a.name;
        var twins = active.filter(function (b) { return (b.alertname || b.name) === name; }).length;
        // The name reads well and is what notifications link to; the key tells apart the
        // alerts of one rule (one per dependency, per mount...).
        var ref = twins > 1 && a.key ? a.key : name;
        return ref ? BASE + "/incidents/" + encodeURIComponent(ref) : null;
      }
      var links = { alertname: incidentLink, name: incidentLink };
      simpleCard("firing", "Firing (" + data.firing.length + ")", "Alerts whose condition held for their whole 'for' duration. Act on these first: click one for its incident evidence; docs/runbook.md has a section per alert.", genericTable(data.firing, alertCols, links));
      simpleCard("pending", "Pending (" + data.pending.length + ")", "Conditions true now but not yet for long enough. They fire if nothing changes.", genericTable(data.pending, alertCols, links));
      simpleCard("silences", "Silences (" + data.silences.length + ")", "Matchers that mute notifications until they expire.", genericTable(data.silences, ["id", "matchers", "author", "created_by", "reason", "comment", "ends_at"]));
      simpleCard("notifications", "Notification log", "What was sent, where and whether delivery succeeded.", genericTable(data.notifications, ["at", "title", "alert", "receiver", "status", "outcome", "attempts", "error"]));
    });
  }

  function loadErrors() {
    var status = params.get("status") || "open";
    return api("/errors?status=" + encodeURIComponent(status)).then(function (data) {
      if (!data.available) { banner("No error store is connected to this UI.", "info"); }
      var toolbar = el("div", { className: "toolbar" });
      ["open", "resolved", "ignored", "all"].forEach(function (s) {
        var a = el("a", { href: BASE + "/errors?status=" + s, text: s, className: "pill" });
        if (s === status) { a.setAttribute("aria-current", "page"); a.className = "pill bad"; }
        toolbar.appendChild(a);
      });
      var table = {
        columns: ["type", "message", "severity", "count", "users", "last seen", "status"],
        rows: data.groups.map(function (g) { return [g.type, g.message, g.severity, g.count, g.users, fmtTime(g.last_seen), g.status + (g.regression ? " (regression)" : "")]; }),
        keys: data.groups.map(function (g) { return g.fingerprint; }),
        link: "error_group"
      };
      simpleCard("groups", "Error groups (" + status + ")", "Exceptions grouped by fingerprint, most frequent first. Click a type for its occurrences.",
        el("div", null, toolbar, renderTable(table, "short", [], "table")));
    });
  }

  function loadErrorGroup() {
    var fingerprint = decodeURIComponent(location.pathname.split("/").pop());
    return api("/errors/" + encodeURIComponent(fingerprint)).then(function (data) {
      var g = data;
      document.getElementById("page-title").textContent = g.type + ": " + g.message;
      var meta = el("dl", { className: "meta" });
      [["severity", g.severity], ["status", g.status + (g.regression ? " (regression)" : "")], ["occurrences", String(g.count)],
       ["users", String(g.users)], ["first seen", fmtTime(g.first_seen)], ["last seen", fmtTime(g.last_seen)],
       ["routes", Object.keys(data.routes).map(function (r) { return r + " (" + data.routes[r] + ")"; }).join(", ")],
       ["fingerprint", g.fingerprint]].forEach(function (pair) {
        meta.appendChild(el("dt", { text: pair[0] }));
        meta.appendChild(el("dd", { text: pair[1] }));
      });
      simpleCard("group", "Group", "What this error is and how widespread.", meta);
      var head = el("tr");
      ["time", "request id", "route", "message", "where"].forEach(function (c) { head.appendChild(el("th", { text: c })); });
      var tbody = el("tbody");
      data.occurrences.forEach(function (o) {
        var frame = o.frames && o.frames.length ? o.frames[o.frames.length - 1] : null;
        var where = frame ? (frame.filename || frame.module || "") + ":" + (frame.lineno || "") + " " + (frame.function || "") : "";
        var rid = o.request_id ? el("a", { href: BASE + "/requests/" + encodeURIComponent(o.request_id), text: o.request_id, className: "request-link" }) : document.createTextNode("–");
        tbody.appendChild(el("tr", null,
          el("td", { className: "nowrap", text: fmtTime(o.timestamp) }), el("td", null, rid),
          el("td", { text: [o.method, o.route].filter(Boolean).join(" ") }),
          el("td", { text: o.message }), el("td", null, el("code", { text: where }))));
      });
      simpleCard("occurrences", "Occurrences (newest first)", "Sample occurrences kept by the store. Click a request id to read every log line of that request.",
        data.occurrences.length ? el("table", { className: "data" }, el("thead", null, head), tbody) : el("p", { className: "empty", text: "No samples kept." }));
    });
  }

  function shortTime(iso) {
    return String(iso || "").replace(/^\d{4}-\d{2}-\d{2}T/, "").replace(/Z$/, "");
  }

  // One request's log lines, oldest first (the request page and the incident page).
  function logTable(lines) {
    var head = el("tr");
    ["time", "level", "event", "logger", "fields"].forEach(function (c) { head.appendChild(el("th", { text: c })); });
    var tbody = el("tbody");
    var skip = ["timestamp", "level", "event", "logger", "request_id"];
    lines.forEach(function (line) {
      var rest = {};
      Object.keys(line).forEach(function (k) { if (skip.indexOf(k) < 0) { rest[k] = line[k]; } });
      if (rest.exception && Array.isArray(rest.exception.frames)) {
        // The innermost frames say where it broke; the full trace is in the error group.
        var frames = rest.exception.frames;
        rest.exception = Object.assign({}, rest.exception, { frames: frames.slice(-2), frames_omitted: Math.max(0, frames.length - 2) });
      }
      var lvl = String(line.level || "");
      var ts = String(line.timestamp || "");
      tbody.appendChild(el("tr", { className: "log-line" },
        el("td", { className: "nowrap", title: ts, text: shortTime(ts) }),
        el("td", { className: "nowrap " + (lvl === "error" || lvl === "critical" ? "bad" : (lvl === "warning" ? "warn" : "")), text: lvl }),
        el("td", { className: "nowrap", text: String(line.event || "") }), el("td", { className: "nowrap", text: String(line.logger || "") }),
        el("td", null, el("pre", { className: "log", text: JSON.stringify(rest) }))));
    });
    return el("table", { className: "data" }, el("thead", null, head), tbody);
  }

  function loadRequest() {
    var rid = decodeURIComponent(location.pathname.split("/").pop());
    document.getElementById("page-title").textContent = "Request " + rid;
    return api("/requests/" + encodeURIComponent(rid) + "/logs").then(function (data) {
      if (!data.available) { banner("No log lookup is connected to this UI.", "info"); }
      if (!data.shared) {
        simpleCard("logs", "Log lines (" + data.lines.length + ")", "Every masked log event that carried this request id, oldest first.",
          data.lines.length ? logTable(data.lines) : el("p", { className: "empty", text: "No log lines found for this request (they may have rotated away)." }));
        return;
      }
      // Clients choose X-Request-ID: several requests used this one. Each is shown apart,
      // with who sent it, so nobody's lines pass for another caller's.
      banner(data.requests.length + " different requests used this request id (it was supplied by the client): their lines are shown apart.", "info");
      data.requests.forEach(function (r, i) {
        var mine = data.lines.filter(function (line) { return String(line.span_id || "") === String(r.span_id || ""); });
        var who = "caller " + (r.principal ? "key " + r.principal : "without a key") + " from " + (r.client_ip || "unknown address") +
          (r.request_id_source === "client" ? ", id supplied by the client" : ", id generated by the server");
        simpleCard("logs-" + i, "Request " + (i + 1) + ": " + who + " (" + mine.length + " lines)", "Log lines of this one request (span " + (r.span_id || "unknown") + "), oldest first.", logTable(mine));
      });
    });
  }

  // -- incident --------------------------------------------------------------------------------
  // Only http(s) URLs and paths of this site become links: never a javascript: URL from data.
  function safeHref(url) {
    if (typeof url !== "string") { return null; }
    if (/^https?:\/\//i.test(url)) { return url; }
    return url.charAt(0) === "/" && url.charAt(1) !== "/" ? url : null;
  }

  // A link into this UI (the rule's dashboard) stays on the origin the operator is using, even
  // when the server's public base URL names another (a tunnel, a misconfigured EP_PUBLIC_BASE_URL).
  function ownHref(url) {
    var href = safeHref(url);
    if (!href) { return null; }
    var parsed = new URL(href, location.href);
    return parsed.pathname.indexOf(BASE + "/dashboards/") === 0 ? parsed.pathname + parsed.search : href;
  }

  // The body of a card, created once (kept across refreshes so a chart is updated in place).
  function cardBody(key, title, description, width) {
    var card = document.getElementById("panel-" + key);
    if (!card) {
      card = el("section", { className: "card span-" + width, id: "panel-" + key },
        el("h2", { text: title }), el("p", { className: "desc", text: description }), el("div", { className: "body" }));
      document.getElementById("content").appendChild(card);
    }
    card.querySelector("h2").textContent = title;
    card.dataset.loaded = "true";
    return card.querySelector(".body");
  }

  function metaList(pairs) {
    var meta = el("dl", { className: "meta" });
    pairs.forEach(function (pair) {
      if (pair[1] === null || pair[1] === undefined || pair[1] === "") { return; }
      meta.appendChild(el("dt", { text: pair[0] }));
      meta.appendChild(el("dd", null, typeof pair[1] === "string" ? document.createTextNode(pair[1]) : pair[1]));
    });
    return meta;
  }

  function dataTable(columns, rows) {
    var head = el("tr");
    columns.forEach(function (c) { head.appendChild(el("th", { text: c })); });
    var tbody = el("tbody");
    rows.forEach(function (cells) {
      var tr = el("tr");
      cells.forEach(function (cell) {
        if (cell instanceof Node) { tr.appendChild(el("td", null, cell)); }
        else if (typeof cell === "number") { tr.appendChild(el("td", { className: "num", text: fmt(cell, "short") })); }
        else { tr.appendChild(el("td", { text: cell === null || cell === undefined ? "–" : String(cell) })); }
      });
      tbody.appendChild(tr);
    });
    return el("table", { className: "data" }, el("thead", null, head), tbody);
  }

  function requestLink(rid) {
    return el("a", { href: BASE + "/requests/" + encodeURIComponent(rid), text: rid, className: "request-link" });
  }

  function incidentAlert(data) {
    var a = data.alert || {};
    var name = a.alertname || NAME;
    document.getElementById("page-title").textContent = "Incident: " + name;
    var labels = Object.keys(a.labels || {}).filter(function (k) { return k !== "alertname"; })
      .sort().map(function (k) { return k + "=" + a.labels[k]; }).join(", ");
    var links = el("span", { className: "links" });
    var known = data.links || {};
    [["Runbook", safeHref(known.runbook)], ["Dashboard", ownHref(known.dashboard)]].forEach(function (pair) {
      var href = pair[1];
      if (href) { links.appendChild(el("a", { href: href, text: pair[0], rel: "noopener noreferrer" })); }
    });
    var since = a.fired_at || a.active_since;
    var state = String(a.state || "") + (a.muted_by && a.muted_by.length ? " (silenced)" : "") + (a.flapping ? " (flapping)" : "");
    cardBody("alert", "Alert", "What fired, since when, and where the runbook and the dashboard are.", 12).replaceChildren(metaList([
      ["alert", name],
      ["state", el("span", { className: "state " + (a.state === "firing" ? "bad" : "warn"), text: state })],
      ["severity", el("span", { className: "sev " + String(a.severity || "").toLowerCase(), text: String(a.severity || "") })],
      ["since", typeof since === "number" ? fmtTime(since) : "–"],
      ["summary", a.summary],
      ["labels", labels],
      ["links", links.childNodes.length ? links : null],
      ["evidence from", fmtTime(data.since) + " to " + fmtTime(data.gathered_at)]
    ]));
  }

  // Thresholds such as 0.001 (an error budget) must not round to 0.00.
  function exact(value) {
    return typeof value === "number" ? String(Number(value.toPrecision(4))) : "–";
  }

  function incidentMetric(data) {
    var m = data.metric;
    var body = cardBody("metric", "Metric that breached", "The alert's query re-evaluated over the evidence window, against its threshold.", 12);
    if (!m) {
      body.replaceChildren(el("p", { className: "empty", text: "No rule definition for this alert: no metric to show." }));
      return;
    }
    var line = body.querySelector(".metric-line");
    var chartBox = body.querySelector(".chart");
    if (!line || !chartBox) {
      line = el("p", { className: "metric-line" });
      chartBox = el("div", { className: "chart" });
      body.replaceChildren(line, chartBox);
    }
    line.replaceChildren(el("strong", { className: "metric-query", text: m.query }), ": value ",
      el("span", { className: "bad", text: exact(m.value) }),
      " " + m.comparison + " threshold " + exact(m.threshold) + " (steps of " + m.resolution_s + " s)");
    var curve = m.curve || [];
    var series = [{ label: m.query, values: curve.map(function (p) { return p.value; }) }];
    if (m.threshold !== null && m.threshold !== undefined) {
      // A series rather than a drawn line: the y scale then always includes the threshold.
      series.push({ label: "threshold (" + m.comparison + " " + exact(m.threshold) + ")", values: curve.map(function () { return m.threshold; }) });
    }
    drawChart(chartBox, "incident-metric", { time: curve.map(function (p) { return p.t; }), series: series }, "short", []);
  }

  function groupRows(groups) {
    return groups.map(function (g) {
      var routes = Object.keys(g.routes || {}).sort(function (x, y) { return g.routes[y] - g.routes[x]; }).slice(0, 3).join(", ");
      var tag = g.new ? el("span", { className: "pill new", text: "new" }) : g.spiking ? el("span", { className: "pill new", text: "spiking" }) : null;
      var type = el("span", null, el("a", { href: BASE + "/errors/" + encodeURIComponent(g.fingerprint), text: g.type, className: "error-link" }), tag);
      return [type, g.message, el("span", { className: "sev " + String(g.severity).toLowerCase(), text: g.severity }),
        g.during === null || g.during === undefined ? "–" : g.during, g.count, routes || "–",
        g.first_request_id ? requestLink(g.first_request_id) : "–"];
    });
  }

  function incidentErrors(data) {
    var columns = ["type", "message", "severity", "since onset", "total", "routes", "first request"];
    var groups = data.error_groups || [];
    var earlier = data.earlier_error_groups || [];
    cardBody("error-groups", "Top error groups (" + groups.length + ")", "Error groups new or spiking since the incident began, most occurrences since then first. Click a type for its occurrences.", 12).replaceChildren(
      groups.length ? dataTable(columns, groupRows(groups)) : el("p", { className: "empty", text: "No error group is new or spiking since the incident began." }));
    var card = document.getElementById("panel-earlier-groups");
    if (!earlier.length) { if (card) { card.remove(); } return; }
    cardBody("earlier-groups", "Earlier error groups (" + earlier.length + ")", "Groups that predate the incident and did not spike: context, not the cause.", 12).replaceChildren(
      dataTable(columns, groupRows(earlier)));
  }

  function changeValue(value, unit) {
    if (value === null || value === undefined) { return "–"; }
    if (unit === "ms") { return fmt(value, "ms"); }
    if (unit === "ratio") { return fmt(value, "percentunit"); }
    if (unit === "s") { return value.toFixed(0) + " s"; }
    return String(Number(value.toPrecision(4)));
  }

  function changeRows(rows) {
    return rows.map(function (r) {
      var mark = r.changed ? el("span", { className: "state bad", text: "changed" }) : el("span", { className: "state", text: "steady" });
      return [r.subject, r.measure, changeValue(r.before, r.unit), changeValue(r.after, r.unit),
        typeof r.onset === "number" ? fmtTime(r.onset) : "–", mark];
    });
  }

  function incidentHeadline(data) {
    var lines = data.headline || [];
    var list = el("ul", { className: "headline" });
    lines.forEach(function (line) { list.appendChild(el("li", { text: line })); });
    var timedOut = data.timed_out || [];
    var partial = timedOut.length ? el("p", { className: "bad partial", text: "Partial: " + timedOut.join(", ") + " timed out (its source answers slowly); the rest is shown." }) : null;
    cardBody("headline", "What changed most", "Against a baseline window before the incident: dependencies first, then routes and error groups.", 12).replaceChildren(list, partial || el("span"));
  }

  function incidentDependencies(data) {
    var deps = data.dependencies || [];
    cardBody("dependencies", "Dependencies", "Each dependency's own signals before and during the incident, the most changed first.", 12).replaceChildren(
      deps.length ? dataTable(["dependency", "measure", "before", "during", "since", ""], changeRows(deps)) : el("p", { className: "empty", text: "No dependency signal is known here." }));
  }

  function incidentRouteChanges(data) {
    var rows = data.route_changes || [];
    cardBody("route-changes", "Routes that changed most", "Routes whose p95 or 5xx ratio rose most against the baseline window.", 12).replaceChildren(
      rows.length ? dataTable(["route", "measure", "before", "during", "since", ""], changeRows(rows)) : el("p", { className: "empty", text: "No route's p95 or 5xx ratio rose against the baseline." }));
  }

  function incidentSlowQueries(data) {
    var rows = data.slow_queries || [];
    var card = document.getElementById("panel-slow-queries");
    if (!rows.length) { if (card) { card.remove(); } return; }
    cardBody("slow-queries", "Slow queries (" + rows.length + ")", "Statements slower than the slow-query threshold since the incident began (shapes: values replaced by ?).", 12).replaceChildren(
      dataTable(["statement", "operation", "count", "slowest", "last seen"], rows.map(function (q) {
        return [el("code", { text: q.statement }), q.operation, q.count, fmt(q.max_ms, "ms"), el("span", { className: "nowrap", title: q.last_seen, text: shortTime(q.last_seen) })];
      })));
  }

  // The evidence may take a couple of seconds when a store is slow: say so instead of blank.
  function incidentLoading() {
    if (document.getElementById("panel-headline") || document.getElementById("panel-loading")) { return; }
    document.getElementById("content").appendChild(el("section", { className: "card span-12", id: "panel-loading" },
      el("h2", { text: "Gathering evidence\u2026" }),
      el("p", { className: "desc", text: "Reading the rolling windows first, then the error store and the logs; each part has a time limit and a slow one is named when it misses it." })));
  }

  function routeRows(routes) {
    return routes.map(function (r) {
      var link = el("a", { href: BASE + "/routes?route=" + encodeURIComponent(r.route) + "&range=1h", text: r.route });
      return [link, r.requests, r.errors_5xx, fmt(r.error_rate, "percentunit"),
        r.p95_ms === null ? "–" : fmt(r.p95_ms, "ms"), r.p99_ms === null ? "–" : fmt(r.p99_ms, "ms")];
    });
  }

  function incidentRoutes(data) {
    var columns = ["route", "requests", "5xx", "error rate", "p95", "p99"];
    var failing = data.failing_routes || [];
    var slowest = data.slowest_routes || [];
    cardBody("failing-routes", "Most failing routes", "Routes with the most 5xx responses in the evidence window.", 6).replaceChildren(
      failing.length ? dataTable(columns, routeRows(failing)) : el("p", { className: "empty", text: "No route answered 5xx in this window." }));
    cardBody("slowest-routes", "Slowest routes", "Routes by p95 latency in the evidence window.", 6).replaceChildren(
      slowest.length ? dataTable(columns, routeRows(slowest)) : el("p", { className: "empty", text: "No traffic in this window." }));
  }

  function incidentRequests(data) {
    var requests = data.failing_requests || [];
    var box = el("div");
    requests.forEach(function (r) {
      box.appendChild(el("div", { className: "sample" },
        el("p", { className: "sample-head" }, requestLink(r.request_id), " " + (r.route || "") + (r.status ? " status " + r.status : "")),
        r.lines && r.lines.length ? logTable(r.lines) : el("p", { className: "empty", text: "No log lines kept." })));
    });
    cardBody("failing-requests", "Sample failing requests (" + requests.length + ")", "Requests that logged an error, with every log line each wrote. Click a request id for its full log.", 12).replaceChildren(
      requests.length ? box : el("p", { className: "empty", text: "No request logged an error in this window." }));
  }

  function incidentChanges(data) {
    var changes = data.config_changes || [];
    cardBody("config-changes", "Recent configuration changes (" + changes.length + ")", "Experiments, flags, faults and restarts logged in the last hour, oldest first.", 8).replaceChildren(
      changes.length ? dataTable(["time", "event", "change"], changes.map(function (c) {
        var fields = Object.keys(c.fields || {}).map(function (k) {
          var v = c.fields[k];
          return k + "=" + (typeof v === "object" ? JSON.stringify(v) : String(v));
        }).join(", ");
        return [el("span", { className: "nowrap", title: c.timestamp, text: shortTime(c.timestamp) }), c.event, fields];
      })) : el("p", { className: "empty", text: "No configuration change in the last hour." }));
  }

  function incidentNotes(data) {
    var notes = data.notes || [];
    var card = document.getElementById("panel-notes");
    if (!notes.length) { if (card) { card.remove(); } return; }
    var list = el("ul");
    notes.forEach(function (n) { list.appendChild(el("li", { text: n })); });
    cardBody("notes", "Notes", "Sources that were missing or could not be read: the evidence above lacks them.", 12).replaceChildren(list);
  }

  function incidentNotFound() {
    charts.forEach(function (entry) { entry.chart.destroy(); });
    charts.clear();
    document.getElementById("page-title").textContent = "Unknown alert: " + NAME;
    var card = el("section", { className: "card span-12", id: "panel-not-found" },
      el("h2", { text: "No such alert" }),
      el("p", { className: "not-found", text: "This instance knows no alert named \u201c" + NAME + "\u201d. It may have resolved and been forgotten, fired on another instance, or the name is mistyped." }),
      el("p", null, el("a", { href: BASE + "/alerts", text: "See the firing and pending alerts" })));
    document.getElementById("content").replaceChildren(card);
  }

  function loadIncident() {
    incidentLoading();
    function loaded() {
      var loading = document.getElementById("panel-loading");
      if (loading) { loading.remove(); }
    }
    return api("/incidents/" + encodeURIComponent(NAME)).then(function (data) {
      loaded();
      if (!data.available) { banner("No incident evidence is connected to this UI.", "info"); return; }
      var gone = document.getElementById("panel-not-found");
      if (gone) { gone.remove(); }
      // What changed most first: the order an on-call person reads it in.
      incidentHeadline(data);
      incidentAlert(data);
      incidentDependencies(data);
      incidentMetric(data);
      incidentRouteChanges(data);
      incidentSlowQueries(data);
      incidentErrors(data);
      incidentRoutes(data);
      incidentRequests(data);
      incidentChanges(data);
      incidentNotes(data);
    }, function (err) {
      loaded();
      if (err.status !== 404) { throw err; }
      incidentNotFound();
    });
  }

  var LOADERS = { dashboard: loadDashboard, route: loadRoute, alerts: loadAlerts, errors: loadErrors, error: loadErrorGroup, request: loadRequest, incident: loadIncident };

  function refresh() {
    var loader = LOADERS[PAGE];
    if (!loader || inFlight) { return; }
    inFlight = true;
    loader().then(function () {
      setUpdated();
      var node = document.getElementById("banner");
      if (node && node.className === "banner") { banner(""); }
    }).catch(function (err) {
      if (token()) { banner("Could not load data: " + err.message); }
    }).then(function () { inFlight = false; });
  }

  function schedule() {
    if (timer) { clearInterval(timer); timer = null; }
    if (autoRefresh) { timer = setInterval(refresh, refreshSeconds * 1000); }
  }

  function setupControls() {
    var controls = document.getElementById("controls");
    if (!controls) { return; }
    controls.hidden = false;
    // Only charts have a time range; lists of groups, logs and alerts are "now".
    controls.querySelector(".ranges").hidden = PAGE !== "dashboard" && PAGE !== "route";
    controls.querySelectorAll("button[data-range]").forEach(function (button) {
      button.setAttribute("aria-pressed", String(button.dataset.range === range));
      button.addEventListener("click", function () {
        range = button.dataset.range;
        sessionStorage.setItem(RANGE_KEY, range);
        params.set("range", range);
        history.replaceState(null, "", location.pathname + "?" + params.toString());
        controls.querySelectorAll("button[data-range]").forEach(function (b) {
          b.setAttribute("aria-pressed", String(b.dataset.range === range));
        });
        refresh();
      });
    });
    var picker = document.getElementById("instance");
    if (picker) {
      picker.addEventListener("change", function () {
        instance = picker.value;
        if (instance) { params.set("instance", instance); } else { params.delete("instance"); }
        history.replaceState(null, "", location.pathname + "?" + params.toString());
        refresh();
      });
    }
    var box = document.getElementById("auto-refresh");
    box.checked = autoRefresh;
    document.getElementById("refresh-every").textContent = "(" + refreshSeconds + " s)";
    box.addEventListener("change", function () {
      autoRefresh = box.checked;
      sessionStorage.setItem(AUTO_KEY, autoRefresh ? "on" : "off");
      schedule();
    });
    document.getElementById("logout").addEventListener("click", function () {
      sessionStorage.removeItem(TOKEN_KEY);
      location.assign(BASE + "/login");
    });
  }

  function setupLogin() {
    var form = document.getElementById("login-form");
    var error = document.getElementById("login-error");
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var value = document.getElementById("token").value.trim();
      if (!value) { return; }
      fetch(BASE + "/api/session", { headers: { "Authorization": "Bearer " + value }, cache: "no-store", credentials: "omit" })
        .then(function (response) {
          if (!response.ok) { throw new Error(response.status === 401 || response.status === 403 ? "That key was not accepted." : "The server answered " + response.status + "."); }
          sessionStorage.setItem(TOKEN_KEY, value);
          var next = params.get("next") || "";
          // Only same-app paths: never an open redirect to another origin.
          if (next.indexOf(BASE + "/") !== 0 || next.indexOf("//") === 0) { next = BASE + "/"; }
          location.assign(next);
        })
        .catch(function (err) { error.hidden = false; error.textContent = err.message; });
    });
  }

  function start() {
    if (PAGE === "login") { setupLogin(); return; }
    if (!token()) { toLogin(); return; }
    setupControls();
    refresh();
    schedule();
  }

  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); }
  else { start(); }
}());
