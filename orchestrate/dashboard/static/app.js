// The distproc dashboard: renders the snapshots the server streams (server-sent events).
// It reads only the snapshot's documented keys (orchestrate/dashboard/live.py) and changes
// nothing except through the three POST actions, each carrying the token in a header.
"use strict";

const TOKEN_HEADER = "X-Distproc-Token";
const STALE_AFTER_MS = 3000; // the server sends at least once a second
const $ = (id) => document.getElementById(id);

const dash = { token: "", snapshot: null, cy: null, chart: null, topologyKey: "",
               lastMessage: 0, source: null, formFilled: false };
window.dashboard = dash; // for the browser tests (and a curious reader's console)

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

// -- the token and the session -------------------------------------------------------------
function takeToken() {
  const m = location.hash.match(/token=([^&]+)/);
  if (m) {
    sessionStorage.setItem("distproc-token", decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname); // the token leaves the address bar
  }
  return sessionStorage.getItem("distproc-token") || "";
}

async function post(path, body) {
  const res = await fetch(path, {
    method: "POST", credentials: "same-origin", cache: "no-store",
    headers: { [TOKEN_HEADER]: dash.token, "Content-Type": "application/json" },
    body: JSON.stringify(body || {}),
  });
  let data = {};
  try { data = await res.json(); } catch (e) { /* no body */ }
  if (!res.ok) throw new Error(data.error || `${res.status} ${res.statusText}`);
  return data;
}

async function login(token) {
  dash.token = token;
  try {
    await post("/api/session");
  } catch (e) {
    sessionStorage.removeItem("distproc-token");
    $("login").hidden = false;
    $("main").hidden = true;
    $("login-error").textContent = `refused: ${e.message}`;
    return;
  }
  sessionStorage.setItem("distproc-token", token);
  $("login").hidden = true;
  $("main").hidden = false;
  listen();
}

function listen() {
  if (dash.source) dash.source.close();
  dash.source = new EventSource("/api/events");
  dash.source.addEventListener("state", (ev) => {
    dash.lastMessage = Date.now();
    render(JSON.parse(ev.data));
  });
}

function liveness() {
  const live = $("live");
  const age = Date.now() - dash.lastMessage;
  if (!dash.lastMessage) { live.dataset.live = "no"; live.textContent = "connecting…"; }
  else if (age > STALE_AFTER_MS) {
    live.dataset.live = "stale";
    live.textContent = `no update for ${Math.round(age / 1000)} s`;
  } else { live.dataset.live = "yes"; live.textContent = "live"; }
}

// -- rendering -----------------------------------------------------------------------------
function render(s) {
  dash.snapshot = s;
  $("cluster-name").textContent = `${s.cluster.name} (${s.cluster.backend})`;
  $("health").textContent = s.health.state;
  $("health").dataset.state = s.health.state;
  $("health-detail").textContent = s.health.detail;
  renderTopology(s);
  renderWorkers(s);
  renderJob(s);
  renderChecks(s);
  renderControls(s);
  const p = s.poll || {};
  const reqs = Object.entries(p.requests || {}).map(([k, v]) => `${k} ${v}`).join(", ");
  $("poll").textContent = `one poll every ${p.period} s for ${p.clients} open page(s); ` +
    `last took ${p.duration} s; ${p.polls} polls, requests: ${reqs || "none"}`;
}

const STYLE = [
  { selector: "node", style: { label: "data(label)", "text-wrap": "wrap", "font-size": 10,
    "text-valign": "center", "text-halign": "center", shape: "round-rectangle",
    "background-color": "#fff", "border-width": 2, "border-color": "#8c959f" } },
  { selector: "node[w]", style: { width: "data(w)", height: "data(h)" } },
  { selector: "node[kind='master']", style: { "background-color": "#ffe0a0" } },
  { selector: "node[kind='network']", style: { shape: "ellipse", "background-color": "#ddf4ff",
    "border-color": "#54aeff" } },
  { selector: "node[kind='machine']", style: { "background-color": "#f6f8fa",
    "border-style": "dashed", "text-valign": "top", "font-weight": "bold", padding: "14px" } },
  { selector: "node.working", style: { "border-color": "#1a7f37", "border-width": 3 } },
  { selector: "node.idle, node.up", style: { "border-color": "#0969da" } },
  { selector: "node.connecting", style: { "border-color": "#bf8700", "border-style": "dashed" } },
  { selector: "node.gone", style: { opacity: 0.45, "border-style": "dotted" } },
  { selector: "edge", style: { width: 1.5, "line-color": "#8c959f", "curve-style": "bezier" } },
];

