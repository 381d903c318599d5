// The status page: draws /status as this node sees it and redraws it every
// two seconds. Every name shown comes from gossip, so text only ever goes
// in through textContent, and class names only from the list of phases.
"use strict";

const PHASES = ["preflight", "installing", "discovering", "electing", "waiting-cluster",
  "standby", "waiting-join-slot", "starting", "waiting-vip", "ready", "failed"];
const WAITING = new Set(["discovering", "electing", "waiting-cluster", "standby", "waiting-join-slot"]);

// What to look at when a host failed, by the phase it failed in.
const HINTS = {
  "preflight": "Run `rke2-hanode preflight` on the host, fix what it names, then restart the service.",
  "installing": "Check install-script-url or artifact-path and the host's network; the install is retried with backoff.",
  "discovering": "Check that join lists the servers, that gossip-port (tcp and udp) is open between hosts, and that token and cluster-name match.",
  "electing": "Check raft-port between the servers and that every server has the same expect-servers.",
  "waiting-cluster": "Check that the VIP answers on port 9345 (kube-vip on the bootstrap server) and the vip and interface keys.",
  "standby": "The leader keeps this server out until one more voter would not make an even count (or max-servers allows it); its status says what it waits for.",
  "waiting-join-slot": "The raft leader hands out the join slot; look at the slot holder's progress.",
  "starting": "Look at the RKE2 service: journalctl -u rke2-server (or rke2-agent) on the host.",
  "waiting-vip": "kube-vip has not brought up the VIP: check its pod on the bootstrap server and the vip and interface keys.",
};

function phaseClass(p) {
  return "phase-" + (PHASES.includes(p) ? p : "unknown");
}

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function secs(ms) {
  return (ms / 1000).toFixed(ms < 10000 ? 1 : 0) + " s";
}

function fact(k, v, cls) {
  const d = el("div", { class: "fact" + (cls ? " " + cls : "") });
  d.append(el("div", { class: "k" }, k), el("div", { class: "v" }, v === "" || v == null ? "—" : v));
  return d;
}

// rowsOf turns the timeline map into rows in the members' order (servers
// first), with every phase as a segment [from, to).
function rowsOf(st) {
  const tl = st.timeline || {};
  const order = [];
  const roles = {};
  for (const m of st.members || []) { order.push(m.name); roles[m.name] = m.role; }
  if (st.node && !order.includes(st.node.name)) { order.unshift(st.node.name); }
  if (st.node) roles[st.node.name] = st.node.role;
  for (const name of Object.keys(tl).sort()) if (!order.includes(name)) order.push(name);
  const rows = [];
  for (const name of order) {
    const entries = (tl[name] || []).map(e => ({ phase: e.phase, at: Date.parse(e.at) })).filter(e => !isNaN(e.at));
    const member = (st.members || []).find(m => m.name === name);
    if (entries.length === 0 && member && member.phase) {
      const since = Date.parse(member.since);
      if (!isNaN(since)) entries.push({ phase: member.phase, at: since });
    }
    const segs = entries.map((e, i) => ({ phase: e.phase, from: e.at, to: i + 1 < entries.length ? entries[i + 1].at : null }));
    let readyAt = null;
    for (const s of segs) if (s.phase === "ready") readyAt = s.from;
    const last = segs.length ? segs[segs.length - 1].phase : (member ? member.phase : "");
    const state = member ? member.state : "";
    rows.push({ name, role: roles[name] || "", state, segs, readyAt, last, first: segs.length ? segs[0].from : null });
  }
  return rows;
}

// criticalPath walks back from the host that became ready last: its last
// wait ended because a server became ready (the bootstrap for cluster ready,
// the slot holder for the next slot; agents hold nobody up), and that
// server's own work since its last wait is the step before. The host that
// waited for nobody is on the path from its first phase.
function criticalPath(rows) {
  const done = rows.filter(r => r.readyAt !== null);
  if (done.length === 0) return [];
  const path = [];
  const used = new Set();
  let h = done.reduce((a, b) => (b.readyAt > a.readyAt ? b : a));
  while (h) {
    used.add(h.name);
    let from = null;
    for (const s of h.segs) {
      if (s.from >= h.readyAt) break;
      if (WAITING.has(s.phase) && s.to !== null) from = s.to;
    }
    const skew = 250; // clocks of two hosts may differ a little
    const before = from === null ? [] : done.filter(r => !used.has(r.name) && r.role === "server" && r.readyAt <= from + skew);
    const prev = before.length ? before.reduce((a, b) => (b.readyAt > a.readyAt ? b : a)) : null;
    if (prev === null) from = h.first;
    path.unshift({ name: h.name, from, to: h.readyAt });
    h = prev;
  }
  return path;
}

