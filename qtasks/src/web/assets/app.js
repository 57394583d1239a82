// qtasks dashboard: live updates. Every page works without this script;
// it listens to the server-sent events of /api/events (one poller on the
// server feeds every browser) and patches the page in place.
(() => {
  "use strict";
  const base = document.body.dataset.base || "";
  const light = document.getElementById("live");
  const rendered = parseFloat(document.body.dataset.rendered || "0");
  if (!window.EventSource) return;

  const fmt = (ts) => new Date(ts * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC";

  function badge(status) {
    const span = document.createElement("span");
    span.className = "status status-" + status;
    span.dataset.status = status;
    span.textContent = status;
    return span;
  }

  function cell(text) {
    const td = document.createElement("td");
    if (text instanceof Node) td.appendChild(text); else td.textContent = text;
    return td;
  }

  function row(t) {
    const tr = document.createElement("tr");
    tr.dataset.uuid = t.uuid;
    tr.dataset.created = String(t.created_at);
    const a = document.createElement("a");
    a.className = "uuid";
    a.href = base + "/tasks/" + t.uuid;
    a.textContent = t.uuid;
    tr.append(cell(a), cell(t.task_name), cell(t.queue), cell(badge(t.status)), cell(String(t.attempt)),
      cell(fmt(t.created_at)), cell(fmt(t.updated_at)));
    tr.lastChild.dataset.field = "updated_at";
    tr.classList.add("fresh");
    return tr;
  }

  function mergeTasks(table, recent) {
    const f = table.dataset;
    const body = table.tBodies[0];
    const matches = (t) => (!f.status || t.status === f.status) && (!f.name || t.task_name === f.name)
      && (!f.queue || t.queue === f.queue);
    const top = body.rows.length ? parseFloat(body.rows[0].dataset.created) : -Infinity;
    const fresh = [];
    for (const t of recent) {
      const tr = body.querySelector(`tr[data-uuid="${t.uuid}"]`);
      if (tr) {
        if (!matches(t)) { tr.remove(); continue; }
        const old = tr.querySelector("[data-status]");
        if (old && old.dataset.status !== t.status) old.replaceWith(badge(t.status));
        const up = tr.querySelector('[data-field="updated_at"]');
        if (up) up.textContent = fmt(t.updated_at);
      } else if (matches(t) && t.created_at >= top) {
        fresh.push(t);
      }
    }
    for (const t of fresh.reverse()) body.insertBefore(row(t), body.firstChild);
    const limit = parseInt(f.limit || "50", 10);
    while (body.rows.length > limit) body.deleteRow(body.rows.length - 1);
    const empty = document.querySelector("p.empty");
    if (empty && body.rows.length) empty.remove();
  }

  // The throughput chart, as the server draws it (pages.rs, `chart`).
  function drawChart(el, minutes) {
    const top = Math.max(1, ...minutes.map((m) => m.finished));
    let svg = `<svg class="chart" viewBox="0 0 600 100" preserveAspectRatio="none" role="img" aria-label="runs per minute" data-max="${top}">`;
    minutes.forEach((m, i) => {
      const h = (m.finished / top) * 96, f = (m.failed / top) * 96, x = i * 10;
      svg += `<rect class="ok" x="${x}" y="${(100 - h).toFixed(1)}" width="8" height="${h.toFixed(1)}"><title>${Number(m.finished)} ended, ${Number(m.failed)} failed</title></rect>`
        + `<rect class="failed" x="${x}" y="${(100 - f).toFixed(1)}" width="8" height="${f.toFixed(1)}"></rect>`;
    });
    el.innerHTML = svg + `</svg><span class="meta">peak ${top} per minute</span>`;
  }

  function apply(s) {
    const o = s.overview;
    const chart = document.getElementById("throughput");
    if (chart && o.throughput && o.throughput.length) drawChart(chart, o.throughput);
    document.querySelectorAll("[data-live]").forEach((el) => {
      if (el.tagName === "TABLE") return;
      let v = o;
      for (const p of el.dataset.live.split(".")) v = v == null ? undefined : v[p];
      if (v === undefined) return;
      el.textContent = el.dataset.format === "percent" ? (v * 100).toFixed(1) + "%" : String(v);
    });
    for (const q of o.queues) {
      const tr = document.querySelector(`tr[data-queue="${CSS.escape(q.name)}"]`);
      if (!tr) continue;
      const set = (k, v) => { const td = tr.querySelector(`[data-field="${k}"]`); if (td) td.textContent = v; };
      set("depth", q.depth);
      set("delayed", q.delayed);
      set("in_flight", q.in_flight);
      set("paused", q.paused ? "yes" : "no");
      set("oldest_age", q.oldest_age == null ? "-" : q.oldest_age.toFixed(1) + " s");
    }
    const table = document.getElementById("tasks");
    if (table && table.dataset.live === "true") mergeTasks(table, s.recent);
    const detail = document.getElementById("task");
    if (detail) {
      const t = s.recent.find((r) => r.uuid === detail.dataset.uuid);
      const shown = document.querySelector("#task-status [data-status]");
      // A new status can bring a result, an error and other actions: the
      // page is re-rendered by the server.
      if (t && shown && shown.dataset.status !== t.status) location.reload();
    }
  }

  const events = new EventSource(base + "/api/events");
  events.addEventListener("open", () => light && light.classList.add("on"));
  events.addEventListener("error", () => light && light.classList.remove("on"));
  events.addEventListener("snapshot", (e) => {
    let s;
    try { s = JSON.parse(e.data); } catch (_) { return; }
    if (light) light.title = s.error ? "live updates: " + s.error : "live updates";
    // A snapshot read before this page was rendered may be older than it.
    if (!s.error && !(s.at < rendered)) apply(s);
  });
})();
