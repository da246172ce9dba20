// @ts-check
/**
 * Rendering: a deployment card with its instance table, migrations, and per-instance details
 * (connectivity result, event timeline, P95 / error-rate chart). Pure functions of the state they are
 * given; actions are callbacks. Only admins get action buttons.
 */
import { h } from "./dom.js";
import { historyChart, fmtMs, fmtRate } from "./chart.js";

export const STRATEGIES = /** @type {const} */ ([
  ["round_robin", "Round robin"],
  ["weighted_round_robin", "Weighted round robin"],
  ["failover", "Failover by tier"],
  ["least_request", "Least requests (in flight)"],
  ["latency", "Lowest latency (peak EWMA)"],
  ["load_aware", "Load-aware (engine load signals)"],
]);
export const POLICIES = /** @type {const} */ ([
  ["fail", "Fail fast (503)"],
  ["panic", "Panic: use every instance"],
]);
const label = (/** @type {readonly (readonly [string, string])[]} */ list, /** @type {string} */ v) => list.find(([k]) => k === v)?.[1] ?? v;

const STATE_TEXT = { pending: "Testing", active: "Active", draining: "Draining", ejected: "Ejected", unreachable: "Unreachable" };
const EVENT_TEXT = {
  probe_failed: ["Probe failed", "bad"],
  probe_passed: ["Probe passed", "good"],
  ejected: ["Ejected", "bad"],
  readmitted: ["Back in rotation", "good"],
  threshold_crossed: ["Threshold crossed", "warn"],
  threshold_cleared: ["Threshold cleared", "good"],
  ejection_skipped: ["Ejection skipped", "warn"],
};
const REASON_TEXT = {
  probe_failures: "failed probes",
  probes_passed: "probes passed",
  error_rate: "error rate",
  p95_latency: "P95 latency",
  last_eligible_instance: "last eligible instance",
};
const ENGINE_TEXT = { vllm: "vLLM", sglang: "SGLang", tgi: "TGI", ollama: "Ollama" };

/** @param {string | null | undefined} iso @param {number} now */
export function ago(iso, now) {
  if (!iso) return "–";
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86_400) return `${Math.floor(s / 3600)} h ago`;
  return new Date(iso).toLocaleDateString();
}
/** @param {string} iso */
export const clock = (iso) => {
  const d = new Date(iso);
  const today = new Date().toDateString() === d.toDateString();
  return today ? d.toLocaleTimeString() : d.toLocaleString();
};
/** @param {any} i */
export function gpuText(i) {
  if (i.gpu_count == null && i.gpu_memory_gb == null) return "–";
  if (i.gpu_count != null && i.gpu_memory_gb != null) return `${i.gpu_count} × ${i.gpu_memory_gb} GB`;
  if (i.gpu_count != null) return `${i.gpu_count} GPU${i.gpu_count === 1 ? "" : "s"}`;
  return `${i.gpu_memory_gb} GB`;
}
/** A load score as text: 2 decimals below 1, 1 below 100, whole above. @param {number} score */
export const fmtScore = (score) => (score < 1 ? score.toFixed(2) : score < 100 ? score.toFixed(1) : String(Math.round(score)));
/**
 * An instance's engine load as the routing table carries it (issue 18): "score 2.3 · 12 slots · 1 s ago"
 * (slots: the capacity the control service learned, when known); "stale" when older than 3 × its interval
 * (the plugin ignores it then); "—" when absent.
 * @param {{ score: number, at_ms: number, interval_ms: number, capacity?: number } | undefined} load @param {number} now
 * @returns {{ text: string, stale: boolean | null }}
 */
export function loadText(load, now) {
  if (!load) return { text: "—", stale: null };
  const age = ago(new Date(load.at_ms).toISOString(), now);
  const stale = now - load.at_ms > 3 * load.interval_ms;
  const slots = load.capacity === undefined ? "" : ` · ${load.capacity} slot${load.capacity === 1 ? "" : "s"}`;
  return { text: `score ${fmtScore(load.score)}${slots} · ${stale ? `stale (${age})` : age}`, stale };
}
/** A deployment's session affinity, read-only text. @param {any} a */
export function affinityText(a) {
  if (!a) return "no session affinity";
  const src = a.source === "header" ? `header ${a.header}` : a.source === "user" ? "body's \"user\"" : String(a.source);
  return `affinity by ${src} · load factor ${a.load_factor ?? 1.25}`;
}
/** @param {string} state */
export const stateBadge = (state) => h("span", { class: `badge state-${state}` }, /** @type {any} */ (STATE_TEXT)[state] ?? state);

