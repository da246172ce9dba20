// @ts-check
/**
 * The dashboard: sign in with a token, follow the change stream, re-read what changed, act through
 * the public API (with If-Match on the deployment's revision). Viewer tokens get no actions.
 *
 * Sign-in link: `/ui/#token=<token>` (what `npm start` prints). The fragment never leaves the browser (not
 * in a request, a server log or a Referer); the page reads it once, removes it from the address bar and
 * this history entry, and signs in with it as if it had been typed.
 *
 * Live updates: GET /v1/events (server-sent events over fetch). An event names a deployment: the page
 * re-reads that deployment (debounced, one request per deployment per burst). `stats` (once per
 * telemetry bucket) re-reads the list once — P95, error rate and last probe are window statistics
 * that move without events — and the charts of open instances. Nothing polls on its own timer.
 *
 * Data planes (GET /v1/dataplanes: the Envoys this control replica serves over xDS): read on every
 * (re)connect of the stream, on `xds.nack` (an Envoy rejected a configuration: also announced, and shown
 * at the top of the page while it lasts), on `dataplanes` (a node connected, disconnected, ACKed or
 * NACKed; at most one per second), on `stats` and `resync`.
 *
 * Engine load (issue 18): the deployments API does not carry it; the routing table (GET /v1/routing-table,
 * viewers may read it) gives each instance's `load` score. Read with the list (first connection, `stats`,
 * `resync`, coming back to the tab) and on `table` (a new version: load-only changes are coalesced to at
 * most one per publish interval by the control service); an answer overtaken by a later read is dropped.
 */
import { ApiError, createApi, followStream, seg } from "./api.js";
import { byId, fill, h } from "./dom.js";
import { describeError, field, num, openDialog, showIssues } from "./dialog.js";
import { POLICIES, STRATEGIES, cardId, checkText, dataplaneItems, deploymentCard, evidenceList, instKey, modelItems, nackedTypes, stateBadge, xdsTypeName } from "./views.js";

const TOKEN_KEY = "gateway.control.token";

/** @type {{ token: string | null, role: string | null, deployments: Map<string, any>, models: Map<string, any>, open: Set<string>,
 *   timelines: Map<string, any>, histories: Map<string, any>, abort: AbortController | null, watchers: Set<() => void>, loaded: boolean,
 *   dataplanes: any | { error: string } | null, loads: Map<string, { score: number, at_ms: number, interval_ms: number, capacity?: number }> }} */
const state = {
  token: sessionStorage.getItem(TOKEN_KEY),
  role: null,
  deployments: new Map(),
  models: new Map(),
  open: new Set(),
  timelines: new Map(),
  histories: new Map(),
  abort: null,
  watchers: new Set(),
  loaded: false,
  dataplanes: null,
  loads: new Map(),
};
const api = createApi(() => state.token);
const isAdmin = () => state.role === "admin";
const etag = (/** @type {any} */ d) => `"${d.revision}"`;

// ───────────────────────────── session ─────────────────────────────

/**
 * The token of a sign-in link (`#token=…`), once: it is removed from the address bar (and the current
 * history entry) before anything else happens. Other fragment parameters are kept.
 * @returns {string | null}
 */
function takeLinkedToken() {
  if (location.hash.length < 2) return null;
  const params = new URLSearchParams(location.hash.slice(1));
  const t = params.get("token");
  if (t === null) return null;
  params.delete("token");
  const rest = params.toString();
  history.replaceState(history.state, "", `${location.pathname}${location.search}${rest === "" ? "" : `#${rest}`}`);
  return t.trim() === "" ? null : t.trim();
}

/** Sign in with the token of a sign-in link (replacing any session of this tab). @param {string} token */
async function enterWithLink(token) {
  if (state.token) signOut(null);
  state.token = token;
  try {
    await enter();
    sessionStorage.setItem(TOKEN_KEY, token);
  } catch (e) {
    signOut(e instanceof ApiError && e.status === 401 ? "The token of this sign-in link is not accepted by the control service." : e instanceof Error ? e.message : String(e));
  }
}

async function boot() {
  byId("sign-in-form").addEventListener("submit", onSignIn);
  byId("sign-out").addEventListener("click", () => signOut(null));
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && state.loaded) scheduleFull();
  });
  // A sign-in link opened in a tab already showing the page changes only the fragment (no reload).
  window.addEventListener("hashchange", () => {
    const t = takeLinkedToken();
    if (t) void enterWithLink(t);
  });
  const linked = takeLinkedToken();
  if (linked) return enterWithLink(linked);
  if (state.token) {
    try {
      await enter();
      return;
    } catch (e) {
      signOut(e instanceof ApiError && e.status === 401 ? "The saved token is no longer accepted." : describeError(e));
      return;
    }
  }
  signOut(null);
}

/** @param {SubmitEvent} ev */
async function onSignIn(ev) {
  ev.preventDefault();
  const input = /** @type {HTMLInputElement} */ (byId("token"));
  const err = byId("token-error");
  const token = input.value.trim();
  err.textContent = "";
  input.removeAttribute("aria-invalid");
  if (token === "") {
    err.textContent = "Enter a token.";
    input.setAttribute("aria-invalid", "true");
    input.focus();
    return;
  }
  state.token = token;
  try {
    await enter();
    sessionStorage.setItem(TOKEN_KEY, token);
    input.value = "";
  } catch (e) {
    state.token = null;
    err.textContent = e instanceof ApiError && e.status === 401 ? "This token is not accepted by the control service." : e instanceof Error ? e.message : String(e);
    input.setAttribute("aria-invalid", "true");
    input.focus();
  }
}

async function enter() {
  const who = await api("GET", "/v1/whoami");
  if (who.data.role === "plugin") throw new Error("This is a plugin token: it can only read the routing table. Use an admin or viewer token.");
  state.role = who.data.role;
  document.body.dataset.role = state.role ?? "";
  byId("sign-in").hidden = true;
  byId("dashboard").hidden = false;
  byId("session").hidden = false;
  byId("role").textContent = isAdmin() ? "Admin" : "Viewer · read-only";
  fill(
    byId("page-actions"),
    ...(isAdmin()
      ? [
          h("button", { type: "button", class: "btn", id: "register-model", dataset: { key: "register-model" }, onclick: registerModelDialog }, "Register model"),
          h("button", { type: "button", class: "btn btn-primary", id: "new-deployment", dataset: { key: "new-deployment" }, onclick: createDialog }, "New deployment"),
        ]
      : [h("p", { class: "muted read-only-note" }, "Read-only: signed in with a viewer token.")]),
  );
  state.abort = new AbortController();
  void followStream({ token: () => state.token, signal: state.abort.signal, onEvent, onStatus });
  byId("main").focus();
}

