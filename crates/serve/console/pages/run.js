// A run, live: its events stream (journaled events and a node's streamed tokens) drives the
// DAG's colours, the timeline and the speedup as they happen; the run's report and node records
// fill in failures, attempts, writes and the state. Buttons cancel, retry (from a node) and
// resume; a waiting node gets a form from its answer's schema.

import { api, streamEvents } from "../api.js";
import { h, badge, ms, render, errorBox, shortId, statusText, when, json, announce } from "../dom.js";
import { drawDag, setStatus, markCritical } from "../dag.js";
import { drawGantt } from "../gantt.js";
import { fieldsFromSchema, inputsForm, jsonForm } from "../form.js";

const enc = encodeURIComponent;
const ENDED = new Set(["succeeded", "degraded", "failed", "cancelled"]);

/**
 * The critical path of what ran so far (a node still running ends `now`): from the node that
 * ends last back through the need that ended last, as the run report computes it.
 */
function criticalPath(def, model, now) {
  const end = (n) => model.get(n.name).end ?? now;
  const ran = (n) => model.get(n.name).start !== null;
  const last = (list) => list.reduce((a, b) => (end(b) >= end(a) ? b : a));
  const started = def.nodes.filter(ran);
  if (!started.length) return [];
  let cur = last(started);
  const byName = new Map(def.nodes.map((n) => [n.name, n]));
  const path = [cur.name];
  for (;;) {
    const needs = cur.needs.map((d) => byName.get(d)).filter(ran);
    if (!needs.length) break;
    cur = last(needs);
    path.unshift(cur.name);
  }
  return path;
}

function failureText(f) {
  if (!f) return "";
  return f.kind ? `${f.kind}: ${f.message}` : f.message || json(f);
}