/** @param {any} c a connectivity result */
export function checkText(c) {
  if (!c) return "Not tested yet";
  if (c.ok) {
    const parts = ["Connected"];
    if (c.engine) parts.push(/** @type {any} */ (ENGINE_TEXT)[c.engine] ?? c.engine);
    parts.push(`${Math.round(c.latency_ms.total)} ms`);
    return parts.join(" · ");
  }
  return `Failed: ${c.error?.code ?? "error"} — ${c.error?.message ?? ""}${c.detail ? ` · “${c.detail}”` : ""}`;
}

/**
 * What a failed instance's connectivity test saw (a 422 connectivity_failed's `error.instances`, or the
 * `warnings` of a create): one list item per instance. @param {any[]} evidence
 */
export function evidenceList(evidence) {
  return h(
    "ul",
    { class: "evidence-list" },
    evidence.map((/** @type {any} */ e) => {
      const c = e.check ?? {};
      const facts = [c.address ? `at ${c.address}` : null, c.http_status ? `HTTP ${c.http_status}` : null, c.engine ? (/** @type {any} */ (ENGINE_TEXT)[c.engine] ?? c.engine) : null]
        .filter((x) => x !== null)
        .join(" · ");
      return h(
        "li",
        { class: "evidence", dataset: { instance: e.instance_id, code: e.code } },
        h("span", { class: "result-name" }, h("strong", {}, e.instance_id), " ", h("span", { class: "url" }, e.url)),
        h("span", { class: "badge state-unreachable" }, e.code),
        h("span", { class: "result-text" }, e.message, facts ? ` (${facts})` : "", c.detail ? ` — “${c.detail}”` : ""),
      );
    }),
  );
}

/** One line explaining a timeline event from its evidence. @param {any} e */
export function explain(e) {
  const ev = e.evidence ?? {};
  switch (e.reason) {
    case "probe_failures": {
      const err = ev.probes?.[0]?.error;
      return `${ev.unhealthy_threshold ?? "several"} consecutive probes failed${err ? ` (last: ${err})` : ""}`;
    }
    case "probes_passed":
      return `${ev.healthy_threshold ?? "enough"} consecutive probes passed`;
    case "error_rate":
      return `error rate ${fmtRate(ev.error_rate ?? null)} over the limit ${fmtRate(ev.thresholds?.max_error_rate ?? null)} (${ev.requests} requests in ${ev.window_seconds} s)`;
    case "p95_latency":
      return `P95 ${fmtMs(ev.p95_ms ?? null)} over the limit ${fmtMs(ev.thresholds?.max_p95_ms ?? null)} (${ev.requests} requests in ${ev.window_seconds} s)`;
    case "last_eligible_instance":
      return "over the P95 limit, but the last eligible instance is never ejected for latency";
    case "probe_ok":
      return `${ev.probe?.kind ?? ""} probe answered in ${fmtMs(ev.probe?.latency_ms ?? null)}`.trim();
    default: {
      const p = ev.probe;
      const t = ev.thresholds;
      return `${p?.kind ?? ""} probe: ${e.reason}${t ? ` — ${ev.consecutive_failures} of ${t.unhealthy} failures to eject` : ""}`.trim();
    }
  }
}

/**
 * @typedef {{ toggle(d: any, i: any): void, addInstance(d: any): void, settings(d: any): void, remove(d: any): void,
 *   editInstance(d: any, i: any): void, migrate(d: any, i: any): void, stopMigration(d: any, m: any): void, removeInstance(d: any, i: any): void,
 *   retest(d: any, i: any): void, editModel(m: any): void, removeModel(m: any): void }} Actions
 * @typedef {{ admin: boolean, models: Map<string, any>, open: Set<string>, timelines: Map<string, any[] | { error: string }>,
 *   histories: Map<string, any>, loads: Map<string, { score: number, at_ms: number, interval_ms: number }>, now: number, on: Actions }} ViewCtx
 */

/**
 * The model registry: names clients send, the served name, which deployment serves it; edit and
 * remove for admins. @param {any[]} models @param {Map<string, any>} deployments @param {ViewCtx} ctx
 */
