// The workflows: a list, and a page per workflow with its description, diagnostics (when its
// file does not compile), DAG, inputs, a form that starts a run, and its recent runs in figures.

import { api } from "../api.js";
import { h, s, badge, ms, render, errorBox, shortId, when, STATUS } from "../dom.js";
import { drawDag } from "../dag.js";
import { inputsForm } from "../form.js";

const enc = encodeURIComponent;
const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

function validity(w) {
  if (w.valid) return h("span", { class: "badge st-succeeded", "data-valid": "true" }, "✓ valid");
  return h("span", { class: "badge st-failed", "data-valid": "false" }, "✗ does not compile");
}

function serving(w) {
  if (w.valid) return null;
  return h("p", { class: "serving" }, w.fingerprint
    ? ["The previous version keeps serving: ", h("code", {}, shortId(w.fingerprint)), " (new runs use it until the file is fixed)."]
    : "No version serves under this name: it never compiled.");
}

function diagnostics(w) {
  if (w.valid) return null;
  return h("section", { class: "diagnostics", "aria-label": `Diagnostics of ${w.file}` },
    h("h3", {}, `Diagnostics of ${w.file}`),
    h("pre", { class: "diag", tabindex: "0" }, w.diagnostics_text || ""));
}

export function workflowsPage(main) {
  const ctl = new AbortController();
  (async () => {
    try {
      const { workflows } = await api("/v1/workflows", { signal: ctl.signal });
      const defs = await Promise.all(workflows.map((w) =>
        w.fingerprint ? api(`/v1/workflows/${enc(w.name)}/definition`, { signal: ctl.signal }).catch(() => null) : null));
      const cards = workflows.map((w, i) => {
        const d = defs[i];
        return h("li", { class: "card", "data-workflow": w.name },
          h("h2", {}, h("a", { href: `#/workflows/${enc(w.name)}` }, w.name), " ", validity(w)),
          h("p", { class: "muted" }, w.file, d ? ` · ${plural(d.nodes.length, "node")} · ${plural(d.inputs.length, "input")} · ${d.mode}` : ""),
          d && d.description ? h("p", {}, d.description) : null,
          serving(w),
          diagnostics(w));
      });
      render(main,
        h("h1", {}, "Workflows"),
        h("p", { class: "muted" }, `${workflows.length} workflow files served. Open one to see its DAG and start a run.`),
        h("ul", { class: "cards" }, cards));
    } catch (e) {
      if (e.name !== "AbortError") render(main, h("h1", {}, "Workflows"), errorBox(e));
    }
  })();
  return () => ctl.abort();
}