/** @param {string | null} message */
function signOut(message) {
  state.abort?.abort();
  state.abort = null;
  state.token = null;
  state.role = null;
  state.loaded = false;
  state.deployments.clear();
  state.open.clear();
  state.dataplanes = null;
  dataplanesSeq++;
  state.loads = new Map();
  tableSeq++;
  sessionStorage.removeItem(TOKEN_KEY);
  delete document.body.dataset.role;
  for (const d of document.querySelectorAll("dialog")) /** @type {HTMLDialogElement} */ (d).close();
  byId("dashboard").hidden = true;
  byId("session").hidden = true;
  byId("sign-in").hidden = false;
  fill(byId("deployments"));
  renderDataplanes();
  byId("token-error").textContent = message ?? "";
  byId("token").focus();
}

/** @param {import("./api.js").StreamStatus} s @param {{ first: boolean }} [info] */
function onStatus(s, info) {
  const live = byId("live");
  live.dataset.state = s;
  live.textContent = s === "live" ? "Live" : s === "reconnecting" ? "Reconnecting…" : s === "unauthorized" ? "Signed out" : "Connecting…";
  if (s === "unauthorized") return signOut("Your token is no longer accepted. Sign in again.");
  // First connection: read everything now that no change can be missed. Reconnections: the server
  // replays what was missed (Last-Event-ID) or sends `resync`.
  if (s === "live" && info?.first) {
    void loadAll();
    void loadTable();
  }
  // `dataplanes` notifications are never replayed: read the data planes on every (re)connect.
  if (s === "live") void loadDataplanes();
}

// ───────────────────────────── data ─────────────────────────────

let fullTimer = 0;
let oneTimer = 0;
const dirty = new Set();

// Coalescing: the first event of a burst arms a short timer; everything until it fires is read once.
function scheduleFull() {
  if (fullTimer) return;
  fullTimer = window.setTimeout(() => {
    fullTimer = 0;
    void loadAll();
    void loadDataplanes();
    void loadTable();
  }, 100);
}
let dataplanesTimer = 0;
function scheduleDataplanes() {
  if (dataplanesTimer) return;
  dataplanesTimer = window.setTimeout(() => {
    dataplanesTimer = 0;
    void loadDataplanes();
  }, 100);
}
let tableTimer = 0;
function scheduleTable() {
  if (tableTimer) return;
  tableTimer = window.setTimeout(() => {
    tableTimer = 0;
    void loadTable();
  }, 150);
}
/** @param {string} id */
function scheduleOne(id) {
  dirty.add(id);
  if (oneTimer) return;
  oneTimer = window.setTimeout(() => {
    oneTimer = 0;
    const ids = [...dirty];
    dirty.clear();
    for (const x of ids) void loadOne(x);
  }, 120);
}

async function loadAll() {
  try {
    const [deps, models] = await Promise.all([api("GET", "/v1/deployments"), state.models.size === 0 || !state.loaded ? api("GET", "/v1/models") : null]);
    if (models) state.models = new Map(models.data.models.map((/** @type {any} */ m) => [m.id, m]));
    // A newer revision read meanwhile (loadOne) is kept over the list's.
    state.deployments = new Map(
      deps.data.deployments.map((/** @type {any} */ d) => {
        const cur = state.deployments.get(d.id);
        return [d.id, newer(cur, d) ? cur : d];
      }),
    );
    if ([...state.deployments.values()].some((d) => !state.models.has(d.model_id))) await loadModels();
    state.loaded = true;
    banner(null);
    renderAll();
    for (const k of state.open) void loadDetail(k);
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return signOut("Your token is no longer accepted. Sign in again.");
    banner(`Could not load deployments: ${describeError(e)}`);
  }
}

let dataplanesSeq = 0;
/** GET /v1/dataplanes; an answer overtaken by a later request is dropped. */
async function loadDataplanes() {
  const seq = ++dataplanesSeq;
  /** @type {any} */
  let next;
  try {
    next = (await api("GET", "/v1/dataplanes")).data;
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return signOut("Your token is no longer accepted. Sign in again.");
    next = { error: `Could not load the data planes: ${describeError(e)}` };
  }
  if (seq !== dataplanesSeq || !state.token) return;
  state.dataplanes = next;
  renderDataplanes();
}

let tableSeq = 0;
/**
 * GET /v1/routing-table for the instances' engine load (`load`, absent without a signal). An answer
 * overtaken by a later request is dropped; a failed read keeps what was shown (scores carry their own age,
 * so they turn "stale" by themselves). Re-renders only when a score changed.
 */
async function loadTable() {
  const seq = ++tableSeq;
  /** @type {any} */
  let table;
  try {
    table = (await api("GET", "/v1/routing-table")).data;
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return signOut("Your token is no longer accepted. Sign in again.");
    return;
  }
  if (seq !== tableSeq || !state.token || !table || !Array.isArray(table.deployments)) return;
  /** @type {Map<string, { score: number, at_ms: number, interval_ms: number, capacity?: number }>} */
  const next = new Map();
  for (const d of table.deployments) {
    for (const i of d.instances ?? []) {
      const l = i.load;
      if (l && typeof l.score === "number" && typeof l.at_ms === "number" && typeof l.interval_ms === "number") {
        next.set(instKey(d.id, i.id), { score: l.score, at_ms: l.at_ms, interval_ms: l.interval_ms, ...(typeof l.capacity === "number" ? { capacity: l.capacity } : {}) });
      }
    }
  }
  const same = next.size === state.loads.size && [...next].every(([k, v]) => {
    const o = state.loads.get(k);
    return o !== undefined && o.score === v.score && o.at_ms === v.at_ms && o.interval_ms === v.interval_ms && o.capacity === v.capacity;
  });
  state.loads = next;
  if (!same && state.loaded) renderAll();
}

/** `a` is a later revision of the same deployment than `b` (not one deleted and created again). @param {any} a @param {any} b */
const newer = (a, b) => a !== undefined && a.created_at === b.created_at && a.revision > b.revision;

async function loadModels() {
  const r = await api("GET", "/v1/models");
  state.models = new Map(r.data.models.map((/** @type {any} */ m) => [m.id, m]));
}