// A node's box from its label (10 px font): explicit sizes, measured once, whatever the page's
// visibility when the elements arrive.
function sized(e) {
  if (e.data.source || e.data.kind === "machine") return e;
  const lines = e.data.label.split("\n");
  const pad = e.data.kind === "network" ? 30 : 16;
  const w = Math.max(...lines.map((l) => l.length)) * 6 + pad;
  return { ...e, data: { ...e.data, w, h: lines.length * 13 + pad - 4 } };
}

function renderTopology(s) {
  const t = s.topology;
  $("machines").textContent = s.machines.multi
    ? `on ${s.machines.nodes.length} machines` : (s.machines.nodes[0] ? `on ${s.machines.nodes[0].name}` : "");
  if (t.key === dash.topologyKey) return;
  dash.topologyKey = t.key;
  const boxes = t.elements.some((e) => e.data.kind === "machine");
  if (!dash.cy) {
    dash.cy = cytoscape({ container: $("topology"), style: STYLE, elements: [],
                          autoungrabify: true });
  }
  dash.cy.elements().remove();
  dash.cy.add(t.elements.map(sized));
  // columns as `orchestrate graph` draws them; machine boxes span columns: laid out by force
  dash.cy.layout(boxes ? { name: "cose", animate: false, nodeDimensionsIncludeLabels: true,
                           idealEdgeLength: () => 90, nodeRepulsion: () => 12000, padding: 16 }
                       : { name: "preset", fit: true, padding: 20 }).run();
  const list = $("topology-text");
  list.replaceChildren(...t.elements.filter((e) => !e.data.source).map((e) =>
    el("li", { "data-node": e.data.id, "data-state": e.classes || "" },
       e.data.label.replaceAll("\n", " · ") + (e.classes ? ` [${e.classes}]` : ""))));
}

function renderWorkers(s) {
  const multi = s.machines.multi;
  document.querySelectorAll(".machine-col").forEach((c) => { c.hidden = !multi; });
  const rows = s.workers.map((w) => {
    const addrs = Object.entries(w.addresses).map(([n, ip]) => `${ip} (${n})`).join(", ")
      || (w.peers || []).join(", ") || "-";
    const machine = el("td", { class: "machine-col" }, w.machine || "-");
    machine.hidden = !multi;
    return el("tr", { "data-worker": w.name, "data-state": w.state },
      el("td", {}, w.name + (w.managed ? "" : " (joined by hand)")),
      el("td", {}, w.group || "-"), machine, el("td", {}, addrs),
      el("td", { class: "state", title: w.container_state || "" }, w.state),
      el("td", { class: "python" }, w.python || "?"),
      el("td", { class: "num tasks" }, w.tasks), el("td", { class: "num rate" }, w.rate.toFixed(1)),
      el("td", { class: "num leased" }, w.leased));
  });
  $("workers").tBodies[0].replaceChildren(...rows);
}

function renderJob(s) {
  const j = s.job;
  const pct = j && j.total ? Math.floor((100 * j.done) / j.total) : (j ? 100 : 0);
  $("progress-fill").style.width = `${pct}%`;
  $("progress").setAttribute("aria-valuenow", String(pct));
  $("progress").dataset.pct = String(pct);
  if (!j) {
    $("job-id").textContent = "none yet";
    $("progress-text").textContent = "no job";
  } else {
    const spec = j.spec || {};
    $("job-id").textContent = `${j.job}: ${spec.kind || "?"} ×${j.total}, ${spec.protocol || "?"}` +
      (j.finished ? " (ended)" : " (running)");
    $("progress-text").textContent = `${j.done}/${j.total} (${pct}%)`;
  }
  const counts = ["ok", "failed", "dead", "lost", "duplicates"].map((k) =>
    el("div", { "data-count": k }, el("dt", {}, k), el("dd", {}, j ? j[k] : 0)));
  $("counts").replaceChildren(...counts);
  renderChart(s);
  $("events").replaceChildren(...s.events.slice().reverse().map((m) =>
    el("li", { "data-kind": m.kind }, `${new Date(m.t * 1000).toLocaleTimeString()} ${m.label}`)));
}