function inputsTable(def) {
  if (!def.inputs.length) return h("p", { class: "muted" }, "No inputs.");
  return h("table", {},
    h("caption", { class: "sr-only" }, "Inputs"),
    h("thead", {}, h("tr", {}, ["input", "type", "default", "description"].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, def.inputs.map((i) => h("tr", {},
      h("th", { scope: "row" }, h("code", {}, i.name)),
      h("td", {}, i.type),
      h("td", {}, i.required ? "required" : h("code", {}, JSON.stringify(i.default))),
      h("td", {}, i.description || "")))));
}

function speedupChart(points) {
  const pts = points.filter((p) => p.speedup).slice(0, 30).reverse();
  if (!pts.length) return h("p", { class: "muted" }, "No run has finished nodes yet.");
  const max = Math.max(2, ...pts.map((p) => p.speedup));
  const W = 14;
  const H = 90;
  const svg = s("svg", { class: "spark", width: pts.length * (W + 4) + 40, height: H + 24, role: "img",
    "aria-label": `Speedup of the last ${pts.length} runs, oldest first: ${pts.map((p) => p.speedup.toFixed(2)).join(", ")}` });
  const y = (v) => H - (v / max) * H + 4;
  svg.append(s("line", { class: "one", x1: 30, x2: pts.length * (W + 4) + 34, y1: y(1), y2: y(1) }),
    s("text", { x: 26, y: y(1) + 4, "text-anchor": "end" }, "1×"),
    s("text", { x: 26, y: y(max) + 8, "text-anchor": "end" }, `${max.toFixed(1)}×`));
  pts.forEach((p, i) => svg.append(s("rect", { class: `bar st-${p.status}`, x: 34 + i * (W + 4), y: y(p.speedup), width: W, height: H + 4 - y(p.speedup) },
    s("title", {}, `${shortId(p.run_id)}: ${p.speedup.toFixed(2)}× (${p.status})`))));
  return svg;
}

function median(values) {
  const v = values.filter((x) => x !== null && x !== undefined).sort((a, b) => a - b);
  return v.length ? v[Math.ceil(v.length / 2) - 1] : null;
}

function pct(v) {
  return v === null || v === undefined ? "–" : `${(v * 100).toFixed(0)} %`;
}

function statsSection(st, name) {
  if (!st.runs) return h("p", { class: "muted" }, "No runs yet.");
  const x = (v) => (v ? `${v.toFixed(2)}×` : "–");
  return [
    h("dl", { class: "figures" },
      h("div", {}, h("dt", {}, "runs"), h("dd", {}, h("a", { href: `#/runs?workflow=${enc(name)}` }, String(st.runs)),
        ` (${Object.entries(st.by_status).map(([k, v]) => `${(STATUS[k] || {}).sign || ""} ${v} ${k}`).join(", ")})`)),
      h("div", {}, h("dt", {}, "wall vs one node at a time (median)"), h("dd", { "data-figure": "parallel" }, `${ms(median(st.recent.map((p) => p.span_ms)))} vs ${ms(median(st.recent.map((p) => p.node_time_ms)))}`)),
      h("div", {}, h("dt", {}, "latency p50 / p90 / p99"), h("dd", { "data-figure": "latency" }, `${ms(st.latency_ms.p50)} / ${ms(st.latency_ms.p90)} / ${ms(st.latency_ms.p99)}`)),
      h("div", {}, h("dt", {}, "failure rate"), h("dd", {}, pct(st.failure_rate))),
      h("div", {}, h("dt", {}, "speedup (median, mean)"), h("dd", { "data-figure": "speedup" }, `${x(st.speedup.p50)}, ${x(st.speedup.mean)}`))),
    h("h3", {}, "Speedup over recent runs"),
    speedupChart(st.recent),
    h("h3", {}, "By node"),
    h("table", { class: "node-stats" },
      h("thead", {}, h("tr", {}, ["node", "runs", "failed", "fell back", "failure rate", "p50", "p90"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, st.nodes.map((n) => h("tr", { "data-node": n.node },
        h("th", { scope: "row" }, n.node), h("td", {}, n.runs), h("td", {}, n.failed), h("td", {}, n.fell_back),
        h("td", { class: n.failure_rate > 0 ? "warn" : "" }, pct(n.failure_rate)),
        h("td", {}, ms(n.duration_ms.p50)), h("td", {}, ms(n.duration_ms.p90)))))),
  ];
}

export function workflowPage(main, name) {
  const ctl = new AbortController();
  (async () => {
    try {
      const w = await api(`/v1/workflows/${enc(name)}`, { signal: ctl.signal });
      const def = w.fingerprint ? await api(`/v1/workflows/${enc(name)}/definition`, { signal: ctl.signal }) : null;
      const stats = await api(`/v1/workflows/${enc(name)}/stats?limit=50`, { signal: ctl.signal }).catch(() => null);
      const start = def
        ? inputsForm(def.inputs, {
          submit: "Start run",
          formLabel: `Inputs of ${name}`,
          onSubmit: async (inputs) => {
            try {
              const run = await api(`/v1/workflows/${enc(name)}/runs`, { method: "POST", body: { inputs } });
              location.hash = `#/runs/${enc(run.run_id)}`;
              return [];
            } catch (e) {
              return e.problems && e.problems.length ? e.problems : [{ input: "", message: e.message }];
            }
          },
        })
        : h("p", {}, "Nothing to run: no version of this workflow compiles.");
      render(main,
        h("p", { class: "crumbs" }, h("a", { href: "#/" }, "Workflows"), " / ", name),
        h("h1", {}, name, " ", validity(w)),
        def && def.description ? h("p", { class: "lead" }, def.description) : null,
        h("p", { class: "muted" }, w.file, def ? ` · version ${shortId(def.fingerprint)} · ${def.mode} · loaded ${when(w.loaded_at)}` : ""),
        serving(w),
        diagnostics(w),
        def ? h("section", { "aria-labelledby": "dag-h" }, h("h2", { id: "dag-h" }, "DAG"), h("div", { class: "scroll" }, drawDag(def, { detail: (n) => (n.when ? `when ${n.when}` : n.writes.length ? `→ ${n.writes.join(", ")}` : n.kind) }))) : null,
        def ? h("section", { "aria-labelledby": "in-h" }, h("h2", { id: "in-h" }, "Inputs"), inputsTable(def)) : null,
        h("section", { "aria-labelledby": "start-h", class: "start" }, h("h2", { id: "start-h" }, "Start a run"), start),
        h("section", { "aria-labelledby": "stats-h" }, h("h2", { id: "stats-h" }, "Recent runs in figures"),
          stats ? statsSection(stats, name) : h("p", { class: "muted" }, "Unavailable.")));
    } catch (e) {
      if (e.name !== "AbortError") render(main, h("h1", {}, name), errorBox(e));
    }
  })();
  return () => ctl.abort();
}