export function modelItems(models, deployments, ctx) {
  const servedBy = new Map([...deployments.values()].map((d) => [d.model_id, d.id]));
  if (models.length === 0) return [h("li", { class: "muted" }, "None yet.")];
  return models.map((m) => {
    const dep = servedBy.get(m.id);
    return h(
      "li",
      { class: "model", "aria-label": `Model ${m.name}` },
      h(
        "div",
        { class: "model-facts" },
        h("strong", {}, m.name),
        m.display_name && m.display_name !== m.name ? h("span", { class: "sub" }, ` ${m.display_name}`) : null,
        h(
          "p",
          { class: "meta" },
          m.aliases.length > 0 ? h("span", {}, "also ", h("code", {}, m.aliases.join(", "))) : null,
          m.served_name ? h("span", {}, "served as ", h("code", {}, m.served_name)) : null,
          m.context_length ? h("span", {}, `${m.context_length.toLocaleString("en")} tokens context`) : null,
          h("span", {}, dep ? `deployed as ${dep}` : "not deployed"),
        ),
      ),
      ctx.admin
        ? h(
            "div",
            { class: "model-actions" },
            h("button", { type: "button", class: "btn", dataset: { key: `edit-model:${m.id}` }, onclick: () => ctx.on.editModel(m) }, "Edit model"),
            h("button", { type: "button", class: "btn btn-danger-quiet", dataset: { key: `remove-model:${m.id}` }, onclick: () => ctx.on.removeModel(m) }, "Remove model"),
          )
        : null,
    );
  });
}

export const cardId = (/** @type {string} */ id) => `dep-${id}`;
export const detailId = (/** @type {string} */ dep, /** @type {string} */ inst) => `detail-${dep}--${inst}`;
export const instKey = (/** @type {string} */ dep, /** @type {string} */ inst) => `${dep}/${inst}`;

/** @param {any} d @param {ViewCtx} ctx */
export function deploymentCard(d, ctx) {
  const model = ctx.models.get(d.model_id);
  const title = model ? model.display_name || model.name : d.model_id;
  const hc = d.health_check;
  const titleId = `${cardId(d.id)}-title`;
  const counts = countStates(d.instances);
  const btn = (/** @type {string} */ text, /** @type {string} */ key, /** @type {() => void} */ f, cls = "btn") => h("button", { type: "button", class: cls, dataset: { key }, onclick: f }, text);
  return h(
    "article",
    { class: "dep", id: cardId(d.id), "aria-labelledby": titleId },
    h(
      "header",
      { class: "dep-head" },
      h(
        "div",
        { class: "dep-title" },
        h("h2", { id: titleId }, title, " ", h("span", { class: "dep-id" }, d.id)),
        h(
          "p",
          { class: "meta" },
          model ? h("span", {}, "serves ", h("code", {}, [model.name, ...model.aliases].join(", "))) : null,
          h("span", {}, label(STRATEGIES, d.strategy)),
          h("span", {}, d.on_unavailable === "panic" ? "panic when none healthy" : "fail fast when none healthy"),
          h("span", {}, `probe every ${hc.interval_seconds} s · eject after ${hc.unhealthy_threshold} · re-add after ${hc.healthy_threshold}`),
          h("span", { class: "load-signals", dataset: { on: String(d.load_signals === true) } }, `load signals ${d.load_signals ? "on" : "off"}`),
          h("span", { class: "affinity" }, affinityText(d.affinity)),
        ),
        h("p", { class: "meta counts" }, Object.entries(counts).map(([st, n]) => h("span", { class: `count state-text-${st}` }, `${n} ${/** @type {any} */ (STATE_TEXT)[st].toLowerCase()}`))),
      ),
      ctx.admin
        ? h(
            "div",
            { class: "dep-actions", role: "group", "aria-label": `Actions for ${title}` },
            btn("Add instance", `add:${d.id}`, () => ctx.on.addInstance(d)),
            btn("Settings", `settings:${d.id}`, () => ctx.on.settings(d)),
            btn("Delete", `delete:${d.id}`, () => ctx.on.remove(d), "btn btn-danger-quiet"),
          )
        : null,
    ),
    migrations(d, ctx),
    d.instances.length === 0
      ? h("p", { class: "muted no-instances" }, "No instances: requests for this model have nowhere to go.")
      : h(
          "table",
          { class: "instances" },
          h("caption", { class: "visually-hidden" }, `Instances of ${title}`),
          h(
            "thead",
            {},
            h(
              "tr",
              {},
              h("th", { scope: "col" }, "Instance"),
              h("th", { scope: "col" }, "State"),
              h("th", { scope: "col", class: "num" }, "Weight"),
              h("th", { scope: "col", class: "num", title: "Failover tier; 0 = primary" }, "Tier"),
              h("th", { scope: "col" }, "Region"),
              h("th", { scope: "col" }, "GPU"),
              h("th", { scope: "col", class: "num", title: `Traffic P95 over the last ${hc.window_seconds} s` }, "P95"),
              h("th", { scope: "col", class: "num", title: `Upstream 5xx and connect failures over the last ${hc.window_seconds} s` }, "Errors"),
              h("th", { scope: "col", class: "num", title: "Requests in flight now, summed over every data-plane worker's last telemetry batch" }, "In flight"),
              h("th", { scope: "col" }, "Last probe"),
              h("th", { scope: "col", title: "Engine load from its metrics (requests waiting + KV-cache usage), with its age; deployments with load signals on" }, "Load"),
            ),
          ),
          ...d.instances.map((/** @type {any} */ i) => instanceRows(d, i, ctx)),
        ),
  );
}