/** @param {string} id */
async function loadOne(id) {
  try {
    const r = await api("GET", `/v1/deployments/${seg(id)}`);
    if (!state.models.has(r.data.model_id)) await loadModels();
    const cur = state.deployments.get(id);
    if (newer(cur, r.data)) return; // an older answer overtaken by a newer one
    state.deployments.set(id, r.data);
    renderOne(id);
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) {
      state.deployments.delete(id);
      renderAll();
    }
  }
}

/** The open instance's timeline and history. @param {string} key */
async function loadDetail(key) {
  const [dep, inst] = key.split("/");
  if (!dep || !inst) return;
  const base = `/v1/deployments/${seg(dep)}/instances/${seg(inst)}`;
  const [t, hist] = await Promise.allSettled([api("GET", `${base}/events?limit=30`), api("GET", `${base}/history?seconds=300`)]);
  state.timelines.set(key, t.status === "fulfilled" ? t.value.data.events : { error: describeError(t.reason) });
  state.histories.set(key, hist.status === "fulfilled" ? hist.value.data : { error: describeError(hist.reason) });
  if (state.open.has(key)) renderOne(dep);
}

/** @param {any} e a stream event */
function onEvent(e) {
  switch (e.type) {
    case "deployment.created":
    case "deployment.updated":
    case "instance.checked":
    case "migration":
      return scheduleOne(e.deployment);
    case "instance.state":
      scheduleOne(e.deployment);
      if (e.from !== null && e.to !== null && e.from !== "pending") announce(`Instance ${e.instance} of ${depName(e.deployment)}: ${e.to}.`);
      return;
    case "instance.event":
      scheduleOne(e.deployment);
      if (state.open.has(instKey(e.deployment, e.instance))) void loadDetail(instKey(e.deployment, e.instance));
      return;
    case "deployment.deleted":
      if (state.deployments.delete(e.deployment)) {
        announce(`Deployment ${e.deployment} was deleted.`);
        renderAll();
      }
      return;
    case "stats":
      if (!document.hidden) scheduleFull();
      return;
    case "xds.nack":
      scheduleDataplanes();
      announce(`Envoy ${e.node} rejected ${e.resource === "clusters" ? "CDS" : e.resource === "endpoints" ? "EDS" : "a"} ${e.version === null ? "configuration" : `version ${e.version}`}.`);
      return;
    case "dataplanes":
      return scheduleDataplanes();
    case "resync":
      return scheduleFull();
    case "table":
      return scheduleTable();
    default:
      return; // table versions and anything newer: nothing to show
  }
}

/** @param {string} id */
function depName(id) {
  const d = state.deployments.get(id);
  const m = d ? state.models.get(d.model_id) : null;
  return m ? m.name : id;
}

// ───────────────────────────── rendering ─────────────────────────────

/** Re-render keeping keyboard focus on the "same" control (matched by data-key). @param {() => void} f */
function keepingFocus(f) {
  const active = /** @type {HTMLElement | null} */ (document.activeElement);
  const key = active?.dataset?.key;
  f();
  if (key && (!active?.isConnected || document.activeElement === document.body)) {
    /** @type {HTMLElement | null} */ (document.querySelector(`[data-key="${CSS.escape(key)}"]`))?.focus({ preventScroll: true });
  }
}

function viewCtx() {
  return {
    admin: isAdmin(),
    models: state.models,
    open: state.open,
    timelines: state.timelines,
    histories: state.histories,
    loads: state.loads,
    now: Date.now(),
    on: {
      toggle, addInstance: addInstanceDialog, settings: settingsDialog, remove: deleteDialog, editInstance: editInstanceDialog, migrate: migrateDialog,
      stopMigration: stopMigrationDialog, removeInstance: removeInstanceDialog, retest, editModel: editModelDialog, removeModel: removeModelDialog,
    },
  };
}

function sorted() {
  return [...state.deployments.values()].sort((a, b) => depName(a.id).localeCompare(depName(b.id)) || a.id.localeCompare(b.id));
}

function renderAll() {
  const ctx = viewCtx();
  keepingFocus(() => fill(byId("deployments"), sorted().map((d) => deploymentCard(d, ctx))));
  renderModels(ctx);
  byId("empty").hidden = state.deployments.size > 0 || !state.loaded;
  renderSummary();
  for (const w of state.watchers) w();
}

/** @param {ReturnType<typeof viewCtx>} ctx */
function renderModels(ctx = viewCtx()) {
  const models = [...state.models.values()].sort((a, b) => a.name.localeCompare(b.name));
  keepingFocus(() => fill(byId("models"), modelItems(models, state.deployments, ctx)));
}

/** @param {string} id */
function renderOne(id) {
  const d = state.deployments.get(id);
  const old = document.getElementById(cardId(id));
  if (!d || !old) return renderAll();
  keepingFocus(() => old.replaceWith(deploymentCard(d, viewCtx())));
  renderSummary();
  for (const w of state.watchers) w();
}

function renderSummary() {
  const all = [...state.deployments.values()].flatMap((d) => d.instances);
  /** @type {Record<string, number>} */
  const by = {};
  for (const i of all) by[i.state] = (by[i.state] ?? 0) + 1;
  const parts = [`${state.deployments.size} deployment${state.deployments.size === 1 ? "" : "s"}`, `${all.length} instance${all.length === 1 ? "" : "s"}`];
  for (const st of ["active", "ejected", "pending", "draining", "unreachable"]) if (by[st]) parts.push(`${by[st]} ${st}`);
  byId("summary").textContent = state.loaded ? parts.join(" · ") : "Loading…";
}