function render(st) {
  document.getElementById("cluster-name").textContent = st.cluster && st.cluster.name ? "· " + st.cluster.name : "";
  const node = st.node || {};
  document.getElementById("seen-by").textContent =
    "as " + (node.name || "?") + " (" + (node.role || "?") + ", " + (node.phase || "?") + ") sees it · updated " + new Date().toLocaleTimeString();

  const c = st.cluster || {};
  const raft = c.raft || {};
  const summary = document.getElementById("summary");
  summary.replaceChildren(
    fact("cluster ready", c.cluster_ready ? "yes" : "no", c.cluster_ready ? "good" : "bad"),
    fact("VIP", c.vip),
    fact("VIP reachable", c.vip_reachable ? "yes" : "no", c.vip_reachable ? "good" : "bad"),
    fact("VIP holder", c.vip_holder),
    fact("bootstrap node", c.bootstrap_node),
    fact("raft", raft.state === "leader" ? "leader (this host)" : raft.state ? raft.state + (raft.leader ? ", leader " + raft.leader : "") : ""),
    fact("join slot", c.join_slot),
    fact("servers expected", c.expect_servers || ""),
  );

  const rows = rowsOf(st);
  const path = criticalPath(rows);
  const onPath = {};
  for (const p of path) onPath[p.name] = p;

  let t0 = Infinity, tLast = -Infinity;
  for (const r of rows) for (const s of r.segs) { t0 = Math.min(t0, s.from); tLast = Math.max(tLast, s.from); }
  // Once every host is ready or failed the picture is settled: draw up to
  // the last change, not to now, so the join keeps its width.
  const settled = rows.length > 0 && rows.every(r => r.last === "ready" || r.last === "failed");
  let tEnd = settled ? tLast + Math.max(0.06 * (tLast - t0), 500) : Math.max(Date.now(), tLast + 500);
  if (!isFinite(t0)) { t0 = 0; tEnd = 1; }
  const pct = t => (100 * (t - t0) / (tEnd - t0)).toFixed(3) + "%";

  const box = document.getElementById("timeline");
  const out = [];
  const axis = el("div", { class: "tl-axis" });
  const span = tEnd - t0;
  const step = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600].find(s => span / (s * 1000) <= 10) || 7200;
  for (let s = 0; s * 1000 <= span; s += step) {
    const tick = el("span", {}, s < 60 ? s + "s" : (s / 60).toFixed(0) + "m");
    tick.style.left = pct(t0 + s * 1000);
    axis.append(tick);
  }
  out.push(axis);
  for (const r of rows) {
    const row = el("div", { class: "tl-row", "data-host": r.name, "data-role": r.role, "data-phase": r.last });
    const self = r.name === node.name;
    const gone = r.state === "dead" || r.state === "left";
    if (gone) row.classList.add("gone");
    row.append(el("div", { class: "tl-name" + (self ? " self" : ""), title: r.name + " (" + r.role + (self ? ", this host" : "") + (gone ? ", " + r.state : "") + ")" },
      r.name + (gone ? " (" + r.state + ")" : "")));
    const track = el("div", { class: "tl-track" });
    const crit = onPath[r.name];
    for (const s of r.segs) {
      const to = s.to === null ? tEnd : s.to;
      const critical = crit && s.from >= crit.from - 1 && (s.to !== null ? s.to : s.from) <= crit.to + 1 && s.phase !== "ready";
      const seg = el("div", {
        class: "seg " + phaseClass(s.phase) + (critical ? " critical" : ""),
        "data-phase": s.phase,
        title: r.name + ": " + s.phase + " " + secs(to - s.from) + " (from +" + secs(s.from - t0) + ")",
      });
      seg.style.left = pct(s.from);
      seg.style.width = "calc(" + pct(to) + " - " + pct(s.from) + ")";
      track.append(seg);
    }
    row.append(track);
    row.append(el("div", { class: "tl-total" }, r.readyAt !== null && r.first !== null ? secs(r.readyAt - r.first) : r.last || "—"));
    out.push(row);
  }
  box.replaceChildren(...out);

  document.getElementById("critical-text").textContent = path.length
    ? "Critical path (outlined): " + path.map(p => p.name + " " + secs(p.to - p.from)).join(" → ") +
      " · all ready after " + secs(path[path.length - 1].to - t0)
    : "No host is ready yet.";

  const legend = document.getElementById("legend");
  const items = PHASES.map(p => { const s = el("span"); s.append(el("i", { class: phaseClass(p) }), document.createTextNode(p)); return s; });
  const ci = el("span"); ci.append(el("i", { class: "critical" }), document.createTextNode("critical path")); items.push(ci);
  legend.replaceChildren(...items);

  const failures = [];
  for (const r of rows) {
    if (r.last !== "failed") continue;
    let before = "";
    for (const s of r.segs) if (s.phase !== "failed") before = s.phase;
    const f = el("div", { class: "failure", "data-host": r.name });
    f.append(el("b", {}, r.name + " failed" + (before ? " in " + before : "")));
    const reason = r.name === node.name && node.error ? node.error : "the reason is in this host's own status (rke2-hanode status on it) and its journal";
    f.append(el("p", { class: "reason" }, "Reason: " + reason));
    if (HINTS[before]) f.append(el("p", { class: "hint" }, "What to do: " + HINTS[before]));
    failures.push(f);
  }
  if (failures.length) failures.unshift(el("h2", {}, "Failures"));
  document.getElementById("failures").replaceChildren(...failures);

  const tbody = document.querySelector("#members tbody");
  tbody.replaceChildren(...(st.members || []).map(m => {
    const tr = el("tr", { "data-host": m.name });
    const since = Date.parse(m.since);
    const role = m.role + (m.unverified_server ? " (says server, unverified)" : "");
    for (const v of [m.name, role, m.address, m.phase, m.state, isNaN(since) || since <= 0 ? "" : new Date(since).toLocaleTimeString()]) tr.append(el("td", {}, v));
    return tr;
  }));
}

async function poll() {
  const errBox = document.getElementById("fetch-error");
  try {
    const resp = await fetch("/status", { cache: "no-store" });
    if (!resp.ok) throw new Error("HTTP " + resp.status);
    render(await resp.json());
    errBox.hidden = true;
  } catch (e) {
    errBox.textContent = "Could not read /status: " + e.message + " (is the daemon running?); retrying.";
    errBox.hidden = false;
  }
}

(function start() {
  try {
    render(JSON.parse(document.getElementById("initial-status").textContent));
  } catch (e) {
    poll();
  }
  setInterval(poll, 2000);
})();