// Event marks: a vertical line at each event's time, drawn on the chart's canvas.
function marksPlugin() {
  return {
    hooks: {
      draw: (u) => {
        const evs = (dash.snapshot && dash.snapshot.events) || [];
        const [lo, hi] = [u.scales.x.min, u.scales.x.max];
        const ctx = u.ctx;
        let drawn = 0;
        ctx.save();
        ctx.setLineDash([5, 4]);
        ctx.font = `${11 * devicePixelRatio}px system-ui`;
        for (const m of evs) {
          if (lo == null || m.t < lo || m.t > hi) continue;
          const x = Math.round(u.valToPos(m.t, "x", true));
          ctx.strokeStyle = m.kind === "worker" ? "#cf222e" : m.kind === "job" ? "#0969da" : "#8250df";
          ctx.beginPath();
          ctx.moveTo(x, u.bbox.top);
          ctx.lineTo(x, u.bbox.top + u.bbox.height);
          ctx.stroke();
          ctx.fillStyle = ctx.strokeStyle;
          // the label on the side of the line with room for it
          const right = x + ctx.measureText(m.label).width + 8 < u.bbox.left + u.bbox.width;
          ctx.textAlign = right ? "left" : "right";
          ctx.textBaseline = "top";
          ctx.fillText(m.label, right ? x + 4 : x - 4,
                       u.bbox.top + 13 * devicePixelRatio * (drawn % 3));
          drawn += 1;
        }
        ctx.restore();
        $("chart").dataset.marks = String(drawn);
      },
    },
  };
}

function renderChart(s) {
  const xs = s.series.t.slice();
  const ys = s.series.rate.slice();
  // the chart spans the job and the events since it started, so a mark is always in view
  const since = xs.length ? xs[0] : null;
  const marks = s.events.filter((m) => since !== null && m.t >= since - 2);
  const data = [xs, ys];
  if (!dash.chart) {
    const width = Math.max(300, $("chart").clientWidth || 500);
    dash.chart = new uPlot({
      width, height: 200, plugins: [marksPlugin()],
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
      axes: [{ space: 80, values: (u, vals) => vals.map((v) => new Date(v * 1000).toLocaleTimeString()) },
             { label: "tasks/s" }],
      series: [{}, { label: "throughput", stroke: "#1a7f37", width: 2, fill: "rgba(26,127,55,.08)" }],
    }, data, $("chart"));
  } else {
    dash.chart.setData(data);
  }
  if (xs.length && marks.length) {
    const hi = Math.max(xs[xs.length - 1], ...marks.map((m) => m.t)) + 1;
    dash.chart.setScale("x", { min: Math.min(xs[0], ...marks.map((m) => m.t)) - 1, max: hi });
  }
}

function renderChecks(s) {
  const c = s.checks;
  $("checks-source").textContent = c.items.length
    ? `${c.source}${c.stale ? " (a newer job is running)" : ""}` : "none yet";
  $("checks").classList.toggle("stale", !!c.stale);
  $("checks").tBodies[0].replaceChildren(...c.items.map((k) =>
    el("tr", { "data-check": k.name, "data-status": k.status },
       el("td", {}, k.name), el("td", { class: "verdict" }, k.status),
       el("td", { class: "evidence" }, k.evidence))));
}

function fillForm(s) {
  const f = s.form;
  for (const name of ["kind", "protocol"]) {
    const select = $(`f-${name}`);
    select.replaceChildren(...f.choices[name].map((v) => el("option", { value: v }, v)));
    select.value = f.defaults[name];
  }
  $("f-tasks").value = f.defaults.tasks;
  $("f-size").value = f.defaults.size ?? "";
  dash.formFilled = true;
}

function renderControls(s) {
  if (!dash.formFilled) fillForm(s);
  const a = s.action;
  const running = !!(s.job && !s.job.finished);
  const up = s.health.state === "up" || s.health.state === "partly up";
  $("start-job").disabled = a.running || running || !up;
  $("run-check").disabled = a.running || running || !up;
  $("cancel-job").disabled = !running;
  $("action-message").textContent = a.message || "";
  $("action-error").textContent = a.error || "";
}

// -- actions -------------------------------------------------------------------------------
async function act(path, body) {
  $("action-error").textContent = "";
  try {
    const r = await post(path, body);
    $("action-message").textContent = r.warnings && r.warnings.length
      ? `started; warning: ${r.warnings.join("; ")}` : "requested";
  } catch (e) {
    $("action-error").textContent = `refused: ${e.message}`;
  }
}

function init() {
  $("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    login($("token-input").value.trim());
  });
  $("job-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const f = new FormData(ev.target);
    act("/api/job", Object.fromEntries([...f.entries()].map(([k, v]) => [k, String(v).trim()])));
  });
  $("cancel-job").addEventListener("click", () => act("/api/cancel"));
  $("run-check").addEventListener("click", () => act("/api/check"));
  setInterval(liveness, 500);
  const token = takeToken();
  if (token) login(token); else $("login").hidden = false;
}

document.addEventListener("DOMContentLoaded", init);