/** The Data planes section, and the alert at the top while an Envoy's last response is NACKed. */
function renderDataplanes() {
  const dp = state.dataplanes;
  const list = byId("dataplanes");
  const note = byId("dataplanes-note");
  if (dp === null) {
    fill(list, state.token ? h("li", { class: "muted" }, "Loading…") : null);
    note.textContent = "";
  } else if ("error" in dp) {
    fill(list, h("li", { class: "muted" }, dp.error));
  } else {
    note.textContent = `The Envoys that stream xDS from or poll control replica ${dp.replica} (each replica lists its own): what each has ACKed, and any configuration it rejected.`;
    fill(list, dataplaneItems(dp, Date.now()));
  }
  // The alert: one line per connected Envoy whose last response is NACKed (at most 3), with the first part of
  // its message. (One that is gone may stream from another replica now; the section still shows its NACK.)
  const alert = byId("xds-alert");
  const rejecting = dp && !("error" in dp) ? dp.dataplanes.filter((/** @type {any} */ n) => n.connected && nackedTypes(n).length > 0) : [];
  /** @type {string[]} */
  const lines = rejecting.slice(0, 3).map((/** @type {any} */ n) => {
    const t = nackedTypes(n)[0];
    const msg = t.nacked.message.length > 200 ? `${t.nacked.message.slice(0, 199)}…` : t.nacked.message;
    return `Envoy ${n.id} rejected ${xdsTypeName(t)} ${t.nacked.version === null ? "configuration" : `version ${t.nacked.version}`} and keeps ${t.nacked.accepted_version === "" ? "no configuration" : `version ${t.nacked.accepted_version}`}${msg ? `: ${msg}` : ""}`;
  });
  if (rejecting.length > 3) lines.push(`…and ${rejecting.length - 3} more.`);
  const key = lines.join("\n");
  if (alert.dataset.key === key) return; // unchanged: do not announce it again
  alert.dataset.key = key;
  alert.hidden = lines.length === 0;
  if (lines.length === 0) return fill(alert);
  fill(
    alert,
    h("p", { class: "xds-alert-title" }, rejecting.length === 1 ? "An Envoy rejected its configuration" : `${rejecting.length} Envoys rejected their configuration`),
    lines.map((l) => h("p", { class: "xds-alert-line" }, l)),
    h("button", { type: "button", class: "btn btn-quiet", dataset: { key: "show-dataplanes" }, onclick: () => byId("dataplanes-section").focus() }, "Show data planes"),
  );
}

/** @param {string | null} msg */
function banner(msg) {
  const b = byId("banner");
  b.hidden = msg === null;
  b.textContent = msg ?? "";
}

let announceTimer = 0;
/** Polite screen-reader announcement of live changes (coalesced). @param {string} msg */
function announce(msg) {
  const a = byId("announcer");
  a.append(h("p", {}, msg));
  while (a.childElementCount > 5) a.firstElementChild?.remove();
  clearTimeout(announceTimer);
  announceTimer = window.setTimeout(() => a.replaceChildren(), 10_000);
}

/** @param {any} d @param {any} i */
function toggle(d, i) {
  const key = instKey(d.id, i.id);
  if (state.open.has(key)) state.open.delete(key);
  else {
    state.open.add(key);
    void loadDetail(key);
  }
  renderOne(d.id);
}

// ───────────────────────────── actions ─────────────────────────────

/** Inputs of one instance (create, scale up). @param {number} n index in the form @param {() => void} [onRemove] */
function instanceFields(n, onRemove) {
  const p = (/** @type {string} */ f) => `instances.${n}.${f}`;
  const url = field({ label: "URL", path: p("url"), type: "url", required: true, placeholder: "http://10.0.0.5:8000/v1", hint: "OpenAI API base URL", inputmode: "url" });
  const weight = field({ label: "Weight", path: p("weight"), type: "number", value: 1, min: 1, max: 10000, inputmode: "numeric" });
  const tier = field({ label: "Tier", path: p("priority"), type: "number", value: 0, min: 0, max: 255, hint: "0 = primary", inputmode: "numeric" });
  const region = field({ label: "Region", path: p("region"), placeholder: "eu-west" });
  const gpus = field({ label: "GPUs", path: p("gpu_count"), type: "number", min: 0, inputmode: "numeric" });
  const mem = field({ label: "GPU memory (GB)", path: p("gpu_memory_gb"), type: "number", min: 0, step: "any", inputmode: "decimal" });
  const key = field({ label: "API key", path: p("api_key"), type: "password", hint: "Optional; sent upstream as a bearer token, never shown again", autocomplete: "new-password" });
  const legend = h("legend", {}, `Instance ${n + 1}`);
  const box = h(
    "fieldset",
    { class: "instance-fields" },
    legend,
    h("div", { class: "grid grid-url" }, url.wrap, key.wrap),
    h("div", { class: "grid grid-6" }, weight.wrap, tier.wrap, region.wrap, gpus.wrap, mem.wrap),
    onRemove ? h("button", { type: "button", class: "btn btn-quiet remove-row", onclick: onRemove }, `Remove instance ${n + 1} from the form`) : null,
  );
  return {
    box,
    value() {
      /** @type {Record<string, unknown>} */
      const v = { url: url.input.value.trim() };
      const w = num(weight.input);
      if (w !== undefined) v.weight = w;
      const t = num(tier.input);
      if (t !== undefined) v.priority = t;
      if (region.input.value.trim() !== "") v.region = region.input.value.trim();
      const g = num(gpus.input);
      if (g !== undefined) v.gpu_count = g;
      const m = num(mem.input);
      if (m !== undefined) v.gpu_memory_gb = m;
      if (key.input.value !== "") v.api_key = key.input.value;
      return v;
    },
    /** @param {number} k @param {string} prefix */
    renumber(k, prefix = "instances") {
      legend.textContent = `Instance ${k + 1}`;
      for (const el of box.querySelectorAll("[data-path]")) {
        const f = /** @type {HTMLElement} */ (el).dataset.path?.split(".").pop() ?? "";
        /** @type {HTMLElement} */ (el).dataset.path = prefix === "" ? f : `${prefix}.${k}.${f}`;
      }
      const rm = box.querySelector(".remove-row");
      if (rm) rm.textContent = `Remove instance ${k + 1} from the form`;
    },
    focus: () => url.input.focus(),
  };
}

