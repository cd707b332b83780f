// The dyncast live view: polls the REST API every second and redraws without a reload.
// Plain JavaScript, no build step; the only library is the vendored cytoscape.js.
// Every value from the API is put in the page as text (textContent), never as markup.
"use strict";

(function () {
  const API = "../v1/";
  const POLL_MS = 1000;
  const TIMEOUT_MS = 3000; // a request not answered in full by then: the controller is not answering
  const HISTORY_SAMPLES = 60; // load samples kept per instance (one a poll)
  const TOKEN_KEY = "dyncast-token";
  const RESOURCES = ["topology", "decisions", "instances", "stats", "services"];

  const view = { cy: null, layoutKey: "", polls: 0, last: null, loads: new Map(), seen: new Map() };
  window.dyncastView = view; // for the browser tests and for curious operators

  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null) continue;
      if (key === "class") node.className = value;
      else if (key.startsWith("data-")) node.setAttribute(key, String(value));
      else node[key] = value;
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const fmt = (x, digits = 1) => (x === null || x === undefined ? "—" : Number(x).toFixed(digits));
  const pct = (x) => (x === null || x === undefined ? "—" : `${(100 * x).toFixed(0)} %`);
  const ago = (t) => (t ? `${Math.max(0, Date.now() / 1000 - t).toFixed(0)} s ago` : "—");
  const clock = (t) => (t ? new Date(t * 1000).toLocaleTimeString() : "—");

  // --- fetching ---------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  async function get(resource) {
    const headers = { Accept: "application/json" };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = `Bearer ${token}`;
    const what = `GET /dyncast/v1/${resource}`;
    const silent = `${what}: the controller did not answer within ${TIMEOUT_MS / 1000} s`;
    // without a deadline a controller that accepts connections but never answers (a stopped
    // or stuck process) left the poll waiting for ever: no banner, the old data shown as current
    const signal = AbortSignal.timeout(TIMEOUT_MS);
    let res;
    try {
      res = await fetch(API + resource, { headers, cache: "no-store", signal });
    } catch (err) {
      if (err.name === "TimeoutError") throw new ApiError(0, silent);
      throw new ApiError(0, `cannot reach the controller (${err.message})`);
    }
    let body = null;
    try {
      body = await res.json();
    } catch (err) {
      if (err.name === "TimeoutError") throw new ApiError(0, silent);
      if (res.ok) throw new ApiError(res.status, `${what}: the reply is not JSON`);
    }
    if (!res.ok) {
      const why = body && body.error ? body.error : res.statusText;
      throw new ApiError(res.status, `${what}: ${res.status} ${why}`);
    }
    return body;
  }

  async function poll() {
    try {
      const values = await Promise.all(RESOURCES.map(get));
      const data = Object.fromEntries(RESOURCES.map((r, i) => [r, values[i]]));
      view.polls += 1;
      view.last = data;
      render(data);
      showProblem(null);
      $("token-form").hidden = true;
    } catch (err) {
      if (err.status === 401) askToken();
      showProblem(err.status === 401 ? "The API answered 401: give the operator token."
        : err.message || String(err));
    } finally {
      setTimeout(poll, POLL_MS);
    }
  }

  function showProblem(text) {
    const banner = $("banner");
    banner.hidden = !text;
    banner.textContent = text ? `${text} (showing the last data received; retrying every second)` : "";
    if (text && !view.last) $("status").textContent = "no data yet";
  }

  function askToken() {
    const form = $("token-form");
    if (form.hidden) {
      form.hidden = false;
      $("token-error").textContent = sessionStorage.getItem(TOKEN_KEY) ? "that token was refused" : "";
      $("token").focus();
    }
  }

  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const value = $("token").value.trim();
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
    $("token").value = "";
    $("token-form").hidden = true;
  });

  // --- rendering --------------------------------------------------------------------------
  function render(data) {
    const topo = data.topology;
    const switches = topo.switches.filter((s) => s.connected !== false).length;
    const away = topo.switches.length - switches;
    $("no-switch").hidden = switches > 0;
    $("status").textContent = `${switches} switch${switches === 1 ? "" : "es"} connected`
      + `${away ? ` (${away} away, kept for their grace period)` : ""} · `
      + `${data.instances.length} instances · ${data.services.length} services · `
      + `updated ${new Date().toLocaleTimeString()}`;
    $("status").setAttribute("data-switches", String(switches));
    remember(data.instances);
    drawTopology(topo, data.instances);
    drawDecisions(data.decisions, data.instances, data.services);
    drawInstances(data.instances);
    drawStats(data.stats);
  }

  function load(inst) {
    const m = inst.metrics;
    if (!m) return null;
    if (m.capacity) return (m.sessions + m.queue) / m.capacity;
    return m.cpu;
  }

  // the delay a new request should expect there, as its D-MA reports it (null: not reported)
  function delay(inst) {
    const m = inst.metrics;
    if (!m) return null;
    return m.processing_delay_ms ?? m.service_ms ?? null;
  }

  function remember(instances) {
    const alive = new Set();
    for (const inst of instances) {
      alive.add(inst.dbid);
      const samples = view.loads.get(inst.dbid) || [];
      samples.push(delay(inst));
      if (samples.length > HISTORY_SAMPLES) samples.shift();
      view.loads.set(inst.dbid, samples);
      // states seen by polling, for an API without history or beyond its newest 20
      const seen = view.seen.get(inst.dbid) || [];
      if (!seen.length || seen[seen.length - 1].state !== inst.state) {
        seen.push({ state: inst.state, at: Date.now() / 1000 });
        if (seen.length > 20) seen.shift();
      }
      view.seen.set(inst.dbid, seen);
    }
    for (const dbid of [...view.loads.keys()]) if (!alive.has(dbid)) view.loads.delete(dbid);
  }

  // --- topology ---------------------------------------------------------------------------
  function utilColour(u) {
    if (u === null || u === undefined) return "#9e9e9e";
    if (u < 0.3) return "#2e7d32";
    if (u < 0.7) return "#f9a825";
    return "#c62828";
  }

  function elements(topo, instances) {
    const out = [];
    const dbids = new Set(instances.map((i) => i.dbid));
    for (const sw of topo.switches) {
      const up = sw.connected !== false;
      out.push({ data: { id: `s${sw.dpid}`, label: `switch ${sw.dpid}${up ? "" : " (away)"}`,
        kind: "switch", connected: up ? "yes" : "no" } });
    }
    const links = new Map();
    for (const l of topo.links) {
      const a = l.src.dpid, b = l.dst.dpid;
      const key = a < b ? `${a}:${l.src.port}-${b}:${l.dst.port}` : `${b}:${l.dst.port}-${a}:${l.src.port}`;
      const prev = links.get(key);
      const util = Math.max(prev && prev.util !== null ? prev.util : -1, l.utilisation === null ? -1 : l.utilisation);
      const delay = Math.max(prev && prev.delay !== null ? prev.delay : -1, l.delay_ms === null ? -1 : l.delay_ms);
      links.set(key, { a: Math.min(a, b), b: Math.max(a, b), util: util < 0 ? null : util,
        delay: delay < 0 ? null : delay });
    }
    for (const [key, l] of links) {
      out.push({ data: { id: `l${key}`, source: `s${l.a}`, target: `s${l.b}`, kind: "link",
        colour: utilColour(l.util), label: l.delay === null ? "delay —" : `${fmt(l.delay, 1)} ms`,
        util: l.util } });
    }
    const onSwitch = new Set(topo.switches.map((s) => `s${s.dpid}`));
    for (const h of topo.hosts) {
      if (dbids.has(h.ip) || !onSwitch.has(`s${h.dpid}`)) continue;
      out.push({ data: { id: `h${h.ip}`, label: h.ip, kind: "host" } });
      out.push({ data: { id: `e${h.ip}`, source: `h${h.ip}`, target: `s${h.dpid}`, kind: "access" } });
    }
    const sites = new Set();
    for (const inst of instances) {
      const where = inst.location && onSwitch.has(`s${inst.location.dpid}`) ? inst.location.dpid : null;
      const site = where === null ? "site-none" : `site${where}`;
      if (!sites.has(site)) {
        sites.add(site);
        out.push({ data: { id: site, label: where === null ? "not located" : `site at switch ${where}`,
          kind: "site" } });
        if (where !== null) {
          out.push({ data: { id: `e${site}`, source: site, target: `s${where}`, kind: "access" } });
        }
      }
      out.push({ data: { id: `i${inst.dbid}`, parent: site, kind: "instance", state: inst.state,
        label: `${inst.service} ${inst.dbid}\n${inst.state} · ${fmt(delay(inst), 0)} ms`
          + `\nload ${pct(load(inst))} · ${inst.bindings} bound` } });
    }
    return out;
  }

  function drawTopology(topo, instances) {
    if (typeof cytoscape !== "function") {
      showProblem("the drawing library did not load (vendor/cytoscape.min.js)");
      return;
    }
    const els = elements(topo, instances);
    if (!view.cy) {
      view.cy = cytoscape({
        container: $("graph"),
        wheelSensitivity: 0.3,
        style: [
          { selector: "node", style: { label: "data(label)", "font-size": 10, "text-wrap": "wrap",
            "text-valign": "bottom", "text-margin-y": 4 } },
          { selector: 'node[kind = "switch"]', style: { shape: "round-rectangle", width: 46,
            height: 26, "background-color": "#24292f", "text-valign": "center", color: "#fff",
            "text-margin-y": 0, "font-size": 9 } },
          { selector: 'node[connected = "no"]', style: { "background-color": "#8c959f",
            "border-style": "dashed", "border-width": 2, "border-color": "#cf222e" } },
          { selector: 'node[kind = "host"]', style: { shape: "ellipse", width: 16, height: 16,
            "background-color": "#6a737d" } },
          { selector: 'node[kind = "site"]', style: { shape: "round-rectangle",
            "background-color": "#f6f8fa", "border-color": "#0969da", "border-width": 1,
            "text-valign": "top", "text-margin-y": -4, color: "#0969da", padding: 10 } },
          { selector: 'node[kind = "instance"]', style: { shape: "ellipse", width: 18, height: 18,
            "background-color": "#8c959f" } },
          { selector: 'node[state = "active"]', style: { "background-color": "#2da44e" } },
          { selector: 'node[state = "draining"], node[state = "activating"]',
            style: { "background-color": "#d4a72c" } },
          { selector: 'node[state = "down"], node[state = "unknown"]',
            style: { "background-color": "#cf222e" } },
          { selector: "edge", style: { width: 2, "line-color": "#d0d7de", "curve-style": "bezier" } },
          { selector: 'edge[kind = "link"]', style: { width: 4, "line-color": "data(colour)",
            label: "data(label)", "font-size": 9, "text-background-color": "#fff",
            "text-background-opacity": 0.9, "text-background-padding": 2 } },
        ],
      });
    }
    const cy = view.cy;
    const wanted = new Map(els.map((e) => [e.data.id, e]));
    cy.batch(() => {
      cy.elements().forEach((e) => {
        const w = wanted.get(e.id());
        if (!w || (w.data.parent || null) !== (e.isNode() ? e.data("parent") || null : null)) cy.remove(e);
      });
      for (const e of els) {
        const have = cy.getElementById(e.data.id);
        if (have.length) have.data(e.data);
      }
      const fresh = els.filter((e) => !cy.getElementById(e.data.id).length);
      const nodes = fresh.filter((e) => !e.data.source);
      cy.add(nodes.filter((e) => e.data.kind !== "instance"));
      cy.add(nodes.filter((e) => e.data.kind === "instance"));
      cy.add(fresh.filter((e) => e.data.source));
    });
    const key = [...wanted.keys()].sort().join(",");
    if (key !== view.layoutKey) { // the shape changed: lay it out again
      view.layoutKey = key;
      layout(cy);
      cy.fit(undefined, 20);
    }
  }

  // Switches and hosts by a force layout; each site's instances in a row beside its switch,
  // away from the middle of the network (cytoscape's force layout places compound nodes badly).
  function layout(cy) {
    const sites = cy.nodes('[kind = "site"]');
    const placed = sites.union(sites.children());
    const rest = cy.elements().not(placed).not(placed.connectedEdges());
    rest.layout({ name: "cose", animate: false, randomize: false, nodeDimensionsIncludeLabels: true,
      nodeRepulsion: () => 20000, idealEdgeLength: () => 80, padding: 20 }).run();
    const switches = cy.nodes('[kind = "switch"]');
    const mid = { x: 0, y: 0 };
    switches.forEach((n) => { mid.x += n.position("x") / switches.length; mid.y += n.position("y") / switches.length; });
    const away = (at) => { // the unit vector from the middle of the network to `at`
      const dx = at.x - mid.x, dy = at.y - mid.y, len = Math.hypot(dx, dy);
      return len < 1 ? { x: 0, y: -1 } : { x: dx / len, y: dy / len };
    };
    const withSite = new Set(sites.map((site) => site.connectedEdges('[kind = "access"]').targets().id()));
    cy.nodes('[kind = "host"]').forEach((host) => {
      const sw = host.connectedEdges('[kind = "access"]').targets('[kind = "switch"]');
      if (!sw.length) return;
      const at = sw.position(), d = away(at);
      const turn = withSite.has(sw.id()) ? 1.3 : 0; // beside the site, not under it
      const [c, s] = [Math.cos(turn), Math.sin(turn)];
      host.position({ x: at.x + 90 * (d.x * c - d.y * s), y: at.y + 90 * (d.x * s + d.y * c) });
    });
    sites.forEach((site, k) => {
      const link = site.connectedEdges('[kind = "access"]').targets('[kind = "switch"]');
      const at = link.length ? link.position() : { x: mid.x + 160 * k, y: mid.y - 260 };
      const d = away(at);
      const kids = site.children();
      const centre = { x: at.x + d.x * 170, y: at.y + d.y * 130 };
      kids.forEach((kid, i) => {
        kid.position({ x: centre.x + (i - (kids.length - 1) / 2) * 130, y: centre.y });
      });
    });
  }

  // --- decisions --------------------------------------------------------------------------
  function drawDecisions(decisions, instances, services) {
    const box = $("decisions");
    const bound = new Map(instances.map((i) => [i.dbid, i.bindings]));
    const byService = new Map(services.map((s) => [s.name, []]));
    for (const d of decisions) {
      if (!byService.has(d.service)) byService.set(d.service, []);
      byService.get(d.service).push(d);
    }
    const parts = [];
    for (const [name, rows] of [...byService].sort()) {
      const svc = services.find((s) => s.name === name);
      const head = el("h3", {}, `${name}`, svc ? el("span", { class: "hint" },
        `D-SID ${svc.dsid} · ${svc.protocol || "any"}${svc.port ? `/${svc.port}` : ""} · policy ${svc.policy || "dyncast"}`) : null);
      const section = el("div", { class: "service", "data-service": name }, head);
      if (!rows.length) section.append(el("div", { class: "hint" }, "no decision yet (no ingress switch, or no instance)"));
      for (const d of rows.sort((a, b) => a.ingress - b.ingress)) section.append(decisionTable(d, bound));
      parts.push(section);
    }
    if (!parts.length) parts.push(el("div", { class: "hint" }, "no service configured"));
    box.replaceChildren(...parts);
  }

  function decisionTable(d, bound) {
    const primary = d.primary || "none";
    const wrap = el("div", { class: "decision", "data-service": d.service, "data-ingress": d.ingress,
      "data-primary": primary });
    const fwd = d.forwarders && d.forwarders.length ? ` · forwarders ${d.forwarders.join(", ")}` : "";
    wrap.append(el("div", { class: "head" }, `ingress switch ${d.ingress}: new flows go to `,
      el("span", { class: "primary" }, primary), ` (computed ${clock(d.computed_at)})${fwd}`));
    const table = el("table", {});
    table.append(el("tr", {}, ...["instance", "state", "hops", "path delay ms", "congestion ms",
      "network ms", "compute ms", "cost", "share", "bindings", "why"].map((h, i) =>
      el("th", { class: i >= 2 && i <= 9 ? "num" : "" }, h))));
    for (const c of d.candidates) {
      const n = c.network || {};
      const share = c.share || 0;
      table.append(el("tr", { class: `candidate${share > 0 ? " chosen" : ""}`, "data-dbid": c.dbid,
        "data-share": share },
        el("td", {}, c.dbid), el("td", {}, el("span", { class: `state ${c.state}` }, c.state)),
        el("td", { class: "num" }, n.hops ?? "—"), el("td", { class: "num" }, fmt(n.delay_ms)),
        el("td", { class: "num" }, fmt(n.congestion_ms)), el("td", { class: "num" }, fmt(c.network_ms)),
        el("td", { class: "num" }, fmt(c.compute_ms)), el("td", { class: "num" }, fmt(c.cost)),
        el("td", { class: "num share" }, el("span", { class: "bar", style: `width:${Math.round(40 * share)}px` }),
          `${(100 * share).toFixed(0)} %`),
        el("td", { class: "num" }, bound.get(c.dbid) ?? 0), el("td", { class: "hint" }, c.reason || "")));
    }
    wrap.append(table);
    return wrap;
  }

  // --- instances --------------------------------------------------------------------------
  function sparkline(samples) {
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("width", "90"); svg.setAttribute("height", "18"); svg.setAttribute("class", "spark");
    const top = Math.max(1, ...samples.filter((x) => x !== null));
    const pts = samples.map((x, i) => `${(i * 90) / Math.max(1, HISTORY_SAMPLES - 1)},${17 - (16 * (x || 0)) / top}`);
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", pts.join(" "));
    line.setAttribute("fill", "none"); line.setAttribute("stroke", "#0969da"); line.setAttribute("stroke-width", "1.5");
    svg.append(line);
    return svg;
  }

  function drawInstances(instances) {
    const table = el("table", {});
    table.append(el("tr", {}, ...["instance", "service", "site", "state", "since", "delay; load", "delay, last minute",
      "bindings", "report", "state history (newest first)"].map((h) => el("th", {}, h))));
    for (const inst of [...instances].sort((a, b) => a.dbid.localeCompare(b.dbid, "en", { numeric: true }))) {
      const m = inst.metrics;
      const loadText = m ? `${fmt(delay(inst), 0)} ms; ${pct(load(inst))} busy (${m.sessions}+${m.queue}/${m.capacity}), cpu ${pct(m.cpu)}` : "no report";
      const hist = (inst.history && inst.history.length)
        ? [...inst.history].reverse().slice(0, 5).map((h) => `${clock(h.at)} ${h.from} → ${h.to}: ${h.event}${h.reason ? ` (${h.reason})` : ""}`)
        : [...(view.seen.get(inst.dbid) || [])].reverse().slice(0, 5).map((s) => `${clock(s.at)} seen ${s.state}`);
      table.append(el("tr", { "data-dbid": inst.dbid, "data-state": inst.state },
        el("td", {}, inst.dbid), el("td", {}, inst.service),
        el("td", {}, inst.location ? `switch ${inst.location.dpid} port ${inst.location.port}` : "—"),
        el("td", {}, el("span", { class: `state ${inst.state}` }, inst.state + (inst.draining ? " (draining)" : ""))),
        el("td", {}, ago(inst.state_since)), el("td", {}, loadText),
        el("td", {}, sparkline(view.loads.get(inst.dbid) || [])),
        el("td", { class: "num" }, inst.bindings), el("td", {}, ago(inst.metrics_at)),
        el("td", {}, el("ul", { class: "history" }, ...hist.map((t) => el("li", {}, t))))));
    }
    if (!instances.length) table.append(el("tr", {}, el("td", { class: "hint" }, "no instance registered")));
    $("instances").replaceChildren(table);
  }

  function drawStats(stats) {
    const rows = Object.keys(stats).sort().map((k) => el("tr", { "data-counter": k },
      el("td", {}, k), el("td", { class: "num" }, stats[k])));
    $("stats").replaceChildren(...rows);
  }

  poll();
})();