/** @param {any[]} instances */
function countStates(instances) {
  /** @type {Record<string, number>} */
  const c = {};
  for (const i of instances) c[i.state] = (c[i.state] ?? 0) + 1;
  return c;
}

/** @param {any} d @param {any} i @param {ViewCtx} ctx */
function instanceRows(d, i, ctx) {
  const key = instKey(d.id, i.id);
  const open = ctx.open.has(key);
  const hl = i.health;
  const lp = hl?.last_probe;
  const panelId = detailId(d.id, i.id);
  return h(
    "tbody",
    { class: `inst${open ? " open" : ""}`, dataset: { instance: i.id, state: i.state } },
    h(
      "tr",
      { class: "inst-row" },
      h(
        "td",
        { class: "inst-name", "data-label": "Instance" },
        h(
          "button",
          { type: "button", class: "disclosure", "aria-expanded": String(open), "aria-controls": panelId, dataset: { key: `toggle:${key}` }, onclick: () => ctx.on.toggle(d, i) },
          h("span", { class: "chev", "aria-hidden": "true" }),
          h("span", { class: "visually-hidden" }, "Details of instance "),
          i.id,
        ),
        h("span", { class: "url" }, i.url),
      ),
      h(
        "td",
        { "data-label": "State" },
        stateBadge(i.state),
        i.state === "ejected" && hl?.reason ? h("span", { class: "sub" }, /** @type {any} */ (REASON_TEXT)[hl.reason] ?? hl.reason) : null,
        i.state === "unreachable" && i.last_check?.error ? h("span", { class: "sub" }, i.last_check.error.code) : null,
      ),
      h("td", { class: "num", "data-label": "Weight" }, String(i.weight)),
      h("td", { class: "num", "data-label": "Tier" }, String(i.priority)),
      h("td", { "data-label": "Region" }, i.region || "–"),
      h("td", { "data-label": "GPU" }, gpuText(i)),
      h("td", { class: "num", "data-label": "P95" }, fmtMs(hl?.p95_ms ?? null)),
      h("td", { class: "num", "data-label": "Errors" }, fmtRate(hl?.error_rate ?? null)),
      h(
        "td",
        { class: "num", "data-label": "In flight", title: hl?.in_flight == null ? "No data plane reported a count" : `From ${hl.in_flight_senders} data-plane worker${hl.in_flight_senders === 1 ? "" : "s"}` },
        hl?.in_flight == null ? "–" : String(hl.in_flight),
      ),
      h(
        "td",
        { "data-label": "Last probe" },
        lp
          ? h("span", { class: lp.ok ? "probe-ok" : "probe-bad", title: clock(lp.at) }, `${lp.ok ? "ok" : lp.error ?? "failed"} · ${fmtMs(lp.latency_ms)} · ${ago(lp.at, ctx.now)}`)
          : "–",
      ),
      loadCell(ctx.loads.get(key), ctx.now),
    ),
    h("tr", { class: "detail-row", hidden: !open }, h("td", { colspan: "11", id: panelId }, open ? details(d, i, ctx) : null)),
  );
}