/** Health-check inputs (create, settings). @param {any} hc current values */
function healthFields(hc) {
  const f = {
    interval: field({ label: "Probe every (s)", path: "health_check.interval_seconds", type: "number", value: hc.interval_seconds, min: 0.05, step: "any", inputmode: "decimal" }),
    timeout: field({ label: "Probe timeout (s)", path: "health_check.timeout_seconds", type: "number", value: hc.timeout_seconds, min: 0.05, step: "any", inputmode: "decimal" }),
    unhealthy: field({ label: "Eject after failures", path: "health_check.unhealthy_threshold", type: "number", value: hc.unhealthy_threshold, min: 1, max: 100, inputmode: "numeric" }),
    healthy: field({ label: "Re-add after successes", path: "health_check.healthy_threshold", type: "number", value: hc.healthy_threshold, min: 1, max: 100, inputmode: "numeric" }),
    path: field({ label: "Probe path", path: "health_check.path", value: hc.path }),
    errRate: field({ label: "Max error rate (%)", path: "health_check.max_error_rate", type: "number", value: hc.max_error_rate === null ? null : hc.max_error_rate * 100, min: 0, max: 100, step: "any", hint: "Empty = off", inputmode: "decimal" }),
    p95: field({ label: "Max P95 (ms)", path: "health_check.max_p95_ms", type: "number", value: hc.max_p95_ms, min: 1, step: "any", hint: "Empty = off", inputmode: "decimal" }),
    probe: field({ label: "Probe", path: "health_check.probe", options: [["path", "GET the probe path"], ["models", "GET {base}/models"]], value: hc.probe }),
    completion: field({ label: "Completion every k-th probe", path: "health_check.completion_every", type: "number", value: hc.completion_every, min: 0, max: 1000, hint: "A 1-token chat completion; 0 = never", inputmode: "numeric" }),
    window: field({ label: "Traffic window (s)", path: "health_check.window_seconds", type: "number", value: hc.window_seconds, min: 1, max: 600, step: "any", inputmode: "decimal" }),
    minRequests: field({ label: "Min requests", path: "health_check.min_requests", type: "number", value: hc.min_requests, min: 1, hint: "Thresholds apply from this many in the window", inputmode: "numeric" }),
  };
  const box = h(
    "fieldset",
    { class: "health-fields" },
    h("legend", {}, "Health checks"),
    h("div", { class: "grid grid-4" }, f.interval.wrap, f.timeout.wrap, f.unhealthy.wrap, f.healthy.wrap),
    h("div", { class: "grid grid-3" }, f.probe.wrap, f.path.wrap, f.completion.wrap),
    h("div", { class: "grid grid-4" }, f.errRate.wrap, f.p95.wrap, f.window.wrap, f.minRequests.wrap),
  );
  return {
    box,
    value() {
      /** @type {Record<string, unknown>} */
      const v = {};
      const put = (/** @type {string} */ k, /** @type {unknown} */ x) => x !== undefined && (v[k] = x);
      put("interval_seconds", num(f.interval.input));
      put("timeout_seconds", num(f.timeout.input));
      put("unhealthy_threshold", num(f.unhealthy.input));
      put("healthy_threshold", num(f.healthy.input));
      if (f.path.input.value.trim() !== "") v.path = f.path.input.value.trim();
      v.probe = f.probe.input.value;
      put("completion_every", num(f.completion.input));
      put("window_seconds", num(f.window.input));
      put("min_requests", num(f.minRequests.input));
      const er = num(f.errRate.input, null);
      v.max_error_rate = typeof er === "number" ? Math.round(er * 100) / 10_000 : er;
      v.max_p95_ms = num(f.p95.input, null);
      return v;
    },
  };
}

// The API's defaults (HEALTH_DEFAULTS in control/src/deployments/schemas.ts), shown in the create form.
const HEALTH_DEFAULTS = {
  interval_seconds: 10, timeout_seconds: 2, unhealthy_threshold: 3, healthy_threshold: 2, path: "/health", probe: "path", completion_every: 0,
  window_seconds: 60, max_error_rate: null, min_requests: 20, max_p95_ms: null,
};

/** Live connectivity results of some instances of a deployment. @param {string} depId @param {string[]} ids */
function connectivityResults(depId, ids) {
  const list = h("ul", { class: "results", "aria-live": "polite", "aria-label": "Connectivity tests" });
  const render = () => {
    const d = state.deployments.get(depId);
    fill(
      list,
      ids.map((id) => {
        const i = d?.instances.find((/** @type {any} */ x) => x.id === id);
        const st = i?.state ?? "pending";
        return h(
          "li",
          { class: `result result-${st}`, dataset: { instance: id } },
          h("span", { class: "result-name" }, h("strong", {}, id), " ", h("span", { class: "url" }, i?.url ?? "")),
          stateBadge(st),
          h("span", { class: "result-text" }, st === "pending" ? "Testing connectivity…" : i ? checkText(i.last_check) : "Removed"),
        );
      }),
    );
  };
  render();
  return { list, render };
}

/** After a create or scale-up: show each instance's test result as it completes. @param {import("./dialog.js").DialogHandle} dlg @param {string} depId @param {string[]} ids @param {string} heading */
function showResults(dlg, depId, ids, heading) {
  const results = connectivityResults(depId, ids);
  state.watchers.add(results.render);
  const stop = () => state.watchers.delete(results.render);
  dlg.dialog.addEventListener("close", stop);
  fill(dlg.body, h("p", { class: "results-head" }, heading), results.list);
  dlg.submit.remove();
  dlg.cancel.textContent = "Done";
  dlg.cancel.classList.add("btn-primary");
  dlg.cancel.focus();
}

async function createDialog() {
  try {
    await loadModels();
  } catch (e) {
    banner(`Could not load the model registry: ${describeError(e)}`);
    return;
  }
  const deployed = new Set([...state.deployments.values()].map((d) => d.model_id));
  const models = [...state.models.values()].sort((a, b) => a.name.localeCompare(b.name));
  const free = models.filter((m) => !deployed.has(m.id));
  const model = field({
    label: "Model",
    path: "model",
    required: true,
    hint: models.length === 0 ? "No models registered yet: use Register model first." : "From the model registry; a model is served by one deployment.",
    options: [["", "Choose a model…", false], ...models.map((m) => /** @type {[string, string, boolean]} */ ([m.id, `${m.name}${m.display_name && m.display_name !== m.name ? ` — ${m.display_name}` : ""}${deployed.has(m.id) ? " (already deployed)" : ""}`, deployed.has(m.id)]))],
    value: free.length === 1 ? free[0].id : "",
  });
  const id = field({ label: "Deployment id", path: "id", placeholder: "generated", hint: "Optional: letters, digits, . _ -" });
  const strategy = field({ label: "Strategy", path: "strategy", options: STRATEGIES.map(([v, l]) => [v, l]), value: "round_robin" });
  const policy = field({ label: "When no instance is healthy", path: "on_unavailable", options: POLICIES.map(([v, l]) => [v, l]), value: "fail" });
  const health = healthFields(HEALTH_DEFAULTS);
  /** @type {ReturnType<typeof instanceFields>[]} */
  const rows = [];
  const rowsBox = h("div", { class: "instance-rows" });
  const renumber = () => rows.forEach((r, k) => r.renumber(k));
  const addRow = () => {
    const r = instanceFields(rows.length, () => {
      rows.splice(rows.indexOf(r), 1);
      r.box.remove();
      renumber();
      rows[Math.max(0, rows.length - 1)]?.focus();
    });
    rows.push(r);
    rowsBox.append(r.box);
    renumber();
    return r;
  };
  addRow();
  const addBtn = h("button", { type: "button", class: "btn btn-quiet", onclick: () => addRow().focus() }, "Add another instance");
  const advanced = h("details", { class: "advanced" }, h("summary", {}, "Health checks and thresholds"), health.box);
  const anyway = unreachableAnyway("Create anyway");

  const dlg = openDialog({
    title: "New deployment",
    description: "Each instance's connectivity is tested (model list, then a 1-token completion) before it takes traffic.",
    wide: true,
    body: [
      h("div", { class: "grid grid-2" }, model.wrap, id.wrap),
      h("div", { class: "grid grid-2" }, strategy.wrap, policy.wrap),
      h("fieldset", { class: "instances-fieldset" }, h("legend", {}, "Instances"), rowsBox, addBtn),
      anyway.panel,
      advanced,
    ],
    submitLabel: "Create deployment",
    async onSubmit(dlg) {
      if (model.input.value === "") {
        showIssues(dlg.dialog, [{ path: "model", message: "Choose a model." }]);
        return true;
      }
      /** @type {Record<string, unknown>} */
      const body = { model: model.input.value, strategy: strategy.input.value, on_unavailable: policy.input.value, health_check: health.value(), instances: rows.map((r) => r.value()) };
      if (id.input.value.trim() !== "") body.id = id.input.value.trim();
      if (anyway.take()) body.allow_unreachable = true;
      try {
        const r = await api("POST", "/v1/deployments", { body });
        state.deployments.set(r.data.id, r.data);
        renderAll();
        scheduleOne(r.data.id);
        anyway.button.remove();
        const failed = r.data.warnings?.length ?? 0;
        const note = failed === 0 ? "" : ` ${failed} instance${failed === 1 ? "" : "s"} failed the connectivity test and take${failed === 1 ? "s" : ""} no traffic until re-tested.`;
        showResults(dlg, r.data.id, r.data.instances.map((/** @type {any} */ i) => i.id), `Deployment ${r.data.id} created.${note}`);
        announce(`Deployment ${r.data.id} created.${note}`);
        return true;
      } catch (e) {
        anyway.failed(e);
        if (e instanceof ApiError && e.issues.some((i) => i.path.startsWith("health_check"))) /** @type {HTMLDetailsElement} */ (advanced).open = true;
        throw e;
      }
    },
  });
  dlg.actions.insertBefore(anyway.button, dlg.submit);
}