export function runPage(main, id) {
  const ctl = new AbortController();
  let def = null;
  let run = null;
  let records = new Map();
  let origin = null;
  let last = null;
  let ticking = null;
  let refreshTimer = null;
  const model = new Map();
  const tokens = new Map();

  // The page's parts, made once and updated in place.
  const statusSlot = h("span", { id: "run-status", role: "status", "aria-live": "polite" });
  const summary = h("p", { class: "summary", id: "speedup" });
  const outcome = h("div", { id: "outcome" });
  const actions = h("div", { class: "run-actions", id: "actions" });
  const answer = h("section", { id: "answer", hidden: true });
  const dagSlot = h("div", { class: "scroll" });
  const ganttSlot = h("div", { class: "scroll", id: "timeline" });
  const nodeRows = h("tbody", {});
  const tokensSlot = h("section", { id: "tokens", hidden: true }, h("h2", {}, "Streamed output"));
  const stateSlot = h("pre", { class: "json", id: "state", tabindex: "0" });
  const inputsSlot = h("pre", { class: "json", tabindex: "0" });
  const meta = h("p", { class: "muted" });
  let dag = null;

  const node = (name) => {
    if (!model.has(name)) model.set(name, { status: "pending", start: null, end: null, attemptStart: null, attempt: 0, retries: [], note: "" });
    return model.get(name);
  };
  // The server's clock as this browser sees it: the smallest (receipt − event time) so far, which
  // a live event makes about the network's delay plus the two clocks' difference.
  let skew = Infinity;
  const now = () => (origin === null || skew === Infinity ? 0 : Date.now() - skew - origin / 1000);

  function draw() {
    if (!def) return;
    const running = run && !ENDED.has(run.status) && run.status !== "waiting";
    const t = running ? now() : Math.max(0, ...[...model.values()].map((n) => n.end || 0));
    const critical = run && run.report && !running ? run.report.critical_path : criticalPath(def, model, t);
    for (const n of def.nodes) setStatus(dag, n.name, node(n.name).status, node(n.name).note);
    // The node table's live cells (the rest follows the node records, after each node ends).
    for (const tr of nodeRows.children) {
      const m = node(tr.dataset.node);
      if (tr.dataset.status !== m.status) {
        tr.dataset.status = m.status;
        tr.querySelector("td.st").replaceChildren(badge(m.status));
      }
      if (m.attempt && m.status !== "pending") tr.querySelector("td.attempts").textContent = String(Math.max(m.attempt, Number(tr.querySelector("td.attempts").textContent) || 0));
      tr.querySelector("td.c-start").textContent = m.start === null ? "–" : ms(m.start);
      tr.querySelector("td.c-took").textContent = m.start === null ? "–" : `${ms((m.end ?? t) - m.start)}${m.end === null ? "…" : ""}`;
    }
    markCritical(dag, critical);
    ganttSlot.replaceChildren(drawGantt(def.nodes.map((n) => ({ name: n.name, ...node(n.name) })), t, critical));
    // The speedup: the report's once the run has ended, else what the nodes so far say.
    let sum = 0;
    let lo = Infinity;
    let hi = 0;
    for (const n of model.values()) {
      if (n.start === null) continue;
      const end = n.end ?? t;
      sum += end - n.start;
      lo = Math.min(lo, n.start);
      hi = Math.max(hi, end);
    }
    const r = run && run.report;
    const done = r && !running && r.wall_time_ms > 0;
    const wall = done ? r.wall_time_ms : hi - lo;
    const total = done ? r.node_time_sum_ms : sum;
    const speedup = done ? r.speedup : wall > 0 ? total / wall : null;
    summary.replaceChildren();
    if (speedup) {
      summary.setAttribute("data-speedup", speedup.toFixed(2));
      summary.append(
        "Speedup ", h("strong", {}, `${speedup.toFixed(2)}×`), " over one node at a time",
        running ? " so far" : "", `: ${ms(wall)} of wall time against ${ms(total)} of node time`,
        speedup > 1 ? ` (${((1 - 1 / speedup) * 100).toFixed(1)} % saved)` : "",
        run && run.restarts ? "; the wall time includes the time the run stood waiting or stopped" : "", ". ",
        critical.length ? h("span", {}, "Critical path: ", h("span", { id: "critical-path" }, critical.join(" → ")), ".") : "");
    } else {
      summary.textContent = running ? "Waiting for the first node to finish…" : "";
    }
  }

  function tick() {
    clearInterval(ticking);
    ticking = setInterval(draw, 100);
  }

  function onEvent({ event, data }) {
    if (event === "message") {
      const payload = data.payload || {};
      const piece = payload.token ?? payload.delta ?? payload.text ?? json(payload);
      tokens.set(data.node, (tokens.get(data.node) || "") + piece);
      showTokens();
      return;
    }
    if (origin === null) origin = data.at;
    skew = Math.min(skew, Date.now() - data.at / 1000);
    const at = (data.at - origin) / 1000;
    const n = data.node ? node(data.node) : null;
    switch (event) {
      case "run_started":
        if (run) run.status = "running";
        showStatus("running");
        tick();
        refreshSoon();
        break;
      case "node_started":
        if (data.attempt === 1 || n.start === null || ENDED.has(n.status) || n.status === "fell_back") {
          if (data.attempt === 1) {
            n.start = at;
            n.retries = [];
          }
          n.end = null;
        }
        n.status = "running";
        n.attempt = data.attempt;
        n.attemptStart = at;
        n.note = data.attempt > 1 ? `try ${data.attempt}` : "";
        break;
      case "node_retrying":
        n.retries.push({ attempt: data.attempt, start: n.attemptStart ?? at, end: at });
        n.status = "retrying";
        n.note = `try ${data.attempt} failed`;
        break;
      case "node_finished":
        n.status = data.data;
        n.end = at;
        n.note = n.attempt > 1 ? `${n.attempt} tries` : "";
        refreshSoon();
        break;
      case "run_finished":
        if (run) run.status = data.data;
        showStatus(data.data);
        break;
      default:
    }
    draw();
  }

  function showStatus(status) {
    statusSlot.replaceChildren(badge(status, { id: "run-badge" }));
    announce(`Run ${statusText(status)}`);
  }

  function showTokens() {
    tokensSlot.hidden = false;
    tokensSlot.replaceChildren(h("h2", {}, "Streamed output"),
      ...[...tokens].map(([name, text]) => h("div", { class: "tokens", "data-node": name }, h("h3", {}, name), h("pre", { class: "stream" }, text))));
  }

  function refreshSoon() {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(refresh, 150);
  }

  async function refresh() {
    try {
      const [r, nodes] = await Promise.all([
        api(`/v1/runs/${enc(id)}`, { signal: ctl.signal }),
        api(`/v1/runs/${enc(id)}/nodes`, { signal: ctl.signal }),
      ]);
      run = r;
      records = new Map(nodes.nodes.map((n) => [n.node, n]));
      showRun();
    } catch (e) {
      if (e.name !== "AbortError") outcome.replaceChildren(errorBox(e));
    }
  }

  /** Everything that follows from the run object and the node records. */
  function showRun() {
    showStatus(run.status);
    meta.replaceChildren("Workflow ", h("a", { href: `#/workflows/${enc(run.workflow)}` }, run.workflow),
      ` · version ${shortId(run.fingerprint)} · created ${when(run.created_at)}`,
      run.ended_at ? ` · ended ${when(run.ended_at)}` : "", run.restarts ? ` · continued ${run.restarts}×` : "",
      " · ", h("code", {}, run.run_id));
    const report = run.report || { nodes: [] };
    const reports = new Map(report.nodes.map((n) => [n.name, n]));
    // Statuses of finished runs come from the report (it has every node, not started ones too).
    if (ENDED.has(run.status) || run.status === "waiting") {
      for (const n of report.nodes) {
        const m = node(n.name);
        if (m.status === "pending" || m.status === "running" || m.status === "retrying" || n.status === "waiting") m.status = n.status;
      }
    }
    stateSlot.textContent = json(run.state ?? {});
    inputsSlot.textContent = json(run.inputs ?? {});
    // The node table.
    nodeRows.replaceChildren(...def.nodes.map((d) => {
      const m = node(d.name);
      const rep = reports.get(d.name) || {};
      const rec = records.get(d.name);
      const fails = [...(rep.retries || []).map((t) => `try ${t.attempt}: ${failureText(t.failure)}`),
        rep.failure ? `${rep.attempts > 1 ? `try ${rep.attempts}: ` : ""}${failureText(rep.failure)}` : ""].filter(Boolean);
      const writes = rec && Object.keys(rec.writes).length ? h("details", {}, h("summary", {}, Object.keys(rec.writes).join(", ")), h("pre", { class: "json" }, json(rec.writes))) : "–";
      return h("tr", { id: `node-${d.name}`, "data-node": d.name, "data-status": m.status },
        h("th", { scope: "row" }, d.name, h("div", { class: "muted small plain" }, d.kind, d.on_error === "continue" ? " · on_error: continue" : "")),
        h("td", { class: "st" }, badge(m.status)),
        h("td", { class: "num attempts" }, rep.attempts ?? (rec ? rec.attempts : m.attempt)),
        h("td", { class: "num c-start" }, "–"),
        h("td", { class: "num c-took" }, "–"),
        h("td", { class: "failure" }, fails.length ? h("ul", {}, fails.map((f) => h("li", {}, f))) : rep.prompt ? `asks: ${rep.prompt}` : "–"),
        h("td", {}, writes));
    }));
    showOutcome(report, reports);
    showActions(report);
    showAnswer(report);
    draw();
  }

  function showOutcome(report, reports) {
    const items = [];
    const err = run.error || report.error;
    if (run.status === "failed" && err) {
      if (err.kind === "node_failed") {
        items.push(h("p", {}, h("strong", {}, `✗ Node ${err.node} failed`), ` (${failureText(err.failure)}). `,
          "The run stopped there: nodes in flight were cancelled, what had completed is kept. Retry it below."));
      } else {
        items.push(h("p", {}, h("strong", {}, "✗ The run failed: "), err.kind === "timeout" ? `its timeout of ${ms(err.timeout_ms)} expired.` : json(err)));
      }
    }
    if (run.status === "cancelled") items.push(h("p", {}, h("strong", {}, "■ The run was cancelled. "), "What completed is kept; resume it to go on."));
    for (const n of report.nodes.filter((x) => x.status === "fell_back")) {
      const rec = records.get(n.name);
      items.push(h("p", { "data-fell-back": n.name }, h("strong", {}, `⚠ ${n.name} fell back`),
        `: it failed (${failureText(n.failure)}) after ${n.attempts} attempt${n.attempts === 1 ? "" : "s"}, so the run wrote its fallback`,
        rec ? [" ", h("code", {}, JSON.stringify(rec.writes))] : "", " and went on without it."));
    }
    for (const n of report.nodes.filter((x) => x.status === "waiting")) {
      items.push(h("p", {}, h("strong", {}, `‖ ${n.name} waits for an answer`), n.prompt ? `: ${n.prompt}` : "", " (form below)."));
    }
    outcome.className = items.length ? `outcome st-${run.status}` : "";
    outcome.replaceChildren(...items);
  }

  function showActions(report) {
    const buttons = [];
    const act = (label, path, body, opts = {}) => h("button", { type: "button", ...opts, onclick: async (ev) => {
      ev.target.disabled = true;
      try {
        await api(`/v1/runs/${enc(id)}/${path}`, { method: "POST", body: typeof body === "function" ? body() : body });
        announce(`${label}: done`);
        if (path !== "cancel") follow();
      } catch (e) {
        outcome.append(errorBox(e));
      } finally {
        ev.target.disabled = false;
      }
    } }, label);
    if (run.status === "running") buttons.push(act("Cancel run", "cancel", {}, { id: "cancel", class: "danger" }));
    if (run.status === "cancelled") buttons.push(act("Resume run", "resume", {}, { id: "resume" }));
    if (ENDED.has(run.status)) {
      const from = h("select", { id: "retry-from" },
        run.status === "failed" || run.status === "degraded" ? h("option", { value: "" }, "the failed and fallen-back nodes") : null,
        def.nodes.map((n) => h("option", { value: n.name }, `${n.name} and what follows it`)));
      buttons.push(h("div", { class: "retry" }, h("label", { for: "retry-from" }, "Retry "), from, " ",
        act("Retry", "retry", () => (from.value ? { from: from.value } : {}), { id: "retry" })));
    }
    actions.replaceChildren(...buttons);
  }

  function showAnswer(report) {
    const waiting = run.status === "waiting" ? report.nodes.filter((n) => n.status === "waiting") : [];
    answer.hidden = !waiting.length;
    answer.replaceChildren(...(waiting.length ? [h("h2", {}, "Answer")] : []), ...waiting.map((n) => {
      const shape = def.nodes.find((d) => d.name === n.name) || {};
      const submit = async (value) => {
        try {
          await api(`/v1/runs/${enc(id)}/resume`, { method: "POST", body: { node: n.name, value } });
          announce(`Answered ${n.name}`);
          answer.hidden = true;
          follow();
          return [];
        } catch (e) {
          return [{ input: "", message: e.message }];
        }
      };
      const fields = fieldsFromSchema(shape.answer_schema);
      const form = fields
        ? inputsForm(fields, { submit: `Answer ${n.name}`, formLabel: `Answer for ${n.name}`, onSubmit: submit })
        : jsonForm({ submit: `Answer ${n.name}`, formLabel: `Answer for ${n.name}`, hint: "a JSON value", onSubmit: submit });
      form.setAttribute("data-answer", n.name);
      return h("div", { class: "card" }, h("h3", {}, n.name), n.prompt ? h("p", { class: "prompt" }, n.prompt) : null, form);
    }));
  }

  /** Follows the events from the last one seen, until the run ends or stops to wait. */
  async function follow() {
    tick();
    for (let tries = 0; !ctl.signal.aborted; tries++) {
      try {
        last = await streamEvents(id, last, onEvent, ctl.signal);
      } catch (e) {
        if (e.name === "AbortError") return;
        if (e.status === 404 || e.status === 401) {
          outcome.replaceChildren(errorBox(e));
          break;
        }
      }
      await refresh();
      if (!run || run.status !== "running") break;
      // The stream was cut while the run goes on (a slow reader, a restart): pick it up again.
      await new Promise((r) => setTimeout(r, Math.min(2000, 200 * (tries + 1))));
    }
    clearInterval(ticking);
    draw();
  }

  (async () => {
    try {
      run = await api(`/v1/runs/${enc(id)}`, { signal: ctl.signal });
      def = await api(`/v1/workflows/${enc(run.workflow)}/definition?fingerprint=${enc(run.fingerprint)}`, { signal: ctl.signal });
      for (const n of def.nodes) node(n.name);
      dag = drawDag(def, { label: `The DAG of run ${shortId(id)}; each node's status is also in the node table below` });
      dagSlot.append(dag);
      render(main,
        h("p", { class: "crumbs" }, h("a", { href: "#/runs" }, "Runs"), " / ", shortId(id)),
        h("h1", {}, `Run ${shortId(id)} `, statusSlot),
        meta, summary, outcome, actions, answer,
        h("section", { "aria-labelledby": "dag-h" }, h("h2", { id: "dag-h" }, "DAG"), dagSlot),
        h("section", { "aria-labelledby": "tl-h" }, h("h2", { id: "tl-h" }, "Timeline"),
          h("p", { class: "muted small" }, "◆ and a dark outline: the critical path. Red, dashed: failed attempts before a retry."), ganttSlot),
        h("section", { "aria-labelledby": "nodes-h" }, h("h2", { id: "nodes-h" }, "Nodes"),
          h("table", { class: "nodes" },
            h("thead", {}, h("tr", {}, ["node", "status", "attempts", "start", "took", "failures", "writes"].map((c) => h("th", { scope: "col" }, c)))),
            nodeRows)),
        tokensSlot,
        h("section", { "aria-labelledby": "state-h" }, h("h2", { id: "state-h" }, "State"), stateSlot),
        h("details", {}, h("summary", {}, "Inputs"), inputsSlot));
      await refresh();
      follow();
    } catch (e) {
      if (e.name !== "AbortError") render(main, h("h1", {}, `Run ${shortId(id)}`), errorBox(e));
    }
  })();
  return () => {
    ctl.abort();
    clearInterval(ticking);
    clearTimeout(refreshTimer);
  };
}
