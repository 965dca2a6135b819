// Small DOM helpers. Text is always set as text (never parsed as HTML): names, messages and
// values come from workflow files and runs.

const SVG_NS = "http://www.w3.org/2000/svg";

function build(el, attrs, children) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.setAttribute("class", v);
    else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** An HTML element: `h("p", {class: "x"}, "text", child)`. */
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** An SVG element. */
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

/** Each status as a word and a sign, so it never rests on colour alone. */
export const STATUS = {
  pending: { sign: "○", word: "pending" },
  running: { sign: "▶", word: "running" },
  retrying: { sign: "↻", word: "retrying" },
  succeeded: { sign: "✓", word: "succeeded" },
  degraded: { sign: "⚠", word: "degraded" },
  fell_back: { sign: "⚠", word: "fell back" },
  failed: { sign: "✗", word: "failed" },
  skipped: { sign: "–", word: "skipped" },
  cancelled: { sign: "■", word: "cancelled" },
  not_started: { sign: "·", word: "not started" },
  waiting: { sign: "‖", word: "waiting" },
};

export function statusText(status) {
  const st = STATUS[status] || { sign: "?", word: status };
  return `${st.sign} ${st.word}`;
}

/** A status badge: coloured, with its sign and word. */
export function badge(status, attrs = {}) {
  return h("span", { class: `badge st-${status}`, "data-status": status, ...attrs }, statusText(status));
}

export function ms(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  if (v >= 10000) return `${(v / 1000).toFixed(1)} s`;
  return `${Math.round(v)} ms`;
}

export function when(micros) {
  if (!micros) return "–";
  return new Date(micros / 1000).toLocaleString();
}

export function shortId(id) {
  return id ? id.slice(0, 8) : "";
}

export function json(v) {
  return JSON.stringify(v, null, 2);
}

/** Replaces the main region's content and moves focus to its heading, for screen readers. */
export function render(main, ...children) {
  main.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
  const heading = main.querySelector("h1");
  if (heading) {
    heading.setAttribute("tabindex", "-1");
    heading.focus({ preventScroll: true });
  }
}

export function announce(text) {
  const el = document.getElementById("announce");
  if (el) el.textContent = text;
}

export function errorBox(e) {
  return h("div", { class: "error", role: "alert" }, e.message || String(e));
}