/**
 * A 422 connectivity_failed (no instance passed its test; nothing stored): what each test saw, and a button
 * that sends the same form again with `allow_unreachable: true` ("create anyway").
 * @param {string} label
 */
function unreachableAnyway(label) {
  let chosen = false;
  const panel = h("div", { class: "connectivity-failed", hidden: true });
  const button = /** @type {HTMLButtonElement} */ (
    h("button", {
      type: "button",
      class: "btn",
      hidden: true,
      dataset: { key: "allow-unreachable" },
      onclick: () => {
        chosen = true;
        button.closest("form")?.requestSubmit();
      },
    }, label)
  );
  return {
    panel,
    button,
    /** Whether this submit is the "anyway" one (read once per submit; hides the previous evidence). */
    take() {
      const c = chosen;
      chosen = false;
      panel.hidden = true;
      return c;
    },
    /** @param {unknown} e */
    failed(e) {
      if (!(e instanceof ApiError) || e.code !== "connectivity_failed") return;
      fill(
        panel,
        h("p", { class: "results-head" }, "What each connectivity test saw"),
        evidenceList(e.instances),
        h("p", { class: "muted" }, `${label} stores the instances as unreachable: they take no traffic until a re-test passes (“Test again”).`),
      );
      panel.hidden = false;
      button.hidden = false;
    },
  };
}

/**
 * The model form (register, edit). `m`: the model being edited (its values filled in); its `value()` gives
 * the fields set, and on edit null for an emptied optional field (PATCH clears it).
 * @param {any} [m]
 */
function modelFields(m) {
  const name = field({ label: "Name", path: "name", required: true, value: m?.name, placeholder: "llama-3.1-8b", hint: "What clients send as model; unique across all names and aliases" });
  const display = field({ label: "Display name", path: "display_name", value: m?.display_name, placeholder: "Llama 3.1 8B Instruct" });
  const aliases = field({ label: "Aliases", path: "aliases", value: m?.aliases.join(", "), placeholder: "llama, llama-8b", hint: "Other names clients may send, separated by commas" });
  const served = field({ label: "Served name", path: "served_name", value: m?.served_name, placeholder: "meta-llama/Llama-3.1-8B-Instruct", hint: "The name the engine serves, if different (checked by the connectivity test)" });
  const family = field({ label: "Family", path: "family", value: m?.family, placeholder: "llama" });
  const context = field({ label: "Context length", path: "context_length", type: "number", value: m?.context_length, min: 1, inputmode: "numeric" });
  return {
    body: [h("div", { class: "grid grid-2" }, name.wrap, display.wrap), h("div", { class: "grid grid-2" }, aliases.wrap, served.wrap), h("div", { class: "grid grid-2" }, family.wrap, context.wrap)],
    value() {
      const clear = m ? null : undefined;
      const text = (/** @type {HTMLInputElement | HTMLSelectElement} */ input) => (input.value.trim() !== "" ? input.value.trim() : clear);
      /** @type {Record<string, unknown>} */
      const v = { name: name.input.value.trim(), display_name: text(display.input) ?? undefined, served_name: text(served.input), family: text(family.input) };
      v.aliases = aliases.input.value.split(",").map((a) => a.trim()).filter((a) => a !== "");
      v.context_length = num(context.input, clear);
      for (const k of Object.keys(v)) if (v[k] === undefined) delete v[k];
      return v;
    },
  };
}

/** A model in the registry: the names clients send, and the name the engine serves. */
function registerModelDialog() {
  const f = modelFields();
  openDialog({
    title: "Register a model",
    description: "A registered model can then be deployed: requests that name it (or an alias) are routed to its deployment.",
    body: f.body,
    submitLabel: "Register model",
    async onSubmit() {
      const r = await api("POST", "/v1/models", { body: f.value() });
      state.models.set(r.data.id, r.data);
      renderModels();
      announce(`Model ${r.data.name} registered.`);
    },
  });
}

/** @param {any} m */
function editModelDialog(m) {
  const f = modelFields(m);
  openDialog({
    title: `Edit model ${m.name}`,
    description: "Renaming changes what clients must send; the routing table follows at once.",
    body: f.body,
    submitLabel: "Save model",
    async onSubmit() {
      try {
        const r = await api("PATCH", `/v1/models/${seg(m.id)}`, { body: f.value(), ifMatch: `"${m.revision}"` });
        state.models.set(r.data.id, r.data);
        renderAll();
        announce(`Model ${r.data.name} saved.`);
      } catch (e) {
        if (e instanceof ApiError && e.status === 412) await loadModels().then(() => renderModels());
        throw e;
      }
    },
  });
}

