// The API client: every call to `/v1` goes through here, with the bearer token the user gave
// (kept in this tab's sessionStorage only). Events come over `fetch` streaming rather than
// EventSource, because EventSource cannot send an Authorization header.

const TOKEN_KEY = "braid.token";

export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** An error the API answered (or the network gave). */
export class ApiError extends Error {
  constructor(status, code, message, problems) {
    super(message);
    this.status = status;
    this.code = code;
    this.problems = problems || [];
  }
}

function headers(extra) {
  const h = { Accept: "application/json", ...extra };
  const t = token();
  if (t) h.Authorization = `Bearer ${t}`;
  return h;
}

/** Listeners told when a request is refused for want of a token. */
const unauthorized = new Set();
export function onUnauthorized(f) {
  unauthorized.add(f);
}

async function fail(r) {
  let body = null;
  try {
    body = await r.json();
  } catch {
    /* not JSON */
  }
  const e = body && body.error ? body.error : {};
  if (r.status === 401) unauthorized.forEach((f) => f());
  return new ApiError(r.status, e.code || "http", e.message || `HTTP ${r.status}`, e.problems);
}

/** GET or POST a JSON route; answers the parsed body. */
export async function api(path, { method = "GET", body, signal } = {}) {
  let r;
  try {
    r = await fetch(path, {
      method,
      signal,
      headers: headers(body === undefined ? {} : { "Content-Type": "application/json" }),
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError(0, "network", `the service did not answer (${e.message})`);
  }
  if (!r.ok) throw await fail(r);
  return r.json();
}

/**
 * Follows a run's events until the stream ends (the run ended or stopped to wait) or `signal`
 * aborts. `onEvent({id, event, data})` gets each; answers the last journal sequence number seen.
 */
export async function streamEvents(runId, lastId, onEvent, signal) {
  const h = headers({ Accept: "text/event-stream" });
  if (lastId !== null && lastId !== undefined) h["Last-Event-ID"] = String(lastId);
  const r = await fetch(`/v1/runs/${encodeURIComponent(runId)}/events`, { headers: h, signal });
  if (!r.ok) throw await fail(r);
  const reader = r.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let last = lastId;
  let ev = { id: null, event: "message", data: [] };
  const dispatch = () => {
    if (ev.data.length) {
      let data = ev.data.join("\n");
      try {
        data = JSON.parse(data);
      } catch {
        /* keep the text */
      }
      if (ev.id !== null) last = Number(ev.id);
      onEvent({ id: ev.id, event: ev.event, data });
    }
    ev = { id: null, event: "message", data: [] };
  };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let nl;
    while ((nl = buffer.search(/\r?\n/)) >= 0) {
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + (buffer[nl] === "\r" ? 2 : 1));
      if (line === "") {
        dispatch();
        continue;
      }
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let val = colon < 0 ? "" : line.slice(colon + 1);
      if (val.startsWith(" ")) val = val.slice(1);
      if (field === "id") ev.id = val;
      else if (field === "event") ev.event = val;
      else if (field === "data") ev.data.push(val);
    }
  }
  dispatch();
  return last;
}
