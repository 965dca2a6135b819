// The console of `braid serve` in a real browser: Debian's chromium driven by playwright-core,
// against `target/debug/braid serve` on a free loopback port, over a temporary copy of the
// repository's `workflows/` plus this directory's `workflows/` (so the test can break a file).
// Screenshots of every page go to `target/console-screenshots/`.
//
// Run: `cargo build -p braid-cli && npm ci && npm test` in this directory (see docs/console.md).
// `BRAID_BIN` overrides the binary, `CHROMIUM` the browser.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { createServer as createHttpServer } from "node:http";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, "../../../..");
const target = process.env.CARGO_TARGET_DIR ? resolve(process.env.CARGO_TARGET_DIR) : join(repo, "target");
const bin = process.env.BRAID_BIN || join(target, "debug", "braid");
const shots = join(target, "console-screenshots");
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
const WAIT = 20_000;

let browser;
let page;
let work;
const servers = [];
const problems = [];

function freePort() {
  return new Promise((ok, fail) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", fail);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => ok(port));
    });
  });
}

/** Starts `braid serve DIR` and answers its base URL once it is ready. */
async function serve(dir, env = {}) {
  const port = await freePort();
  const log = [];
  const child = spawn(bin, ["serve", dir, "--store", "memory", "--listen", `127.0.0.1:${port}`, "--poll", "300ms"], {
    env: { ...process.env, RUST_LOG: "warn", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout.on("data", (d) => log.push(String(d)));
  child.stderr.on("data", (d) => log.push(String(d)));
  servers.push(child);
  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + WAIT;
  for (;;) {
    try {
      const r = await fetch(`${base}/readyz`);
      if (r.ok) return base;
    } catch {
      /* not yet */
    }
    if (child.exitCode !== null || Date.now() > deadline) {
      throw new Error(`braid serve did not start (${bin}):\n${log.join("")}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function shot(name) {
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
}

let base;

/** The answer the stub model streams, a token every 120 ms. */
const TOKENS = ["Rotate ", "your ", "keys ", "in ", "the ", "secrets ", "manager."];

/** A stub OpenAI-compatible server that streams `TOKENS`; answers its base URL. */
function stubLlm() {
  const server = createHttpServer((req, res) => {
    req.resume();
    req.on("end", async () => {
      res.writeHead(200, { "Content-Type": "text/event-stream" });
      const chunk = (delta) => `data: ${JSON.stringify({ object: "chat.completion.chunk", choices: [{ index: 0, delta }] })}\n\n`;
      res.write(chunk({ role: "assistant", content: "" }));
      for (const t of TOKENS) {
        await new Promise((r) => setTimeout(r, 120));
        res.write(chunk({ content: t }));
      }
      res.write(`data: ${JSON.stringify({ choices: [], usage: { prompt_tokens: 12, completion_tokens: TOKENS.length, total_tokens: 12 + TOKENS.length } })}\n\n`);
      res.end("data: [DONE]\n\n");
    });
  });
  servers.push({ kill: () => server.close() });
  return new Promise((ok) => server.listen(0, "127.0.0.1", () => ok(`http://127.0.0.1:${server.address().port}/v1`)));
}

function llmWorkflow(baseUrl) {
  return `version: 1
name: llm-stream
description: Retrieval, then an LLM that streams its answer (a stub server in the test).
inputs:
  query: { type: string, default: "How do I rotate my keys?" }
state:
  docs: { reducer: replace, default: [] }
  response: { reducer: replace }
nodes:
  rag:
    kind: mock
    writes: [docs]
    with: { latency: 100ms, output: { docs: [guide.pdf] } }
  llm:
    kind: llm
    needs: [rag]
    writes: [response]
    with:
      base_url: ${baseUrl}
      model: stub
      user: "{{ inputs.query }}"
      stream: true
      output: { text: response }
`;
}

before(async () => {
  rmSync(shots, { recursive: true, force: true });
  mkdirSync(shots, { recursive: true });
  work = mkdtempSync(join(tmpdir(), "braid-console-"));
  const dir = join(work, "workflows");
  cpSync(join(repo, "workflows"), dir, { recursive: true });
  cpSync(join(here, "workflows"), dir, { recursive: true });
  writeFileSync(join(dir, "llm-stream.yaml"), llmWorkflow(await stubLlm()));
  base = await serve(dir);
  // A fresh profile in the temporary directory: nothing from an earlier run.
  browser = await chromium.launchPersistentContext(join(work, "chromium"), {
    executablePath,
    headless: true,
    viewport: { width: 1280, height: 900 },
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  page = browser.pages()[0] || (await browser.newPage());
  page.setDefaultTimeout(WAIT);
  // Every script error and every refused resource (a CSP violation, a 404) fails the run at
  // the end; nothing may be fetched from anywhere but the service.
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") problems.push(`console error: ${m.text()}`);
  });
  page.on("request", (r) => {
    if (!r.url().startsWith("http://127.0.0.1:")) problems.push(`request elsewhere: ${r.url()}`);
  });
});

after(async () => {
  await browser?.close();
  for (const s of servers) s.kill("SIGTERM");
  if (work) rmSync(work, { recursive: true, force: true });
});

/** Starts a run of `workflow` from its page's form, after `fill`, and answers the run's id. */
async function startFromForm(workflow, fill, { keyboard = false } = {}) {
  await page.goto(`${base}/#/workflows/${workflow}`);
  await page.locator("h1", { hasText: workflow }).waitFor();
  await page.locator("form.inputs button[type=submit]").waitFor();
  if (fill) await fill();
  if (keyboard) {
    // From the keyboard alone: Tab moves from field to field to the button, Enter presses it.
    await page.locator("form.inputs input").first().focus();
    for (let i = 0; i < 10; i++) {
      if (await page.evaluate(() => document.activeElement?.textContent === "Start run")) break;
      await page.keyboard.press("Tab");
    }
    assert.equal(await page.evaluate(() => document.activeElement?.textContent), "Start run");
    await shot("05-keyboard-focus");
    await page.keyboard.press("Enter");
  } else {
    await page.getByRole("button", { name: "Start run" }).click();
  }
  await page.waitForURL(/#\/runs\/[0-9a-f-]+$/);
  return decodeURIComponent(page.url().split("#/runs/")[1]);
}

const node = (name) => page.locator(`svg.dag g.dag-node[data-node="${name}"]`);
const row = (name) => page.locator(`svg.gantt g.gantt-row[data-node="${name}"]`);

test("the console's assets are served with a strict policy and caching", async () => {
  const r = await fetch(`${base}/`);
  assert.equal(r.status, 200);
  assert.match(r.headers.get("content-type"), /^text\/html/);
  assert.match(r.headers.get("content-security-policy"), /script-src 'self'/);
  assert.doesNotMatch(r.headers.get("content-security-policy"), /unsafe-inline/);
  const etag = r.headers.get("etag");
  assert.ok(etag, "an ETag");
  const again = await fetch(`${base}/`, { headers: { "If-None-Match": etag } });
  assert.equal(again.status, 304);
  const js = await fetch(`${base}/console/app.js`);
  assert.match(js.headers.get("content-type"), /^text\/javascript/);
});

test("the workflows page lists every workflow with its description", async () => {
  await page.goto(`${base}/`);
  await page.locator('li.card[data-workflow="mode1-manual"]').waitFor();
  const text = await page.locator('li.card[data-workflow="mode1-manual"]').innerText();
  assert.match(text, /Retrieval fan-out/);
  assert.match(text, /7 nodes/);
  await shot("01-workflows");
});

test("mode 1 starts from the form and every node turns green, live, with the speedup", async () => {
  await page.goto(`${base}/#/workflows/mode1-manual`);
  await page.locator("h1", { hasText: "mode1-manual" }).waitFor();
  await page.locator("svg.dag g.dag-node").first().waitFor();
  assert.equal(await page.locator("svg.dag g.dag-node").count(), 7);
  await shot("02-workflow-mode1");
  const id = await startFromForm("mode1-manual", async () => {
    await page.getByLabel("query").fill("how do I rotate keys from the console?");
  });
  // Live: llm is seen running (it takes 2 s) before it succeeds.
  await node("llm").and(page.locator('[data-status="running"]')).waitFor();
  assert.equal(await node("rag").getAttribute("data-status"), "succeeded");
  await shot("03-run-mode1-live");
  await page.locator('#run-badge[data-status="succeeded"]').waitFor();
  for (const n of ["rag", "tools", "memory", "llm", "quality", "citations", "cost_tracking"]) {
    assert.equal(await node(n).getAttribute("data-status"), "succeeded", `${n} in the DAG`);
    assert.equal(await row(n).getAttribute("data-status"), "succeeded", `${n} in the timeline`);
  }
  const speedup = Number(await page.locator("#speedup").getAttribute("data-speedup"));
  assert.ok(speedup > 1.1 && speedup < 1.4, `speedup ${speedup}`);
  assert.equal(await page.locator("#critical-path").innerText(), "rag → llm → citations");
  assert.equal(await page.locator("svg.gantt g.gantt-row.critical").count(), 3);
  const state = JSON.parse(await page.locator("#state").innerText());
  assert.match(state.response, /from the console/);
  const run = await (await fetch(`${base}/v1/runs/${id}`)).json();
  assert.equal(run.status, "succeeded");
  await shot("04-run-mode1-succeeded");
});

test("a retrieval branch that fails and falls back shows it", async () => {
  await startFromForm("mode1-fallback", null, { keyboard: true });
  await page.locator('#run-badge[data-status="degraded"]').waitFor();
  assert.equal(await node("rag").getAttribute("data-status"), "fell_back");
  assert.match(await node("rag").textContent(), /fell back/);
  for (const n of ["tools", "llm", "quality"]) assert.equal(await node(n).getAttribute("data-status"), "succeeded", n);
  const outcome = await page.locator('[data-fell-back="rag"]').innerText();
  assert.match(outcome, /the document index is unavailable/);
  assert.match(outcome, /2 attempts/);
  assert.match(outcome, /"rag_results":\[\]/);
  const failures = await page.locator('tr[data-node="rag"] td.failure').innerText();
  assert.match(failures, /try 1: .*unavailable/);
  assert.match(failures, /try 2: .*unavailable/);
  assert.equal(await page.locator("svg.gantt g.gantt-row[data-node=rag] rect.retry").count(), 1);
  await shot("05-run-fallback-degraded");
});

test("a failed run says which node failed, why, and what the run did", async () => {
  await startFromForm("fails", async () => {
    await page.getByLabel("title").fill("Braids");
  });
  await page.locator('#run-badge[data-status="failed"]').waitFor();
  assert.equal(await node("publish").getAttribute("data-status"), "failed");
  assert.equal(await node("draft").getAttribute("data-status"), "succeeded");
  assert.equal(await node("notify").getAttribute("data-status"), "not_started");
  const outcome = await page.locator("#outcome").innerText();
  assert.match(outcome, /Node publish failed/);
  assert.match(outcome, /the publishing service said 503/);
  assert.ok(await page.locator("#retry").isEnabled());
  await shot("06-run-failed");
});

test("a run is cancelled, resumed and retried from its buttons", async () => {
  await startFromForm("mode1-manual");
  await node("llm").and(page.locator('[data-status="running"]')).waitFor();
  await page.getByRole("button", { name: "Cancel run" }).click();
  await page.locator('#run-badge[data-status="cancelled"]').waitFor();
  assert.equal(await node("llm").getAttribute("data-status"), "cancelled");
  assert.equal(await node("rag").getAttribute("data-status"), "succeeded");
  assert.match(await page.locator("#outcome").innerText(), /The run was cancelled/);
  await shot("07-run-cancelled");
  await page.getByRole("button", { name: "Resume run" }).click();
  await page.locator('#run-badge[data-status="succeeded"]').waitFor();
  for (const n of ["rag", "llm", "quality", "citations", "cost_tracking"]) {
    assert.equal(await node(n).getAttribute("data-status"), "succeeded", n);
  }
  // Retry from `quality`: it and nothing else runs again, and the run is continued twice.
  await page.getByLabel("Retry").selectOption("quality");
  await page.getByRole("button", { name: "Retry", exact: true }).click();
  await page.waitForFunction(() => document.querySelector("main p.muted")?.textContent.includes("continued 2×"));
  await page.locator('#run-badge[data-status="succeeded"]').waitFor();
  assert.equal(await node("quality").getAttribute("data-status"), "succeeded");
});

test("a required input left empty is refused by the form, by field", async () => {
  await page.goto(`${base}/#/workflows/fails`);
  await page.getByRole("button", { name: "Start run" }).click();
  await page.locator('input[name="title"][aria-invalid="true"]').waitFor();
  assert.match(page.url(), /#\/workflows\/fails$/);
});

test("a waiting node is answered from its form and the run finishes", async () => {
  await startFromForm("approval");
  await page.locator('#run-badge[data-status="waiting"]').waitFor();
  assert.equal(await node("approve").getAttribute("data-status"), "waiting");
  const form = page.locator('form[data-answer="approve"]');
  await form.waitFor();
  await shot("08-run-waiting");
  await form.getByLabel("approved").check();
  await form.getByLabel("note").fill("looks good");
  await form.getByRole("button", { name: "Answer approve" }).click();
  await page.locator('#run-badge[data-status="succeeded"]').waitFor();
  assert.equal(await node("approve").getAttribute("data-status"), "succeeded");
  assert.equal(await node("publish").getAttribute("data-status"), "succeeded");
  const state = JSON.parse(await page.locator("#state").innerText());
  assert.deepEqual(state.approval, { approved: true, note: "looks good" });
  await shot("09-run-answered");
});

test("an LLM's tokens show as they stream", async () => {
  await startFromForm("llm-stream");
  const stream = page.locator('#tokens .tokens[data-node="llm"] pre');
  // Seen part-way (the stub sends a token every 120 ms), then whole.
  await page.waitForFunction(() => {
    const t = document.querySelector('#tokens .tokens[data-node="llm"] pre')?.textContent || "";
    return t.length > 0 && !t.endsWith("manager.");
  });
  assert.equal(await node("llm").getAttribute("data-status"), "running");
  await shot("10-run-llm-streaming");
  await page.locator('#run-badge[data-status="succeeded"]').waitFor();
  assert.equal(await stream.textContent(), TOKENS.join(""));
  const state = JSON.parse(await page.locator("#state").innerText());
  assert.equal(state.response, TOKENS.join(""));
});

test("the runs list filters by workflow and status, and updates live", async () => {
  await page.goto(`${base}/#/runs`);
  await page.locator("table.runs tbody tr").first().waitFor();
  await shot("11-runs");
  await page.getByLabel("Status").selectOption("degraded");
  await page.waitForURL(/status=degraded/);
  await page.waitForFunction(() => {
    const rows = [...document.querySelectorAll("table.runs tbody tr")];
    return rows.length > 0 && rows.every((r) => r.dataset.status === "degraded");
  });
  // A finished run opened from the list replays its events: the same picture as live.
  await page.locator("table.runs tbody tr a").first().click();
  await page.locator('#run-badge[data-status="degraded"]').waitFor();
  await page.waitForFunction(() => document.querySelector('svg.dag g.dag-node[data-node="rag"]')?.dataset.status === "fell_back");
  assert.equal(await page.locator("#critical-path").innerText(), "rag → llm → quality");
  await page.goBack();
  await page.locator("table.runs tbody tr").first().waitFor();
  await page.getByLabel("Status").selectOption("");
  await page.getByLabel("Workflow").selectOption("approval");
  await page.waitForURL(/workflow=approval/);
  await page.waitForFunction(() => {
    const rows = [...document.querySelectorAll("table.runs tbody tr")];
    return rows.length === 1 && rows[0].dataset.workflow === "approval";
  });
  // A run started elsewhere appears without a reload.
  const r = await fetch(`${base}/v1/workflows/approval/runs`, { method: "POST", body: "{}" });
  const { run_id: id } = await r.json();
  await page.locator(`table.runs tbody tr[data-run="${id}"]`).waitFor();
  await shot("12-runs-filtered");
});

test("the workflow page shows latency percentiles, failure rate by node and speedup", async () => {
  await page.goto(`${base}/#/workflows/mode1-fallback`);
  await page.locator("h1", { hasText: "mode1-fallback" }).waitFor();
  await page.locator('[data-figure="latency"]').waitFor();
  assert.match(await page.locator('[data-figure="latency"]').innerText(), /\d+ ms \/ \d+ ms \/ \d+ ms/);
  assert.match(await page.locator('table.node-stats tr[data-node="rag"]').innerText(), /100 %/);
  assert.match(await page.locator('[data-figure="speedup"]').innerText(), /\d\.\d\d×/);
  await page.goto(`${base}/#/workflows/mode1-manual`);
  await page.locator("h1", { hasText: "mode1-manual" }).waitFor();
  await page.locator("svg.spark rect").first().waitFor();
  await page.locator('table.node-stats tr[data-node="llm"]').waitFor();
  await shot("13-workflow-stats");
});

test("a broken workflow file shows its diagnostics and the version still serving", async () => {
  const file = join(work, "workflows", "mode1-manual.yaml");
  const { fingerprint } = await (await fetch(`${base}/v1/workflows/mode1-manual`)).json();
  writeFileSync(file, readFileSync(file, "utf8").replace("needs: [rag,", "needs: [rga,"));
  await page.goto(`${base}/`);
  const card = page.locator('li.card[data-workflow="mode1-manual"]');
  const deadline = Date.now() + WAIT;
  while ((await card.locator('[data-valid="false"]').count()) === 0) {
    assert.ok(Date.now() < deadline, "the broken file is not shown invalid");
    await page.waitForTimeout(250);
    await page.reload();
    await card.waitFor();
  }
  const diag = await card.locator("pre.diag").innerText();
  assert.match(diag, /error\[unknown-need\]: node `llm` needs `rga`, which is not a node/);
  assert.match(diag, /mode1-manual\.yaml:\d+:\d+/);
  assert.match(diag, /needs: \[rga, tools, memory\]/);
  assert.match(diag, /help: did you mean `rag`\?/);
  assert.match(await card.locator(".serving").innerText(), new RegExp(fingerprint.slice(0, 8)));
  await card.scrollIntoViewIfNeeded();
  await shot("14-workflow-invalid");
  await page.goto(`${base}/#/workflows/mode1-manual`);
  await page.locator("h1", { hasText: "mode1-manual" }).waitFor();
  await page.locator("pre.diag").waitFor();
  await page.locator("svg.dag g.dag-node").first().waitFor();
  assert.equal(await page.locator("svg.dag g.dag-node").count(), 7, "the serving version still draws");
  await shot("15-workflow-invalid-page");
});

test("with tokens, the page loads, asks for one, and works once given", async () => {
  const dir = join(work, "workflows");
  const secured = await serve(dir, { BRAID_SERVE_TOKENS: "console-test-token" });
  const api = await fetch(`${secured}/v1/workflows`);
  assert.equal(api.status, 401);
  await page.goto(`${secured}/`);
  await page.locator("#banner:not([hidden])").waitFor();
  await page.getByLabel("API token").fill("console-test-token");
  await page.getByRole("button", { name: "Use" }).click();
  await page.locator('li.card[data-workflow="approval"]').waitFor();
  assert.ok(await page.locator("#banner").isHidden());
  await shot("16-tokens");
});

test("nothing went wrong in the page", () => {
  // The token test's refused request is the one expected 401 (the browser logs it).
  const unexpected = problems.filter((p) => !/401 \(Unauthorized\)/.test(p));
  assert.deepEqual(unexpected, []);
});
