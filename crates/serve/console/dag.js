// The DAG as SVG, drawn here rather than by a library: a layered layout from left to right,
// one column per longest-path layer (the server computes `layer` from the compiled plan), rows
// ordered by the mean row of each node's needs to keep edges short. Each node carries its status
// as an attribute (`data-status`), a class (its colour), and text (a sign and a word).

import { s, statusText } from "./dom.js";

const W = 158;
const H = 48;
const GAP_X = 64;
const GAP_Y = 18;
const PAD = 12;

function truncate(text, n) {
  return text.length > n ? `${text.slice(0, n - 1)}…` : text;
}

/** Columns of node names, rows ordered by their needs' mean row (two sweeps). */
function layout(nodes) {
  const columns = [];
  for (const n of nodes) (columns[n.layer] ||= []).push(n.name);
  const row = new Map();
  const place = () => columns.forEach((col) => col.forEach((name, i) => row.set(name, i - col.length / 2)));
  place();
  const byName = new Map(nodes.map((n) => [n.name, n]));
  for (let sweep = 0; sweep < 2; sweep++) {
    for (let c = 1; c < columns.length; c++) {
      const score = (name) => {
        const needs = byName.get(name).needs;
        return needs.length ? needs.reduce((a, d) => a + row.get(d), 0) / needs.length : 0;
      };
      columns[c].sort((a, b) => score(a) - score(b));
      place();
    }
  }
  return columns.filter(Boolean);
}

/**
 * Draws `definition` (from `/v1/workflows/{name}/definition`). Answers the SVG element; its
 * nodes are `g.dag-node[data-node=NAME]`. `setStatus(svg, name, status, note)` updates one.
 */
export function drawDag(definition, { label, detail } = {}) {
  const columns = layout(definition.nodes);
  const rows = Math.max(1, ...columns.map((c) => c.length));
  const width = PAD * 2 + columns.length * W + (columns.length - 1) * GAP_X;
  const height = PAD * 2 + rows * H + (rows - 1) * GAP_Y;
  const pos = new Map();
  columns.forEach((col, c) => {
    const top = PAD + ((rows - col.length) * (H + GAP_Y)) / 2;
    col.forEach((name, i) => pos.set(name, { x: PAD + c * (W + GAP_X), y: top + i * (H + GAP_Y) }));
  });
  const svg = s("svg", {
    class: "dag",
    viewBox: `0 0 ${width} ${height}`,
    width,
    height,
    role: "img",
    "aria-label": label || `The DAG of ${definition.name}: ${definition.nodes.length} nodes in ${columns.length} layers`,
  });
  svg.append(
    s("defs", {}, s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 8, markerHeight: 8, markerUnits: "userSpaceOnUse", orient: "auto-start-reverse" },
      s("path", { d: "M 0 0 L 10 5 L 0 10 z", class: "arrowhead" }))),
  );
  const edges = s("g", { class: "edges" });
  for (const n of definition.nodes) {
    const to = pos.get(n.name);
    for (const d of n.needs) {
      const from = pos.get(d);
      const x1 = from.x + W;
      const y1 = from.y + H / 2;
      const x2 = to.x - 2;
      const y2 = to.y + H / 2;
      const mid = (x1 + x2) / 2;
      edges.append(s("path", {
        class: "edge",
        "data-from": d,
        "data-to": n.name,
        d: `M ${x1} ${y1} C ${mid} ${y1}, ${mid} ${y2}, ${x2} ${y2}`,
        "marker-end": "url(#arrow)",
      }));
    }
  }
  svg.append(edges);
  for (const n of definition.nodes) {
    const p = pos.get(n.name);
    const g = s("g", { class: "dag-node st-pending", "data-node": n.name, "data-status": "pending", transform: `translate(${p.x} ${p.y})` },
      s("title", {}, `${n.name} (${n.kind})${n.description ? `: ${n.description}` : ""}`),
      s("rect", { width: W, height: H, rx: 7 }),
      s("text", { x: 10, y: 19, class: "name" }, truncate(n.name, 19)),
      s("text", { x: 10, y: 37, class: detail ? "detail" : "status" }, truncate(detail ? detail(n) : statusText("pending"), 24)),
      s("text", { x: W - 8, y: 19, class: "kind", "text-anchor": "end" }, truncate(n.kind, 9)),
    );
    svg.append(g);
  }
  return svg;
}

/** Sets one node's status (and a short note, e.g. `try 2`). */
export function setStatus(svg, name, status, note) {
  const g = svg.querySelector(`g.dag-node[data-node="${CSS.escape(name)}"]`);
  if (!g) return;
  g.setAttribute("data-status", status);
  g.setAttribute("class", `dag-node st-${status}`);
  const text = note ? `${statusText(status)} · ${note}` : statusText(status);
  const line = g.querySelector("text.status");
  if (line) line.textContent = text;
  g.querySelector("title").textContent = `${name}: ${text}`;
}

/** Marks the nodes and edges of the critical path. */
export function markCritical(svg, path) {
  const on = new Set(path || []);
  svg.querySelectorAll("g.dag-node").forEach((g) => g.classList.toggle("critical", on.has(g.dataset.node)));
  const pairs = new Set((path || []).slice(1).map((n, i) => `${path[i]}>${n}`));
  svg.querySelectorAll("path.edge").forEach((e) => e.classList.toggle("critical", pairs.has(`${e.dataset.from}>${e.dataset.to}`)));
}