/** @param {{ score: number, at_ms: number, interval_ms: number } | undefined} load @param {number} now */
function loadCell(load, now) {
  const { text, stale } = loadText(load, now);
  return h(
    "td",
    { "data-label": "Load", class: stale === null ? "load" : stale ? "load load-stale" : "load", title: load ? `scraped ${clock(new Date(load.at_ms).toISOString())}, every ${load.interval_ms / 1000} s` : undefined },
    text,
  );
}

/** @param {any} d @param {any} i @param {ViewCtx} ctx */
function details(d, i, ctx) {
  const key = instKey(d.id, i.id);
  const hl = i.health;
  const timeline = ctx.timelines.get(key);
  const history = ctx.histories.get(key);
  const c = i.last_check;
  const btn = (/** @type {string} */ text, /** @type {string} */ k, /** @type {() => void} */ f, cls = "btn") => h("button", { type: "button", class: cls, dataset: { key: `${k}:${key}` }, onclick: f }, text);
  const migrating = d.migrations.some((/** @type {any} */ m) => !finished(m) && (m.from_instance === i.id || m.to_instance === i.id));
  return h(
    "div",
    { class: "detail", role: "region", "aria-label": `Instance ${i.id} details` },
    h(
      "div",
      { class: "detail-facts" },
      h(
        "dl",
        {},
        h("dt", {}, "Endpoint"),
        h("dd", {}, h("code", {}, i.url), i.address ? h("span", { class: "sub" }, ` → ${i.address}`) : null),
        h("dt", {}, "Connectivity test"),
        h("dd", { class: c ? (c.ok ? "probe-ok" : "probe-bad") : "" }, checkText(c), c ? h("span", { class: "sub" }, ` ${clock(c.checked_at)}`) : null),
        h("dt", {}, "Health"),
        h(
          "dd",
          {},
          hl
            ? `${hl.consecutive_successes} passed / ${hl.consecutive_failures} failed in a row` +
                (hl.reason ? ` · ${/** @type {any} */ (REASON_TEXT)[hl.reason] ?? hl.reason} since ${clock(hl.since)}` : "") +
                ` · ${hl.requests} requests in ${hl.window_seconds} s`
            : "–",
        ),
        h("dt", {}, "API key"),
        h("dd", {}, i.has_api_key ? "set (write-only)" : "none"),
      ),
      ctx.admin
        ? h(
            "div",
            { class: "detail-actions", role: "group", "aria-label": `Actions for instance ${i.id}` },
            btn("Edit instance", "edit", () => ctx.on.editInstance(d, i)),
            i.state === "active" || i.state === "ejected" ? btn("Change endpoint", "migrate", () => ctx.on.migrate(d, i)) : null,
            i.state === "unreachable" ? btn("Test again", "retest", () => ctx.on.retest(d, i)) : null,
            migrating ? null : btn("Remove", "remove", () => ctx.on.removeInstance(d, i), "btn btn-danger-quiet"),
          )
        : null,
    ),
    h(
      "div",
      { class: "detail-panels" },
      h(
        "section",
        { class: "panel", "aria-label": "Latency and errors" },
        h("h3", {}, "Latency and errors"),
        history ? (history.error ? h("p", { class: "muted" }, history.error) : historyChart(history, `Instance ${i.id}`)) : h("p", { class: "muted" }, "Loading…"),
      ),
      h(
        "section",
        { class: "panel", "aria-label": "Event timeline" },
        h("h3", {}, "Event timeline"),
        timelineList(timeline),
      ),
    ),
  );
}

/** @param {any[] | { error: string } | undefined} t */
function timelineList(t) {
  if (t === undefined) return h("p", { class: "muted" }, "Loading…");
  if (!Array.isArray(t)) return h("p", { class: "muted" }, t.error);
  if (t.length === 0) return h("p", { class: "muted" }, "No events yet: probe results are recorded when they change.");
  return h(
    "ol",
    { class: "timeline" },
    t.map((e) => {
      const [text, tone] = /** @type {any} */ (EVENT_TEXT)[e.type] ?? [e.type, ""];
      return h(
        "li",
        { class: `tl tl-${tone}`, dataset: { type: e.type } },
        h("time", { datetime: e.at }, clock(e.at)),
        h("span", { class: "tl-type" }, text),
        h("span", { class: "tl-why" }, explain(e)),
      );
    }),
  );
}