/** @param {any} m */
function removeModelDialog(m) {
  openDialog({
    title: `Remove model ${m.name}?`,
    description: "It leaves the registry; a model still served by a deployment cannot be removed (delete the deployment first).",
    body: [],
    submitLabel: "Remove model",
    danger: true,
    focus: null,
    async onSubmit() {
      await api("DELETE", `/v1/models/${seg(m.id)}`, { ifMatch: `"${m.revision}"` });
      state.models.delete(m.id);
      renderModels();
      announce(`Model ${m.name} removed.`);
    },
  });
}

/** @param {any} d */
function addInstanceDialog(d) {
  const row = instanceFields(0);
  row.renumber(0, "");
  let rev = etag(d);
  const anyway = unreachableAnyway("Add anyway");
  const dlg = openDialog({
    title: `Add an instance to ${depName(d.id)}`,
    description: "It is tested before it joins; it takes traffic once the test passes.",
    body: [row.box, anyway.panel],
    submitLabel: "Add instance",
    async onSubmit(dlg) {
      /** @type {Record<string, unknown>} */
      const body = row.value();
      if (anyway.take()) body.allow_unreachable = true;
      try {
        const r = await api("POST", `/v1/deployments/${seg(d.id)}/instances`, { body, ifMatch: rev });
        await loadOne(d.id);
        anyway.button.remove();
        const note = r.data.warnings?.length ? " It failed the connectivity test and takes no traffic until re-tested." : "";
        showResults(dlg, d.id, [r.data.id], `Instance ${r.data.id} added.${note}`);
        return true;
      } catch (e) {
        anyway.failed(e);
        rev = await refreshed(e, d.id, rev);
        throw e;
      }
    },
  });
  dlg.actions.insertBefore(anyway.button, dlg.submit);
}

/** On 412: re-read the deployment; the form continues on its latest revision. @param {unknown} e @param {string} id @param {string} rev */
async function refreshed(e, id, rev) {
  if (!(e instanceof ApiError) || e.status !== 412) return rev;
  await loadOne(id);
  const d = state.deployments.get(id);
  return d ? etag(d) : rev;
}

/** @param {any} d */
function settingsDialog(d) {
  const strategy = field({ label: "Strategy", path: "strategy", options: STRATEGIES.map(([v, l]) => [v, l]), value: d.strategy });
  const policy = field({ label: "When no instance is healthy", path: "on_unavailable", options: POLICIES.map(([v, l]) => [v, l]), value: d.on_unavailable });
  const health = healthFields(d.health_check);
  const loadSignals = /** @type {HTMLInputElement} */ (h("input", { type: "checkbox", id: `load-signals-${d.id}`, name: "load_signals", dataset: { path: "load_signals" }, checked: d.load_signals === true, "aria-describedby": `load-signals-${d.id}-hint` }));
  const aff = d.affinity ?? null;
  const affSource = field({
    label: "Session affinity", path: "affinity.source", value: aff?.source ?? "",
    options: [["", "None"], ["header", "By a request header"], ["user", "By the body's \"user\" (body-routed requests)"]],
    hint: "Requests with the same key go to the same instance (its KV prefix cache) while it is eligible and under its load bound",
  });
  const affHeader = field({ label: "Session header", path: "affinity.header", value: aff?.source === "header" ? aff.header : "x-session-id", placeholder: "x-session-id", hint: "Lower-case header name" });
  const affFactor = field({ label: "Load factor", path: "affinity.load_factor", type: "number", value: aff?.load_factor ?? null, min: 1, max: 10, step: "any", placeholder: "1.25", hint: "Empty = 1.25: an instance over this × the average in flight passes the key on", inputmode: "decimal" });
  const showAffinity = () => {
    affHeader.wrap.hidden = affSource.input.value !== "header";
    affFactor.wrap.hidden = affSource.input.value === "";
  };
  affSource.input.addEventListener("change", showAffinity);
  showAffinity();
  /** The PATCH value of `affinity`: null removes it. */
  const affinityValue = () => {
    const source = affSource.input.value;
    if (source === "") return null;
    const lf = affFactor.input.value.trim();
    return { source, ...(source === "header" ? { header: affHeader.input.value.trim() } : {}), ...(lf === "" ? {} : { load_factor: Number(lf) }) };
  };
  let rev = etag(d);
  openDialog({
    title: `Settings of ${depName(d.id)}`,
    wide: true,
    body: [
      h("div", { class: "grid grid-2" }, strategy.wrap, policy.wrap),
      h(
        "div",
        { class: "field" },
        h("div", { class: "check" }, loadSignals, h("label", { for: loadSignals.id }, "Engine load signals")),
        h("p", { class: "hint", id: `load-signals-${d.id}-hint` }, "Read each instance's /metrics (requests waiting, KV-cache usage) on its probe beat and publish a load score for the load-aware strategy. A failed read never ejects."),
      ),
      h("div", { class: "grid grid-3" }, affSource.wrap, affHeader.wrap, affFactor.wrap),
      health.box,
    ],
    submitLabel: "Save",
    async onSubmit() {
      try {
        await api("PATCH", `/v1/deployments/${seg(d.id)}`, { body: { strategy: strategy.input.value, on_unavailable: policy.input.value, load_signals: loadSignals.checked, affinity: affinityValue(), health_check: health.value() }, ifMatch: rev });
        scheduleOne(d.id);
        announce(`Settings of ${depName(d.id)} saved.`);
      } catch (e) {
        rev = await refreshed(e, d.id, rev);
        throw e;
      }
    },
  });
}

