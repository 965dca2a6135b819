// The runs: newest first, filtered by workflow and status (kept in the address, so a filtered
// list can be linked), refreshed every two seconds while the page is open.

import { api } from "../api.js";
import { h, badge, ms, render, errorBox, shortId, when } from "../dom.js";

const enc = encodeURIComponent;
const STATUSES = ["running", "waiting", "succeeded", "degraded", "failed", "cancelled"];
const EVERY = 2000;

export function runsPage(main, params) {
  const ctl = new AbortController();
  let timer = null;
  const workflow = params.get("workflow") || "";
  const status = params.get("status") || "";
  const body = h("tbody", {});
  const note = h("p", { class: "muted", role: "status" }, "Loading…");
  const wfSelect = h("select", { id: "filter-workflow", name: "workflow" }, h("option", { value: "" }, "any workflow"));
  const stSelect = h("select", { id: "filter-status", name: "status" }, h("option", { value: "" }, "any status"),
    STATUSES.map((st) => h("option", { value: st, selected: st === status }, st)));
  const form = h("form", { class: "filters", "aria-label": "Filter the runs" },
    h("div", { class: "field" }, h("label", { for: "filter-workflow" }, "Workflow"), wfSelect),
    h("div", { class: "field" }, h("label", { for: "filter-status" }, "Status"), stSelect),
    h("button", { type: "submit" }, "Filter"));
  const apply = (ev) => {
    ev?.preventDefault();
    const q = new URLSearchParams();
    if (wfSelect.value) q.set("workflow", wfSelect.value);
    if (stSelect.value) q.set("status", stSelect.value);
    const hash = `#/runs${q.toString() ? `?${q}` : ""}`;
    if (location.hash !== hash) location.hash = hash;
  };
  form.addEventListener("submit", apply);
  wfSelect.addEventListener("change", apply);
  stSelect.addEventListener("change", apply);

  render(main,
    h("h1", {}, "Runs"),
    form,
    note,
    h("table", { class: "runs" },
      h("caption", { class: "sr-only" }, "Runs, newest first"),
      h("thead", {}, h("tr", {}, ["run", "workflow", "status", "created", "took", "restarts"].map((c) => h("th", { scope: "col" }, c)))),
      body));

  api("/v1/workflows", { signal: ctl.signal }).then(({ workflows }) => {
    const names = [...new Set(workflows.map((w) => w.name))];
    if (workflow && !names.includes(workflow)) names.push(workflow);
    wfSelect.append(...names.map((n) => h("option", { value: n, selected: n === workflow }, n)));
  }).catch(() => {});

  const refresh = async () => {
    try {
      const q = new URLSearchParams({ limit: "100" });
      if (workflow) q.set("workflow", workflow);
      if (status) q.set("status", status);
      const { runs } = await api(`/v1/runs?${q}`, { signal: ctl.signal });
      body.replaceChildren(...runs.map((r) => h("tr", { "data-run": r.run_id, "data-status": r.status, "data-workflow": r.workflow },
        h("td", {}, h("a", { href: `#/runs/${enc(r.run_id)}` }, h("code", {}, shortId(r.run_id)))),
        h("td", {}, r.workflow),
        h("td", {}, badge(r.status)),
        h("td", {}, when(r.created_at)),
        h("td", {}, r.ended_at ? ms((r.ended_at - r.created_at) / 1000) : "…"),
        h("td", {}, r.restarts || 0))));
      const filters = [workflow && `workflow ${workflow}`, status && `status ${status}`].filter(Boolean).join(", ");
      note.textContent = `${runs.length} run${runs.length === 1 ? "" : "s"}${filters ? ` (${filters})` : ""}, newest first; updated ${new Date().toLocaleTimeString()}.`;
    } catch (e) {
      if (e.name === "AbortError") return;
      note.replaceChildren(errorBox(e));
    }
    if (!ctl.signal.aborted) timer = setTimeout(refresh, EVERY);
  };
  refresh();
  return () => {
    ctl.abort();
    clearTimeout(timer);
  };
}