/** @param {any} m */
export const finished = (m) => m.phase === "succeeded" || m.phase === "rolled_back";

const STEPS = [
  ["testing", "Connectivity test"],
  ["health_checking", "Health checks"],
  ["draining", "Switch & drain"],
  ["succeeded", "Done"],
];

/** Running migrations, and the last finished one for a while. @param {any} d @param {ViewCtx} ctx */
function migrations(d, ctx) {
  const running = d.migrations.filter((/** @type {any} */ m) => !finished(m));
  const done = d.migrations.filter((/** @type {any} */ m) => finished(m) && m.finished_at && ctx.now - Date.parse(m.finished_at) < 30 * 60_000);
  const show = [...running, ...done.slice(-1)];
  if (show.length === 0) return null;
  return h(
    "div",
    { class: "migrations" },
    show.map((m) => {
      const idx = m.phase === "rolled_back" ? -1 : STEPS.findIndex(([p]) => p === m.phase);
      return h(
        "section",
        { class: `migration mig-${m.phase}`, "aria-label": `Endpoint change of ${m.from_instance}` },
        h(
          "p",
          { class: "mig-title" },
          h("strong", {}, `Endpoint change of ${m.from_instance}`),
          " → ",
          h("code", {}, m.url),
          h("span", { class: "sub" }, ` as ${m.to_instance}`),
        ),
        // Before the switch a stop is a rollback (the API's cancel); after it the old instance already drains.
        ctx.admin && (m.phase === "testing" || m.phase === "health_checking")
          ? h("button", { type: "button", class: "btn btn-danger-quiet", dataset: { key: `stop-mig:${d.id}/${m.id}` }, onclick: () => ctx.on.stopMigration(d, m) }, "Stop endpoint change")
          : null,
        m.phase === "rolled_back"
          ? h("p", { class: "mig-result bad" }, `Rolled back ${m.finished_at ? clock(m.finished_at) : ""}: ${m.error?.message ?? "failed"}. ${m.from_instance} kept serving throughout.`)
          : h(
              "ol",
              { class: "steps" },
              STEPS.map(([p, text], k) =>
                h(
                  "li",
                  { class: k < idx || m.phase === "succeeded" ? "step done" : k === idx ? "step current" : "step", "aria-current": k === idx && m.phase !== "succeeded" ? "step" : null },
                  p === "health_checking" && (m.phase === "health_checking" || k < idx) ? `${text} ${m.consecutive_successes}/${m.required_successes}` : text,
                ),
              ),
            ),
        m.phase === "succeeded" ? h("p", { class: "mig-result good" }, `Succeeded ${clock(m.finished_at)}: ${m.to_instance} took over, ${m.from_instance} was drained and removed.`) : null,
      );
    }),
  );
}

// ───────────────────────────── data planes (GET /v1/dataplanes) ─────────────────────────────
// Node ids, clusters, user agents and NACK messages come from the Envoys: like everything else they are
// only ever put in the page as text.

/** CDS / EDS, else the type URL's last segment. @param {any} t a type status */
export const xdsTypeName = (t) => (t.resource === "clusters" ? "CDS" : t.resource === "endpoints" ? "EDS" : String(t.type_url).slice(String(t.type_url).lastIndexOf(".") + 1));

/** The types whose last response the node rejected. @param {any} n a data plane */
export const nackedTypes = (n) => n.types.filter((/** @type {any} */ t) => t.state === "nacked" && t.nacked);

/** @param {string | null} v */
const versionText = (v) => (v === null ? "a version (not known over REST)" : `version ${v}`);
/** @param {string} v */
const keptText = (v) => (v === "" ? "keeps nothing yet" : `keeps version ${v}`);

/** @param {any} n @param {number} now */
function connectionFacts(n, now) {
  if (n.connected) {
    return [
      h("span", { class: "badge state-active" }, "Connected"),
      n.connected_since ? h("span", { class: "sub", title: clock(n.connected_since) }, ` since ${clock(n.connected_since)}`) : null,
    ];
  }
  const gone = n.disconnected_at ?? n.last_seen;
  return [h("span", { class: "badge state-gone" }, "Gone"), h("span", { class: "sub", title: clock(gone) }, ` since ${clock(gone)} (${ago(gone, now)})`)];
}

