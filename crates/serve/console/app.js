// The console's entry: a hash router (`#/`, `#/workflows/NAME`, `#/runs?workflow=&status=`,
// `#/runs/ID`), the token form, and the banner for errors that concern every page.

import { onUnauthorized, setToken, token } from "./api.js";
import { workflowsPage, workflowPage } from "./pages/workflows.js";
import { runsPage } from "./pages/runs.js";
import { runPage } from "./pages/run.js";

const main = document.getElementById("main");
const banner = document.getElementById("banner");
let leave = null;

function showBanner(text) {
  banner.textContent = text;
  banner.hidden = !text;
}

onUnauthorized(() => {
  showBanner("The service asks for a token: enter it under “API token” above, then reload the page.");
  document.getElementById("token").focus();
});

function route() {
  if (leave) leave();
  leave = null;
  showBanner("");
  const hash = decodeURIComponent(location.hash.replace(/^#/, "")) || "/";
  const [path, query] = hash.split("?");
  const params = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean);
  document.querySelectorAll("[data-nav]").forEach((a) => a.removeAttribute("aria-current"));
  const nav = (name) => document.querySelector(`[data-nav=${name}]`)?.setAttribute("aria-current", "page");
  if (parts[0] === "workflows" && parts[1]) {
    nav("workflows");
    leave = workflowPage(main, parts.slice(1).join("/"));
  } else if (parts[0] === "runs" && parts[1]) {
    nav("runs");
    leave = runPage(main, parts.slice(1).join("/"));
  } else if (parts[0] === "runs") {
    nav("runs");
    leave = runsPage(main, params);
  } else {
    nav("workflows");
    leave = workflowsPage(main);
  }
}

const form = document.getElementById("token-form");
const field = document.getElementById("token");
field.value = token();
form.addEventListener("submit", (ev) => {
  ev.preventDefault();
  setToken(field.value.trim());
  route();
});

window.addEventListener("hashchange", route);
route();