/** @param {any} d @param {any} i */
function editInstanceDialog(d, i) {
  const weight = field({ label: "Weight", path: "weight", type: "number", value: i.weight, min: 1, max: 10000, hint: "Share of traffic under weighted round robin", inputmode: "numeric" });
  const tier = field({ label: "Tier", path: "priority", type: "number", value: i.priority, min: 0, max: 255, hint: "Failover tier; 0 = primary", inputmode: "numeric" });
  const region = field({ label: "Region", path: "region", value: i.region });
  const gpus = field({ label: "GPUs", path: "gpu_count", type: "number", value: i.gpu_count, min: 0, inputmode: "numeric" });
  const mem = field({ label: "GPU memory (GB)", path: "gpu_memory_gb", type: "number", value: i.gpu_memory_gb, min: 0, step: "any", inputmode: "decimal" });
  const key = field({ label: i.has_api_key ? "Replace the API key" : "API key", path: "api_key", type: "password", hint: i.has_api_key ? "Empty = keep the current key" : "Empty = none", autocomplete: "new-password" });
  const dropKey = /** @type {HTMLInputElement} */ (h("input", { type: "checkbox", id: `drop-key-${i.id}` }));
  let rev = etag(d);
  openDialog({
    title: `Edit instance ${i.id}`,
    body: [
      h("div", { class: "grid grid-2" }, weight.wrap, tier.wrap),
      h("div", { class: "grid grid-3" }, region.wrap, gpus.wrap, mem.wrap),
      key.wrap,
      i.has_api_key ? h("div", { class: "check" }, dropKey, h("label", { for: dropKey.id }, "Remove the API key")) : null,
    ],
    submitLabel: "Save",
    async onSubmit() {
      /** @type {Record<string, unknown>} */
      const body = { weight: num(weight.input), priority: num(tier.input), region: region.input.value.trim(), gpu_count: num(gpus.input, null), gpu_memory_gb: num(mem.input, null) };
      if (dropKey.checked) body.api_key = null;
      else if (key.input.value !== "") body.api_key = key.input.value;
      try {
        const r = await api("PATCH", `/v1/deployments/${seg(d.id)}/instances/${seg(i.id)}`, { body, ifMatch: rev });
        state.deployments.set(d.id, { ...r.data, instances: r.data.instances.map((/** @type {any} */ x) => ({ ...x, health: state.deployments.get(d.id)?.instances.find((/** @type {any} */ y) => y.id === x.id)?.health })) });
        renderOne(d.id);
        announce(`Instance ${i.id} saved.`);
      } catch (e) {
        rev = await refreshed(e, d.id, rev);
        throw e;
      }
    },
  });
}

/** @param {any} d @param {any} i */
function migrateDialog(d, i) {
  const url = field({ label: "New URL", path: "url", type: "url", required: true, placeholder: "http://10.0.0.6:8000/v1", inputmode: "url" });
  const drain = field({ label: "Drain timeout (s)", path: "drain_timeout_seconds", type: "number", min: 0, max: 3600, step: "any", hint: "Empty = the service default", inputmode: "decimal" });
  const key = field({ label: "API key", path: "api_key", type: "password", hint: i.has_api_key ? "Empty = keep the current key" : "Optional; sent upstream as a bearer token", autocomplete: "new-password" });
  let rev = etag(d);
  openDialog({
    title: `Change the endpoint of ${i.id}`,
    description: `Now ${i.url}. The new endpoint is tested and health-checked first; only then does it take over while ${i.id} drains. If it fails, the change rolls back and ${i.id} keeps serving.`,
    body: [url.wrap, drain.wrap, key.wrap],
    submitLabel: "Start endpoint change",
    async onSubmit() {
      /** @type {Record<string, unknown>} */
      const body = { instance_id: i.id, url: url.input.value.trim() };
      const dt = num(drain.input);
      if (dt !== undefined) body.drain_timeout_seconds = dt;
      if (key.input.value !== "") body.api_key = key.input.value;
      try {
        await api("POST", `/v1/deployments/${seg(d.id)}/migrations`, { body, ifMatch: rev });
        await loadOne(d.id);
        announce(`Endpoint change of ${i.id} started.`);
      } catch (e) {
        rev = await refreshed(e, d.id, rev);
        throw e;
      }
    },
  });
}

/** @param {any} d @param {any} i */
function removeInstanceDialog(d, i) {
  let rev = etag(d);
  const last = d.instances.filter((/** @type {any} */ x) => x.state === "active").length === 1 && i.state === "active";
  openDialog({
    title: `Remove instance ${i.id}?`,
    description: `${i.url} leaves the routing table at once; requests in flight on it finish.${last ? " It is the last active instance of this deployment." : ""}`,
    body: [],
    submitLabel: "Remove instance",
    danger: true,
    focus: null,
    async onSubmit() {
      try {
        await api("DELETE", `/v1/deployments/${seg(d.id)}/instances/${seg(i.id)}`, { ifMatch: rev });
        state.open.delete(instKey(d.id, i.id));
        await loadOne(d.id);
        announce(`Instance ${i.id} removed.`);
      } catch (e) {
        rev = await refreshed(e, d.id, rev);
        throw e;
      }
    },
  });
}

/** @param {any} d @param {any} m a migration before its switch */
function stopMigrationDialog(d, m) {
  openDialog({
    title: `Stop the endpoint change of ${m.from_instance}?`,
    description: `The new endpoint ${m.url} (${m.to_instance}) is removed before it takes any traffic; ${m.from_instance} keeps serving as it has throughout.`,
    body: [],
    submitLabel: "Stop endpoint change",
    danger: true,
    focus: null,
    async onSubmit() {
      // No If-Match: every probe of the change bumps the revision, and the server checks what matters (the phase).
      try {
        await api("POST", `/v1/deployments/${seg(d.id)}/migrations/${seg(m.id)}/cancel`);
      } finally {
        await loadOne(d.id);
      }
      announce(`Endpoint change of ${m.from_instance} stopped; ${m.from_instance} keeps serving.`);
    },
  });
}

/** @param {any} d */
function deleteDialog(d) {
  let rev = etag(d);
  const name = depName(d.id);
  openDialog({
    title: `Delete deployment ${d.id}?`,
    description: `Its ${d.instances.length} instance${d.instances.length === 1 ? "" : "s"} leave the routing table at once, and requests for ${name} are no longer routed by the gateway. The model stays registered. This cannot be undone.`,
    body: [],
    submitLabel: "Delete deployment",
    danger: true,
    async onSubmit() {
      try {
        await api("DELETE", `/v1/deployments/${seg(d.id)}`, { ifMatch: rev });
        state.deployments.delete(d.id);
        renderAll();
        announce(`Deployment ${d.id} deleted.`);
      } catch (e) {
        rev = await refreshed(e, d.id, rev);
        throw e;
      }
    },
  });
}

/** @param {any} d @param {any} i */
async function retest(d, i) {
  try {
    await api("POST", `/v1/deployments/${seg(d.id)}/instances/${seg(i.id)}/test`);
    await loadOne(d.id);
    const now = state.deployments.get(d.id)?.instances.find((/** @type {any} */ x) => x.id === i.id);
    announce(`Instance ${i.id}: ${now ? checkText(now.last_check) : "tested"}.`);
  } catch (e) {
    banner(`Could not re-test ${i.id}: ${describeError(e)}`);
  }
}

void boot();
