// The DAG as SVG, drawn here rather than by a library: a layered layout from left to right,
// one column per longest-path layer (the server computes `layer` from the compiled plan), rows
// ordered by the mean row of each node's needs to keep edges short. Each node carries its status
// as an attribute (`data-status`), a class (its colour), and text (a sign and a word).

import { s, statusText } from "./dom.js";

const W = 176;
const H = 48;
const GAP_X = 60;
const GAP_Y = 18;
const PAD = 12;

function truncate(text, n) {
  return text.length > n ? `${text.slice(0, n - 1)}…` : text;
}

/**
 * Columns of items, rows ordered by the mean row of each item's predecessors (two sweeps). An
 * edge that spans several layers gets a virtual item in each layer it crosses, so it is routed
 * between the nodes of those layers instead of through them.
 */
function layout(nodes) {
  const layerOf = new Map(nodes.map((n) => [n.name, n.layer]));
  const items = new Map(nodes.map((n) => [n.name, { id: n.name, layer: n.layer, preds: [], real: true }]));
  const chains = [];
  for (const n of nodes) {
    for (const d of n.needs) {
      const via = [];
      let prev = d;
      for (let l = layerOf.get(d) + 1; l < n.layer; l++) {
        const id = `${d}\u0000${n.name}\u0000${l}`;
        items.set(id, { id, layer: l, preds: [prev], real: false });
        via.push(id);
        prev = id;
      }
      items.get(n.name).preds.push(prev);
      chains.push({ from: d, to: n.name, via });
    }
  }
  const columns = [];
  for (const it of items.values()) (columns[it.layer] ||= []).push(it.id);
  const row = new Map();
  const place = () => columns.forEach((col) => col.forEach((id, i) => row.set(id, i - col.length / 2)));
  place();
  for (let sweep = 0; sweep < 2; sweep++) {
    for (let c = 1; c < columns.length; c++) {
      const score = (id) => {
        const preds = items.get(id).preds;
        return preds.length ? preds.reduce((a, d) => a + row.get(d), 0) / preds.length : 0;
      };
      columns[c].sort((a, b) => score(a) - score(b));
      place();
    }
  }
  return { columns: columns.filter(Boolean), chains, items };
}

const VIRTUAL = 16;

/**
 * Draws `definition` (from `/v1/workflows/{name}/definition`). Answers the SVG element; its
 * nodes are `g.dag-node[data-node=NAME]`. `detail(node)` gives a node's second line (default:
 * its status, for `setStatus` to update).
 */
export function drawDag(definition, { label, detail } = {}) {
  const { columns, chains, items } = layout(definition.nodes);
  const tall = (id) => (items.get(id).real ? H : VIRTUAL);
  const colHeight = (col) => col.reduce((a, id) => a + tall(id), 0) + (col.length - 1) * GAP_Y;
  const inner = Math.max(H, ...columns.map(colHeight));
  const width = PAD * 2 + columns.length * W + (columns.length - 1) * GAP_X;
  const height = PAD * 2 + inner;
  const pos = new Map();
  columns.forEach((col, c) => {
    let y = PAD + (inner - colHeight(col)) / 2;
    for (const id of col) {
      pos.set(id, { x: PAD + c * (W + GAP_X), y, h: tall(id) });
      y += tall(id) + GAP_Y;
    }
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
  for (const { from, to, via } of chains) {
    // Through each virtual item straight across its column, curving between columns.
    const a = pos.get(from);
    const b = pos.get(to);
    const points = [[a.x + W, a.y + H / 2]];
    for (const v of via) {
      const p = pos.get(v);
      points.push([p.x, p.y + p.h / 2], [p.x + W, p.y + p.h / 2]);
    }
    points.push([b.x - 2, b.y + H / 2]);
    let d = `M ${points[0][0]} ${points[0][1]}`;
    for (let i = 1; i < points.length; i++) {
      const [x1, y1] = points[i - 1];
      const [x2, y2] = points[i];
      if (i % 2 === 0) d += ` L ${x2} ${y2}`;
      else {
        const mid = (x1 + x2) / 2;
        d += ` C ${mid} ${y1}, ${mid} ${y2}, ${x2} ${y2}`;
      }
    }
    edges.append(s("path", { class: "edge", "data-from": from, "data-to": to, d, "marker-end": "url(#arrow)" }));
  }
  svg.append(edges);
  for (const n of definition.nodes) {
    const p = pos.get(n.name);
    const g = s("g", { class: "dag-node st-pending", "data-node": n.name, "data-status": "pending", transform: `translate(${p.x} ${p.y})` },
      s("title", {}, `${n.name} (${n.kind})${n.description ? `: ${n.description}` : ""}`),
      s("rect", { width: W, height: H, rx: 7 }),
      s("text", { x: 10, y: 19, class: "name" }, truncate(n.name, 19)),
      s("text", { x: 10, y: 37, class: detail ? "detail" : "status" }, truncate(detail ? detail(n) : statusText("pending"), 26)),
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