/** One type's line: what is ACKed, what was sent last, and the state of that response. @param {any} t */
function typeLine(t) {
  const state = t.state === "nacked" ? ["NACKed", "state-ejected"] : t.state === "acked" ? ["ACKed", "state-active"] : t.state === "pending" ? ["Waiting for ACK", "state-pending"] : ["–", ""];
  return h(
    "li",
    { class: "dp-type", dataset: { type: xdsTypeName(t), state: t.state ?? "none" } },
    h("span", { class: "dp-type-name" }, xdsTypeName(t)),
    h("span", { class: "dp-acked" }, t.acked ? `ACKed version ${t.acked.version}` : "nothing ACKed yet"),
    t.last_sent && t.last_sent.version !== t.acked?.version ? h("span", { class: "sub" }, `sent version ${t.last_sent.version}`) : null,
    h("span", { class: `badge ${state[1]}` }, state[0]),
    t.nacks_total > 0 ? h("span", { class: "sub" }, `${t.nacks_total} NACK${t.nacks_total === 1 ? "" : "s"}`) : null,
  );
}

/** A NACK: the version rejected, the one kept, Envoy's message. @param {any} t @param {boolean} current */
function nackBox(t, current) {
  const x = t.nacked;
  return h(
    "div",
    { class: current ? "nack" : "nack nack-old", role: "group", "aria-label": `${xdsTypeName(t)} ${current ? "rejected" : "rejected earlier"}` },
    h(
      "p",
      { class: "nack-title" },
      current ? h("strong", {}, `Rejected ${xdsTypeName(t)} ${versionText(x.version)}`) : h("span", {}, `Earlier: rejected ${xdsTypeName(t)} ${versionText(x.version)}, since accepted a newer one`),
      ` — ${keptText(x.accepted_version)} · `,
      h("time", { datetime: x.at }, clock(x.at)),
      x.code ? h("span", { class: "sub" }, ` · code ${x.code}`) : null,
    ),
    h("p", { class: "nack-message" }, x.message === "" ? "(no message)" : x.message),
  );
}

/**
 * The data planes this control replica serves: per Envoy its id, transport, connection, per type the
 * ACKed version and a NACK with its message. Connected nodes with a current NACK first, gone ones last.
 * @param {any} list a DataplaneList @param {number} now
 */
export function dataplaneItems(list, now) {
  if (list.dataplanes.length === 0) return [h("li", { class: "muted" }, "No Envoy has connected to this control replica over xDS (ADS or REST) in the last 15 minutes.")];
  const rank = (/** @type {any} */ n) => (!n.connected ? 2 : nackedTypes(n).length > 0 ? 0 : 1);
  const nodes = [...list.dataplanes].sort((a, b) => rank(a) - rank(b) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  return nodes.map((n) => {
    const nacked = nackedTypes(n);
    const earlier = n.types.filter((/** @type {any} */ t) => t.nacked && t.state !== "nacked");
    return h(
      "li",
      { class: `dataplane${nacked.length > 0 ? " dp-nacked" : ""}${n.connected ? "" : " dp-gone"}`, "aria-label": `Data plane ${n.id}`, dataset: { transport: n.transport, connected: String(n.connected) } },
      h(
        "div",
        { class: "dp-head" },
        h("code", { class: "dp-id" }, n.id),
        h("span", { class: "badge" }, n.transport === "ads" ? "ADS" : "REST"),
        ...connectionFacts(n, now),
      ),
      h(
        "p",
        { class: "meta" },
        n.cluster ? h("span", {}, "cluster ", h("code", {}, n.cluster)) : null,
        n.user_agent ? h("span", {}, n.user_agent) : null,
        h("span", {}, n.acked_version === null ? "no complete configuration yet" : `has version ${n.acked_version} completely`),
        n.transport === "ads" && n.streams > 1 ? h("span", {}, `${n.streams} streams`) : null,
        n.connected ? null : h("span", {}, `last seen ${ago(n.last_seen, now)}`),
      ),
      nacked.map((/** @type {any} */ t) => nackBox(t, true)),
      h("ul", { class: "dp-types" }, n.types.filter((/** @type {any} */ t) => t.resource !== "other" || t.state !== null).map(typeLine)),
      earlier.map((/** @type {any} */ t) => nackBox(t, false)),
    );
  });
}
