// The run's timeline as SVG: one row per node, a bar from its first attempt's start to its end
// (growing while it runs), earlier failed attempts drawn as hatched segments, and the critical
// path outlined and named. Times are milliseconds from the run's first event.

import { s, statusText, ms } from "./dom.js";

const LABEL = 150;
const CHART = 640;
const ROW = 26;
const TOP = 26;

function niceStep(total) {
  const raw = total / 6;
  const p = 10 ** Math.floor(Math.log10(Math.max(raw, 1)));
  for (const m of [1, 2, 5, 10]) if (m * p >= raw) return m * p;
  return 10 * p;
}

/**
 * Draws rows `[{name, start, end, status, retries: [{start, end}]}]` (ms; `end` null while
 * running) at time `now`, marking the nodes of `critical`. Answers the SVG element.
 */
export function drawGantt(rows, now, critical) {
  const onPath = new Set(critical || []);
  const total = Math.max(1, now, ...rows.map((r) => r.end || 0));
  const x = (t) => LABEL + (Math.max(0, t) / total) * CHART;
  const height = TOP + rows.length * ROW + 8;
  const width = LABEL + CHART + 70;
  const svg = s("svg", {
    class: "gantt",
    viewBox: `0 0 ${width} ${height}`,
    width,
    height,
    role: "img",
    "aria-label": `Timeline: ${rows.filter((r) => r.start !== null).length} of ${rows.length} nodes started, ${ms(total)} so far`,
  });
  const step = niceStep(total);
  const axis = s("g", { class: "axis" });
  for (let t = 0; t <= total + 0.5; t += step) {
    axis.append(
      s("line", { x1: x(t), x2: x(t), y1: TOP - 6, y2: height - 4 }),
      s("text", { x: x(t), y: TOP - 10, "text-anchor": "middle" }, ms(t)),
    );
  }
  svg.append(axis);
  rows.forEach((r, i) => {
    const y = TOP + i * ROW;
    const crit = onPath.has(r.name);
    const g = s("g", { class: `gantt-row${crit ? " critical" : ""}`, "data-node": r.name, "data-status": r.status });
    g.append(s("text", { x: LABEL - 8, y: y + 17, "text-anchor": "end", class: "label" }, `${crit ? "◆ " : ""}${r.name}`));
    if (r.start !== null && r.start !== undefined) {
      const end = r.end ?? now;
      for (const t of r.retries || []) {
        g.append(s("rect", { class: "retry", x: x(t.start), y: y + 5, width: Math.max(2, x(t.end) - x(t.start)), height: ROW - 10 },
          s("title", {}, `${r.name}: failed attempt ${t.attempt || ""} ${ms(t.start)} – ${ms(t.end)}`)));
      }
      // The last attempt's bar; the failed attempts before it are drawn on their own.
      const from = r.retries && r.retries.length && r.attemptStart !== null && r.attemptStart !== undefined ? r.attemptStart : r.start;
      g.append(s("rect", { class: `bar st-${r.status}`, x: x(from), y: y + 4, width: Math.max(2, x(end) - x(from)), height: ROW - 8, rx: 3 },
        s("title", {}, `${r.name}: ${statusText(r.status)}, ${ms(r.start)} – ${r.end === null ? "now" : ms(end)} (${ms(end - r.start)})${crit ? ", on the critical path" : ""}`)));
      g.append(s("text", { x: x(end) + 5, y: y + 17, class: "dur" }, r.end === null ? `${ms(end - r.start)}…` : ms(end - r.start)));
    } else {
      g.append(s("text", { x: LABEL + 4, y: y + 17, class: "dur" }, statusText(r.status)));
    }
    svg.append(g);
  });
  return svg;
}
