/**
 * The dashboard (/ui) in headless Chromium (Debian's `chromium`, driven by playwright-core), against a
 * real control replica, Redis and mock model instances:
 *   - admin at laptop width: create a deployment through the form and see each instance's connectivity
 *     result; stop one instance's upstream → it is shown ejected (live, no reload) with the timeline
 *     entry; start it again → back in rotation; then scale up, edit a weight, change an endpoint (a
 *     rolling migration: progress, success; one rolled back; one stopped by hand), remove an instance, delete the
 *     deployment with confirmation;
 *   - keyboard: the main actions are reachable with Tab and work with Enter; dialogs take focus, Escape
 *     closes them and focus returns;
 *   - a sign-in link (`#token=…`) signs in and leaves the address bar clean; a create (and a scale-up) whose
 *     instances all fail their connectivity test shows what each test saw, then "create anyway";
 *   - phone width (390 px): no horizontal overflow;
 *   - viewer token: the same data, no action buttons;
 *   - data planes (issue 17): a raw ADS client's NACK shows live in the Data planes view and the alert at the
 *     top, with Envoy's message and the rejected and kept versions, as text (the id and message carry markup);
 *   - engine load (issue 18): a deployment with load signals (a mock vLLM's /metrics) shows a numeric score
 *     per instance, one without shows "—"; an admin turns load signals on in the settings dialog.
 * A small loop plays the gateway's part for the chart (telemetry batches, contract 3, with the plugin
 * token). Screenshots: test/ui/artifacts/*.png. Waits are conditions, never fixed sleeps.
 *
 * Skipped, with a message, when Chromium is not installed (CHROMIUM_BIN overrides /usr/bin/chromium).
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { LATENCY_BUCKETS_MS } from "../../control/contracts/telemetry.js";
import { ADMIN, PLUGIN, VIEWER, registerModel, startReplica, waitFor, withRedis, type Replica } from "../control/harness.js";
import { closedPortUrl, startMockOpenAI, type MockOpenAI } from "../../envoy/local/mock-openai.js";
import type { RedisServer } from "../support/redis.js";
import { TYPE_URL } from "../../control/xds/build.js";
import { DataplaneList } from "../../control/xds/dataplanes.js";
import { RawAds } from "../xds/ads-client.js";

const CHROMIUM = process.env.CHROMIUM_BIN ?? "/usr/bin/chromium";
const ARTIFACTS = fileURLToPath(new URL("./artifacts/", import.meta.url));
const skip = existsSync(CHROMIUM) ? false : `Chromium not found at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM_BIN): dashboard browser test skipped`;
// Skipped, not failed, on a machine without Chromium (counted as skipped in the runner's summary).
if (skip) test("dashboard in headless Chromium", { skip }, () => undefined);

const T = 15_000; // upper bound of any single wait

/**
 * Until the closed dialog's `close` handler has run (it removes the <dialog> and moves focus back, in one
 * task). A dialog locator counts as detached as soon as the dialog is closed and hidden, which is a task
 * earlier: focus could still be on its Cancel button then.
 */
const dialogRemoved = (page: Page) => page.waitForFunction(() => document.querySelector("dialog") === null, undefined, { timeout: T });

if (!skip) describe("dashboard in headless Chromium", () => {
  let redis: RedisServer;
  let control: Replica;
  let browser: Browser;
  const mocks: MockOpenAI[] = [];
  let m1: MockOpenAI, m2: MockOpenAI, m3: MockOpenAI, m4: MockOpenAI;
  const pageErrors: string[] = [];
  let reporting = true;
  let reporter: Promise<void> = Promise.resolve();

  before(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    redis = await withRedis();
    control = await startReplica(redis.url, { TELEMETRY_BUCKET_MS: "2000", EVENTS_HEARTBEAT_MS: "1000", LOG_LEVEL: "warn", CONTROL_XDS_GRPC_PORT: "0" });
    for (let k = 0; k < 4; k++) mocks.push(await startMockOpenAI({ model: "llama-3.1-8b", latencyMs: 2 + k }));
    [m1, m2, m3, m4] = mocks as [MockOpenAI, MockOpenAI, MockOpenAI, MockOpenAI];
    await registerModel(control.api, "llama-3.1-8b", { display_name: "Llama 3.1 8B Instruct", aliases: ["llama"] });
    await registerModel(control.api, "qwen-2.5-7b", { display_name: "Qwen 2.5 7B" });
    const { chromium } = await import("playwright-core");
    // playwright's launch() runs Chromium with a fresh temporary profile (its --user-data-dir), removed on close.
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    });
    reporter = reportTelemetry();
  });

  after(async () => {
    reporting = false;
    await reporter;
    await browser?.close();
    await control?.stop();
    for (const m of mocks) await m.close();
    await redis?.close();
  });

  /** Plays the gateway's part: a telemetry batch every 250 ms for the llama-prod instances whose upstream is up. */
  async function reportTelemetry(): Promise<void> {
    let seq = 0;
    while (reporting) {
      const r = await control.api("GET", "/v1/routing-table", { token: PLUGIN });
      const dep = r.body?.deployments?.find((d: { id: string }) => d.id === "llama-prod");
      if (dep) {
        const instances = dep.instances.map((i: { id: string; address: string }) => {
          const m = mocks.find((x) => x.url.includes(`:${i.address.split(":")[1]}/`));
          const up = m !== undefined && isUp(m);
          const n = 20;
          const buckets = new Array(LATENCY_BUCKETS_MS.length + 1).fill(0);
          if (up) {
            buckets[3] = 14; // ≤ 50 ms
            buckets[4] = 5; // ≤ 100 ms
            buckets[5] = 1; // ≤ 250 ms
          }
          return { deployment: "llama-prod", instance: i.id, address: i.address, requests: n, upstream_5xx: 0, connect_failures: up ? 0 : n, latency_ms_buckets: buckets, latency_ms_sum: up ? 1200 : 0, in_flight: up ? 3 : 0 };
        });
        const now = Date.now();
        await control.api("POST", "/v1/telemetry", { token: PLUGIN, body: { schema: 1, source: "ui-test-envoy", seq: ++seq, table_version: r.body.version, start_ms: now - 250, end_ms: now, instances } });
      }
      await new Promise((res) => setTimeout(res, 250));
    }
  }
  const down = new Set<MockOpenAI>();
  const isUp = (m: MockOpenAI) => !down.has(m);

  async function open(width: number, height: number, token: string): Promise<{ ctx: BrowserContext; page: Page }> {
    const ctx = await browser.newContext({ viewport: { width, height }, reducedMotion: "reduce" });
    const page = await ctx.newPage();
    page.on("console", (m) => {
      if (m.type() === "error" && !/status of 4\d\d/.test(m.text())) pageErrors.push(m.text());
    });
    page.on("pageerror", (e) => pageErrors.push(String(e)));
    const r = await page.goto(`${control.url}/ui/`);
    assert.equal(r?.status(), 200);
    assert.match(r?.headers()["content-security-policy"] ?? "", /script-src 'self'/);
    await page.getByLabel("API token").fill(token);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.locator('#live[data-state="live"]').waitFor({ timeout: T });
    return { ctx, page };
  }

  const instanceOf = async (dep: string, url: string): Promise<string> => {
    const r = await control.api("GET", `/v1/deployments/${dep}`);
    const i = r.body.instances.find((x: { url: string }) => x.url === url);
    assert.ok(i, `instance with ${url}`);
    return i.id;
  };
  /**
   * The subtests build on each other (the first creates llama-prod through the form, the last deletes it).
   * Each later one calls this first, so that one failure reads as one failure: if an earlier subtest did
   * not get as far as creating llama-prod, or left an upstream stopped, it is put back through the API.
   */
  async function ensureLlamaProd(): Promise<void> {
    for (const m of [...down]) {
      await m.start();
      down.delete(m);
    }
    const models = (await control.api("GET", "/v1/models")).body.models as { name: string }[];
    if (!models.some((m) => m.name === "mistral-7b")) {
      await registerModel(control.api, "mistral-7b", { display_name: "Mistral 7B", aliases: ["mistral", "mistral-small"], served_name: "mistralai/Mistral-7B-Instruct-v0.3" });
    }
    if ((await control.api("GET", "/v1/deployments/llama-prod")).status === 200) return;
    const r = await control.api("POST", "/v1/deployments", {
      body: {
        id: "llama-prod",
        model: "llama-3.1-8b",
        strategy: "weighted_round_robin",
        health_check: { interval_seconds: 0.2, timeout_seconds: 0.5, unhealthy_threshold: 2, healthy_threshold: 2, window_seconds: 30 },
        instances: [
          { url: m1.url, weight: 3, region: "eu-west", gpu_count: 1, gpu_memory_gb: 80 },
          { url: m2.url, priority: 1, region: "eu-central", gpu_count: 2, gpu_memory_gb: 24 },
        ],
      },
    });
    assert.equal(r.status, 201, `llama-prod set up through the API after an earlier failure: ${r.text}`);
  }

  /** An open instance's timeline has answered: its events, or the line saying there are none yet. */
  const timelineLoaded = (page: Page, inst: string) =>
    row(page, "llama-prod", inst).locator('[aria-label="Event timeline"]').locator('.timeline li, p:has-text("No events yet")').first().waitFor({ timeout: T });
  const row = (page: Page, dep: string, inst: string) => page.locator(`#dep-${dep} tbody[data-instance="${inst}"]`);

  test("admin at laptop width: create, see connectivity results, an ejection and the return, live", async () => {
    const { ctx, page } = await open(1280, 900, ADMIN);
    await page.getByText("No deployments yet").waitFor({ timeout: T });

    // Register a model from the page: a field error from the API first, then success.
    await page.getByRole("button", { name: "Register model" }).click();
    const reg = page.getByRole("dialog", { name: "Register a model" });
    await reg.getByRole("textbox", { name: "Name", exact: true }).fill("has space");
    await reg.getByRole("button", { name: "Register model" }).click();
    await reg.locator('input[aria-invalid="true"]').waitFor({ timeout: T });
    assert.equal(await reg.getByRole("textbox", { name: "Name", exact: true }).getAttribute("aria-invalid"), "true", "the API's error is shown at the name");
    await reg.getByRole("textbox", { name: "Name", exact: true }).fill("mistral-7b");
    await reg.getByLabel("Display name").fill("Mistral 7B");
    await reg.getByLabel("Aliases").fill("mistral, mistral-small ,");
    await reg.getByLabel("Served name").fill("mistralai/Mistral-7B-Instruct-v0.3");
    await reg.getByLabel("Context length").fill("32768");
    await reg.getByRole("button", { name: "Register model" }).click();
    await reg.waitFor({ state: "detached", timeout: T });
    const registered = (await control.api("GET", "/v1/models")).body.models.find((m: { name: string }) => m.name === "mistral-7b");
    assert.deepEqual(
      [registered.display_name, registered.aliases, registered.served_name, registered.context_length],
      ["Mistral 7B", ["mistral", "mistral-small"], "mistralai/Mistral-7B-Instruct-v0.3", 32768],
    );

    await page.getByRole("button", { name: "New deployment" }).click();
    const dlg = page.getByRole("dialog", { name: "New deployment" });
    // The page opens this dialog once its model-registry read answers: wait for the option, then count it.
    const newModel = dlg.getByLabel("Model").locator("option", { hasText: "mistral-7b — Mistral 7B" });
    await newModel.waitFor({ state: "attached", timeout: T });
    assert.equal(await newModel.count(), 1, "the new model can be deployed, once");
    await dlg.getByLabel("Model").selectOption({ label: "llama-3.1-8b — Llama 3.1 8B Instruct" });
    await dlg.getByLabel("Deployment id").fill("llama-prod");
    await dlg.getByLabel("Strategy").selectOption("weighted_round_robin");
    const i1 = dlg.getByRole("group", { name: "Instance 1" });
    await i1.getByLabel("URL").fill(m1.url);
    await i1.getByLabel("Weight").fill("3");
    await i1.getByLabel("Region").fill("eu-west");
    await i1.getByLabel("GPUs").fill("1");
    await i1.getByLabel("GPU memory (GB)").fill("80");
    await dlg.getByRole("button", { name: "Add another instance" }).click();
    const i2 = dlg.getByRole("group", { name: "Instance 2" });
    await i2.getByLabel("URL").fill(m2.url);
    await i2.getByLabel("Tier").fill("1");
    await i2.getByLabel("Region").fill("eu-central");
    await i2.getByLabel("GPUs").fill("2");
    await i2.getByLabel("GPU memory (GB)").fill("24");
    await dlg.getByText("Health checks and thresholds").click();
    await dlg.getByLabel("Probe every (s)").fill("0.2");
    await dlg.getByLabel("Probe timeout (s)").fill("0.5");
    await dlg.getByLabel("Eject after failures").fill("2");
    await dlg.getByLabel("Re-add after successes").fill("2");
    await dlg.getByLabel("Traffic window (s)").fill("30");
    await dlg.getByRole("button", { name: "Create deployment" }).click();

    // Each instance's connectivity result, as it completes.
    await dlg.getByText("Deployment llama-prod created.").waitFor({ timeout: T });
    await waitFor(async () => (await dlg.locator(".result-active").count()) === 2, T, "two connectivity results");
    // Each row's text follows its state in the same render; wait for both anyway rather than read once.
    let results: string[] = [];
    await waitFor(async () => (results = await dlg.locator(".result-text").allTextContents()).length === 2 && results.every((t) => t.startsWith("Connected")), T, "two connected results");
    for (const t of results) assert.match(t, /^Connected · vLLM · \d+ ms$/);
    await page.screenshot({ path: `${ARTIFACTS}create-results-laptop.png` });
    await dlg.getByRole("button", { name: "Done" }).click();
    await dlg.waitFor({ state: "detached", timeout: T });
    await dialogRemoved(page);
    assert.equal(await page.evaluate(() => document.activeElement?.textContent), "New deployment", "focus returns to the opener");

    const a = await instanceOf("llama-prod", m1.url);
    const b = await instanceOf("llama-prod", m2.url);
    const card = page.locator("#dep-llama-prod");
    await card.getByRole("heading", { name: /Llama 3\.1 8B Instruct/ }).waitFor({ timeout: T });
    await row(page, "llama-prod", a).locator('[data-label="State"]', { hasText: "Active" }).waitFor({ timeout: T });
    const cells = await row(page, "llama-prod", a).locator(".inst-row td").allTextContents();
    assert.deepEqual(cells.slice(1, 6), ["Active", "3", "0", "eu-west", "1 × 80 GB"]);
    // P95, error rate and last probe come with the list (telemetry from the reporter, probes by the prober).
    await waitFor(async () => /ms$/.test((await row(page, "llama-prod", a).locator('[data-label="P95"]').textContent()) ?? ""), T, "P95 shown");
    // In flight: the reporter's count (3 per instance, from one sender).
    await waitFor(async () => (await row(page, "llama-prod", a).locator('[data-label="In flight"]').textContent()) === "3", T, "in-flight count shown");
    assert.equal(await row(page, "llama-prod", a).locator('[data-label="In flight"]').getAttribute("title"), "From 1 data-plane worker");
    // The first probe comes at the instance's phase in the interval (prober.ts probePhase), not at once: wait for it.
    await waitFor(async () => /^ok · /.test((await row(page, "llama-prod", a).locator('[data-label="Last probe"]').textContent()) ?? ""), T, "last probe ok shown");
    await row(page, "llama-prod", a).getByRole("button", { name: `Details of instance ${a}` }).click();
    await row(page, "llama-prod", a).locator(".chart svg path.c-p95").waitFor({ state: "attached", timeout: T });
    await waitFor(async () => ((await row(page, "llama-prod", a).locator("path.c-p95").getAttribute("d")) ?? "").includes("L"), T, "a P95 line with at least two buckets");
    await page.screenshot({ path: `${ARTIFACTS}dashboard-laptop.png`, fullPage: true });

    // Stop the first instance's upstream: ejected, shown without a reload.
    down.add(m1);
    await m1.stop();
    await row(page, "llama-prod", a).locator('[data-label="State"]', { hasText: "Ejected" }).waitFor({ timeout: T });
    await row(page, "llama-prod", a).locator('.timeline li[data-type="ejected"]').waitFor({ timeout: T });
    const why = await row(page, "llama-prod", a).locator('.timeline li[data-type="ejected"] .tl-why').first().textContent();
    assert.match(why ?? "", /2 consecutive probes failed \(last: refused\)/);
    assert.equal(await row(page, "llama-prod", b).getAttribute("data-state"), "active");
    await waitFor(async () => (await row(page, "llama-prod", a).locator("rect.c-err").count()) > 0, T, "error bars in the chart");
    await page.locator("#summary", { hasText: "1 ejected" }).waitFor({ timeout: T });
    await page.screenshot({ path: `${ARTIFACTS}ejected-laptop.png`, fullPage: true });

    // Start it again: back in rotation, with the timeline entry.
    await m1.start();
    down.delete(m1);
    await row(page, "llama-prod", a).locator('[data-label="State"]', { hasText: "Active" }).waitFor({ timeout: T });
    await row(page, "llama-prod", a).locator('.timeline li[data-type="readmitted"]').waitFor({ timeout: T });
    const types = await row(page, "llama-prod", a).locator(".timeline li").evaluateAll((els) => els.map((e) => (e as HTMLElement).dataset.type));
    assert.deepEqual(types.slice(0, 4), ["readmitted", "probe_passed", "ejected", "probe_failed"], "newest first");
    await ctx.close();
  });

  test("admin: scale up, edit a weight, change an endpoint (success and rollback), remove an instance", async () => {
    await ensureLlamaProd();
    const { ctx, page } = await open(1280, 900, ADMIN);
    const card = page.locator("#dep-llama-prod");
    await card.waitFor({ timeout: T });

    // Scale up.
    await card.getByRole("button", { name: "Add instance" }).click();
    const add = page.getByRole("dialog", { name: /Add an instance/ });
    await add.getByLabel("URL").fill(m3.url);
    await add.getByLabel("Region").fill("us-east");
    await add.getByRole("button", { name: "Add instance" }).click();
    await add.locator(".result-active", { hasText: "Connected" }).waitFor({ timeout: T });
    await add.getByRole("button", { name: "Done" }).click();
    const c = await instanceOf("llama-prod", m3.url);
    await row(page, "llama-prod", c).waitFor({ timeout: T });

    // Weight.
    await row(page, "llama-prod", c).getByRole("button", { name: `Details of instance ${c}` }).click();
    await row(page, "llama-prod", c).getByRole("button", { name: "Edit instance" }).click();
    const edit = page.getByRole("dialog", { name: `Edit instance ${c}` });
    await edit.getByLabel("Weight").fill("5");
    await edit.getByLabel("API key").fill("sk-ui-test-key");
    await edit.getByRole("button", { name: "Save" }).click();
    await edit.waitFor({ state: "detached", timeout: T });
    await row(page, "llama-prod", c).locator('[data-label="Weight"]', { hasText: "5" }).waitFor({ timeout: T });
    await row(page, "llama-prod", c).getByText("set (write-only)").waitFor({ timeout: T });
    const stored = (await control.api("GET", `/v1/deployments/llama-prod/instances/${c}`)).body;
    assert.deepEqual([stored.weight, stored.has_api_key], [5, true]);

    // Change an endpoint: progress, then success.
    const b = await instanceOf("llama-prod", m2.url);
    await row(page, "llama-prod", b).getByRole("button", { name: `Details of instance ${b}` }).click();
    await row(page, "llama-prod", b).getByRole("button", { name: "Change endpoint" }).click();
    const mig = page.getByRole("dialog", { name: `Change the endpoint of ${b}` });
    await mig.getByLabel("New URL").fill(m4.url);
    await mig.getByLabel("Drain timeout (s)").fill("1");
    await mig.getByLabel("API key").fill("sk-migrated-key");
    await mig.getByRole("button", { name: "Start endpoint change" }).click();
    await mig.waitFor({ state: "detached", timeout: T });
    const progress = card.locator(".migration");
    await progress.locator(".step").first().waitFor({ timeout: T });
    await card.locator(".migration .mig-result.good", { hasText: "Succeeded" }).waitFor({ timeout: T });
    await row(page, "llama-prod", b).waitFor({ state: "detached", timeout: T });
    const b2 = await instanceOf("llama-prod", m4.url);
    await row(page, "llama-prod", b2).locator('[data-label="State"]', { hasText: "Active" }).waitFor({ timeout: T });
    assert.ok(m4.requests.some((q) => q.headers.authorization === "Bearer sk-migrated-key"), "the new endpoint was tested with the key given in the form");


    // A change to an endpoint that refuses connections rolls back; the old instance keeps serving.
    await row(page, "llama-prod", c).getByRole("button", { name: "Change endpoint" }).click();
    const bad = page.getByRole("dialog", { name: `Change the endpoint of ${c}` });
    await bad.getByLabel("New URL").fill(await closedPortUrl());
    await bad.getByRole("button", { name: "Start endpoint change" }).click();
    await card.locator(".migration .mig-result.bad", { hasText: "Rolled back" }).waitFor({ timeout: T });
    assert.equal(await row(page, "llama-prod", c).getAttribute("data-state"), "active");
    await page.screenshot({ path: `${ARTIFACTS}migration-laptop.png`, fullPage: true });

    // Stopping an endpoint change before its switch (a 30 s probe interval keeps it there): the new
    // endpoint goes, the old one kept serving.
    await registerModel(control.api, "llama-canary", { served_name: "llama-3.1-8b" });
    const slow = { interval_seconds: 30, timeout_seconds: 1, healthy_threshold: 2, unhealthy_threshold: 3 };
    const made = await control.api("POST", "/v1/deployments", { body: { id: "canary", model: "llama-canary", health_check: slow, instances: [{ id: "c1", url: m1.url }] } });
    assert.equal(made.status, 201, made.text);
    const started = await control.api("POST", "/v1/deployments/canary/migrations", { body: { instance_id: "c1", url: m3.url, new_instance_id: "c2" } });
    assert.equal(started.status, 202, started.text);
    const canary = page.locator("#dep-canary");
    await canary.getByRole("button", { name: "Stop endpoint change" }).waitFor({ timeout: T });
    await page.screenshot({ path: `${ARTIFACTS}migration-stop-laptop.png`, fullPage: true }); // the page: a card re-renders on every event
    await canary.getByRole("button", { name: "Stop endpoint change" }).click();
    const stop = page.getByRole("dialog", { name: "Stop the endpoint change of c1?" });
    await stop.getByRole("button", { name: "Stop endpoint change" }).click();
    await stop.waitFor({ state: "detached", timeout: T });
    await canary.locator(".migration .mig-result.bad", { hasText: "cancelled by an operator" }).waitFor({ timeout: T });
    // An ended change offers no stop (waited for: the card re-renders on the event that ends it).
    await canary.getByRole("button", { name: "Stop endpoint change" }).waitFor({ state: "detached", timeout: T });
    const kept = (await control.api("GET", "/v1/deployments/canary")).body;
    assert.deepEqual(kept.instances.map((i: { id: string; state: string }) => [i.id, i.state]), [["c1", "active"]]);
    assert.equal(kept.migrations[0].error.code, "cancelled");
    assert.equal((await control.api("DELETE", "/v1/deployments/canary")).status, 204);
    await canary.waitFor({ state: "detached", timeout: T });

    // A field error from the API is shown at its field.
    await card.getByRole("button", { name: "Add instance" }).click();
    const invalid = page.getByRole("dialog", { name: /Add an instance/ });
    await invalid.getByLabel("URL").fill("ftp://nowhere");
    await invalid.getByRole("button", { name: "Add instance" }).click();
    await invalid.locator('input[aria-invalid="true"]').waitFor({ timeout: T });
    assert.match((await invalid.locator(".field-error").first().textContent()) ?? "", /scheme must be http or https/);
    await invalid.getByRole("button", { name: "Cancel" }).click();

    // Scale down, with confirmation.
    await row(page, "llama-prod", c).getByRole("button", { name: "Remove" }).click();
    const confirm = page.getByRole("dialog", { name: `Remove instance ${c}?` });
    await confirm.getByRole("button", { name: "Remove instance" }).click();
    await row(page, "llama-prod", c).waitFor({ state: "detached", timeout: T });
    assert.equal((await control.api("GET", `/v1/deployments/llama-prod/instances/${c}`)).status, 404);

    // Settings: the probe kind and traffic-threshold fields.
    await card.getByRole("button", { name: "Settings" }).click();
    const set = page.getByRole("dialog", { name: /Settings/ });
    await set.getByLabel("Probe", { exact: true }).selectOption("models");
    await set.getByLabel("Min requests").fill("10");
    await set.getByRole("button", { name: "Save" }).click();
    await set.waitFor({ state: "detached", timeout: T });
    const hc = (await control.api("GET", "/v1/deployments/llama-prod")).body.health_check;
    assert.deepEqual([hc.probe, hc.min_requests, hc.window_seconds, hc.completion_every], ["models", 10, 30, 0]);

    // The registry: edit a model (a new alias, no display name change needed), remove one that is not
    // deployed; a deployed one cannot be removed and the dialog says why.
    const mistral = page.getByRole("listitem", { name: "Model mistral-7b" });
    await mistral.getByRole("button", { name: "Edit model" }).click();
    const em = page.getByRole("dialog", { name: "Edit model mistral-7b" });
    await em.getByLabel("Aliases").fill("mistral, mistral-small, mistral-latest");
    await em.getByLabel("Served name").fill("");
    await em.getByRole("button", { name: "Save model" }).click();
    await em.waitFor({ state: "detached", timeout: T });
    await mistral.getByText("mistral-latest").waitFor({ timeout: T });
    const edited = (await control.api("GET", "/v1/models")).body.models.find((m: { name: string }) => m.name === "mistral-7b");
    assert.deepEqual([edited.aliases, edited.served_name, edited.display_name], [["mistral", "mistral-small", "mistral-latest"], null, "Mistral 7B"]);
    await page.getByRole("listitem", { name: "Model llama-3.1-8b" }).getByRole("button", { name: "Remove model" }).click();
    const busy = page.getByRole("dialog", { name: "Remove model llama-3.1-8b?" });
    await busy.getByRole("button", { name: "Remove model" }).click();
    await busy.locator(".dialog-error").waitFor({ timeout: T });
    assert.match((await busy.locator(".dialog-error").textContent()) ?? "", /deploy/i, "says the model is deployed");
    await busy.getByRole("button", { name: "Cancel" }).click();
    await mistral.getByRole("button", { name: "Remove model" }).click();
    await page.getByRole("dialog", { name: "Remove model mistral-7b?" }).getByRole("button", { name: "Remove model" }).click();
    await mistral.waitFor({ state: "detached", timeout: T });
    assert.equal((await control.api("GET", "/v1/models")).body.models.some((m: { name: string }) => m.name === "mistral-7b"), false);
    await ctx.close();
  });

  test("a sign-in link (#token=…, as npm start prints it) signs in and leaves no token in the address bar", async () => {
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 }, reducedMotion: "reduce" });
    try {
      const page = await ctx.newPage();
      page.on("pageerror", (e) => pageErrors.push(String(e)));
      // Through GET / (redirected to /ui/; the browser keeps the fragment, which never reaches the server).
      await page.goto(`${control.url}/#token=${encodeURIComponent(ADMIN)}`);
      await page.locator('#live[data-state="live"]').waitFor({ timeout: T });
      assert.equal(page.url(), `${control.url}/ui/`, "the token is gone from the address bar (the history entry was replaced)");
      assert.equal(await page.locator("#role").textContent(), "Admin");
      // A reload keeps the session (the tab's sessionStorage), with no token in the URL.
      await page.reload();
      await page.locator('#live[data-state="live"]').waitFor({ timeout: T });

      // A link with a token the service does not accept: the sign-in form says so.
      const other = await ctx.newPage();
      await other.goto(`${control.url}/ui/#token=not-a-valid-token-0123456789`);
      await other.getByText("The token of this sign-in link is not accepted by the control service.").waitFor({ timeout: T });
      assert.equal(other.url(), `${control.url}/ui/`);
      await other.close();
    } finally {
      await ctx.close();
    }
  });

  test("create where no instance passes its connectivity test: the evidence per instance, then create anyway", async () => {
    await ensureLlamaProd();
    const { ctx, page } = await open(1280, 900, ADMIN);
    await page.getByRole("button", { name: "New deployment" }).click();
    const dlg = page.getByRole("dialog", { name: "New deployment" });
    await dlg.getByLabel("Model").locator("option", { hasText: "qwen-2.5-7b" }).waitFor({ state: "attached", timeout: T });
    await dlg.getByLabel("Model").selectOption({ label: "qwen-2.5-7b — Qwen 2.5 7B" });
    await dlg.getByLabel("Deployment id").fill("qwen-down");
    const refused = await closedPortUrl();
    await dlg.getByRole("group", { name: "Instance 1" }).getByLabel("URL").fill(refused);
    await dlg.getByRole("button", { name: "Add another instance" }).click();
    await dlg.getByRole("group", { name: "Instance 2" }).getByLabel("URL").fill(m1.url); // serves another model
    await dlg.getByRole("button", { name: "Create deployment" }).click();

    // Nothing created; what each test saw, per instance, and at each URL field.
    await dlg.locator(".dialog-error", { hasText: "No instance passed its connectivity test" }).waitFor({ timeout: T });
    const evidence = dlg.locator(".evidence");
    await waitFor(async () => (await evidence.count()) === 2, T, "two evidence rows");
    assert.deepEqual(await evidence.evaluateAll((els) => els.map((e) => (e as HTMLElement).dataset.code)), ["refused", "wrong_model"]);
    assert.match((await evidence.first().textContent()) ?? "", new RegExp(`connection refused \\(at ${new URL(refused).host.replace(/\./g, "\\.")}\\)`));
    assert.match((await evidence.nth(1).textContent()) ?? "", /does not serve qwen-2\.5-7b/);
    const url1 = dlg.getByRole("group", { name: "Instance 1" }).getByLabel("URL");
    assert.equal(await url1.getAttribute("aria-invalid"), "true", "the failure is shown at the instance's URL");
    assert.equal((await control.api("GET", "/v1/deployments/qwen-down")).status, 404);
    await page.screenshot({ path: `${ARTIFACTS}create-connectivity-failed-laptop.png` });

    // Create anyway: stored with both instances unreachable, their results shown.
    await dlg.getByRole("button", { name: "Create anyway" }).click();
    await dlg.getByText(/Deployment qwen-down created\. 2 instances failed the connectivity test/).waitFor({ timeout: T });
    await waitFor(async () => (await dlg.locator(".result-unreachable").count()) === 2, T, "two unreachable results");
    assert.match((await dlg.locator(".result-text").first().textContent()) ?? "", /^Failed: refused/);
    const stored = (await control.api("GET", "/v1/deployments/qwen-down")).body;
    assert.deepEqual(stored.instances.map((i: { state: string }) => i.state), ["unreachable", "unreachable"]);
    await dlg.getByRole("button", { name: "Done" }).click();
    await page.locator("#dep-qwen-down").waitFor({ timeout: T });
    assert.equal((await control.api("DELETE", "/v1/deployments/qwen-down")).status, 204);
    await page.locator("#dep-qwen-down").waitFor({ state: "detached", timeout: T });

    // Scale-up: the same, with "Add anyway".
    const card = page.locator("#dep-llama-prod");
    await card.getByRole("button", { name: "Add instance" }).click();
    const add = page.getByRole("dialog", { name: /Add an instance/ });
    await add.getByLabel("URL").fill(refused);
    await add.getByRole("button", { name: "Add instance" }).click();
    await add.locator(".evidence[data-code=refused]").waitFor({ timeout: T });
    assert.equal((await control.api("GET", "/v1/deployments/llama-prod")).body.instances.some((i: { url: string }) => i.url === refused), false, "nothing stored");
    await add.getByRole("button", { name: "Add anyway" }).click();
    await add.locator(".result-unreachable").waitFor({ timeout: T });
    await add.getByRole("button", { name: "Done" }).click();
    const added = await instanceOf("llama-prod", refused);
    assert.equal((await control.api("DELETE", `/v1/deployments/llama-prod/instances/${added}`)).status, 204);
    await ctx.close();
  });

  test("keyboard: main actions reachable with Tab, dialogs take focus and give it back", async () => {
    await ensureLlamaProd();
    const { ctx, page } = await open(1280, 900, ADMIN);
    await page.locator("#dep-llama-prod").waitFor({ timeout: T });
    await page.evaluate(() => (document.activeElement as HTMLElement | null)?.blur());
    const seen: string[] = [];
    for (let k = 0; k < 40; k++) {
      await page.keyboard.press("Tab");
      seen.push(await page.evaluate(() => (document.activeElement?.textContent ?? "").replace(/\s+/g, " ").trim()));
    }
    for (const name of ["Skip to content", "Sign out", "Register model", "New deployment", "Add instance", "Settings", "Delete"]) assert.ok(seen.includes(name), `${name} reachable by Tab (saw ${seen.join(" | ")})`);
    assert.ok(seen.some((s) => s.startsWith("Details of instance")), "instance details reachable");

    // Enter opens a disclosure.
    const disclosure = page.locator("#dep-llama-prod .disclosure").first();
    await disclosure.focus();
    await page.keyboard.press("Enter");
    await page.locator("#dep-llama-prod .disclosure[aria-expanded=true]").first().waitFor({ timeout: T });

    // Enter on Delete opens the confirmation with focus inside; Escape closes it, focus returns, nothing deleted.
    await page.locator("#dep-llama-prod").getByRole("button", { name: "Delete" }).focus();
    await page.keyboard.press("Enter");
    const dlg = page.getByRole("dialog", { name: "Delete deployment llama-prod?" });
    await dlg.waitFor({ timeout: T });
    assert.ok(await dlg.evaluate((d) => d.contains(document.activeElement)), "focus moved into the dialog");
    await page.keyboard.press("Escape");
    await dlg.waitFor({ state: "detached", timeout: T });
    await dialogRemoved(page);
    assert.equal(await page.evaluate(() => document.activeElement?.textContent), "Delete");
    assert.equal((await control.api("GET", "/v1/deployments/llama-prod")).status, 200);
    await ctx.close();
  });

  test("phone width (390 px): no horizontal overflow", async () => {
    await ensureLlamaProd();
    const { ctx, page } = await open(390, 844, ADMIN);
    await page.locator("#dep-llama-prod").waitFor({ timeout: T });
    const a = await instanceOf("llama-prod", m1.url);
    await row(page, "llama-prod", a).getByRole("button", { name: `Details of instance ${a}` }).click();
    await timelineLoaded(page, a);
    await row(page, "llama-prod", a).locator(".chart svg").waitFor({ timeout: T });
    const overflow = await page.evaluate(() => ({ doc: document.documentElement.scrollWidth, body: document.body.scrollWidth, vw: window.innerWidth }));
    assert.ok(overflow.doc <= overflow.vw && overflow.body <= overflow.vw, `no horizontal overflow: ${JSON.stringify(overflow)}`);
    await page.screenshot({ path: `${ARTIFACTS}dashboard-phone.png`, fullPage: true });
    // The create form fits too.
    await page.getByRole("button", { name: "New deployment" }).click();
    const dlg = page.getByRole("dialog", { name: "New deployment" });
    await dlg.waitFor({ timeout: T });
    const wide = await dlg.evaluate((d) => d.getBoundingClientRect().right <= window.innerWidth && d.scrollWidth <= d.clientWidth);
    assert.ok(wide, "the dialog fits the screen");
    await page.screenshot({ path: `${ARTIFACTS}create-phone.png` });
    await page.keyboard.press("Escape");
    await ctx.close();
  });

  test("viewer token: the same data, read-only (no actions)", async () => {
    await ensureLlamaProd();
    const { ctx, page } = await open(1280, 900, VIEWER);
    await page.locator("#dep-llama-prod").waitFor({ timeout: T });
    await page.getByText("Read-only: signed in with a viewer token.").waitFor({ timeout: T });
    const a = await instanceOf("llama-prod", m1.url);
    await row(page, "llama-prod", a).getByRole("button", { name: `Details of instance ${a}` }).click();
    await timelineLoaded(page, a);
    const actions = page.getByRole("button", { name: /^(Register model|New deployment|Add instance|Settings|Delete|Remove|Change endpoint|Edit instance|Test again|Stop endpoint change|Edit model|Remove model)$/ });
    assert.equal(await actions.count(), 0);
    await page.screenshot({ path: `${ARTIFACTS}viewer-laptop.png`, fullPage: true });
    await ctx.close();
  });

  test("data planes: an Envoy's NACK shows live with its message and the rejected version (viewer; untrusted text stays text)", async (t) => {
    await ensureLlamaProd();
    const CDS = TYPE_URL.cluster;
    const { ctx, page } = await open(1280, 900, VIEWER);
    const raw = new RawAds(`127.0.0.1:${control.control.adsPort}`);
    try {
      await page.getByRole("heading", { name: "Data planes" }).waitFor({ timeout: T });
      // Both come from the Envoy: markup in them must reach the page as text.
      const node = 'edge-1 <img src=x onerror="window.__xss=1">';
      const message = 'gRPC config for type.googleapis.com/envoy.config.cluster.v3.Cluster rejected: <b>bad</b> <script>window.__xss=2</script>';
      raw.send({ node: { id: node, cluster: "edge" }, type_url: CDS });
      const c0 = await raw.next(T, "the first CDS response");
      raw.send({ version_info: c0.version_info, type_url: CDS, response_nonce: c0.nonce });
      const item = page.getByRole("listitem", { name: `Data plane ${node}`, exact: true });
      await item.locator(`.dp-type[data-type="CDS"][data-state="acked"]`, { hasText: `ACKed version ${c0.version_info}` }).waitFor({ timeout: T });
      assert.equal(await item.locator(".dp-id").textContent(), node);
      await item.locator(".badge", { hasText: "Connected" }).waitFor({ timeout: T });
      assert.equal(await item.locator(".badge", { hasText: /^ADS$/ }).count(), 1);

      // A new version (a settings change), pushed; the Envoy refuses it and keeps c0's.
      const cds = async () => DataplaneList.parse((await control.api("GET", "/v1/dataplanes", { token: VIEWER })).body).dataplanes.find((d) => d.id === node)?.types.find((x) => x.type_url === CDS);
      assert.equal((await control.api("PATCH", "/v1/deployments/llama-prod", { body: { on_unavailable: "panic" } })).status, 200);
      let pushed = await raw.next(T, "the push of the new version");
      let sent = 0;
      for (;;) {
        sent = performance.now();
        raw.send({ version_info: c0.version_info, type_url: CDS, response_nonce: pushed.nonce, error_detail: { code: 3, message } });
        const v = pushed.version_info;
        await waitFor(async () => raw.pending() > 0 || (await cds())?.nacked?.version === v, T, "the NACK recorded");
        if ((await cds())?.nacked?.version === v && raw.pending() === 0) break;
        pushed = await raw.next(); // a newer version was pushed meanwhile: refuse that one
      }
      const nack = item.locator(".nack:not(.nack-old)");
      await nack.locator(".nack-title", { hasText: `Rejected CDS version ${pushed.version_info} — keeps version ${c0.version_info}` }).waitFor({ timeout: T });
      t.diagnostic(`NACK shown on the page ${(performance.now() - sent).toFixed(0)} ms after it was sent`);
      assert.equal(await nack.locator(".nack-message").textContent(), message, "Envoy's message, verbatim");
      // The page heard the xds.nack event itself (not only a re-read on a stats tick): it announced it.
      await page.locator("#announcer p", { hasText: `Envoy ${node} rejected CDS version ${pushed.version_info}.` }).waitFor({ state: "attached", timeout: T });
      assert.equal(await item.locator(`.dp-type[data-type="CDS"]`).getAttribute("data-state"), "nacked");
      // Prominent: the alert at the top names the Envoy, the version and the message.
      const alert = page.locator("#xds-alert");
      await alert.waitFor({ timeout: T });
      const alertText = (await alert.textContent()) ?? "";
      assert.ok(alertText.includes(`Envoy ${node} rejected CDS version ${pushed.version_info} and keeps version ${c0.version_info}: ${message}`), alertText);
      // Nothing from the Envoy was parsed as HTML.
      assert.equal(await page.evaluate(() => (window as unknown as { __xss?: number }).__xss), undefined);
      assert.equal(await page.locator("#dataplanes img, #dataplanes b, #dataplanes script, #xds-alert img, #xds-alert b, #xds-alert script").count(), 0);
      await page.screenshot({ path: `${ARTIFACTS}dataplanes-nack-laptop.png`, fullPage: true });
      // At phone width the long id and message wrap: no horizontal overflow.
      await page.setViewportSize({ width: 390, height: 844 });
      const overflow = await page.evaluate(() => ({ doc: document.documentElement.scrollWidth, vw: window.innerWidth }));
      assert.ok(overflow.doc <= overflow.vw, `no horizontal overflow: ${JSON.stringify(overflow)}`);
      await page.setViewportSize({ width: 1280, height: 900 });

      // The Envoy goes away: shown gone (since when), its NACK still shown in the list; the alert, about
      // connected Envoys only, goes.
      raw.close();
      await item.locator(".badge", { hasText: "Gone" }).waitFor({ timeout: T });
      assert.match((await item.locator(".dp-head").textContent()) ?? "", /Gone since .+ \(\d+ s ago\)/);
      assert.equal(await nack.count(), 1);
      await alert.waitFor({ state: "hidden", timeout: T });
    } finally {
      raw.close();
      await ctx.close();
    }
  });

  test("engine load (issue 18): a deployment with load signals shows each instance's score and age; one without shows —; an admin turns them on", async () => {
    const withLoad = await startMockOpenAI({ model: "load-on", maxNumSeqs: 1, reply: Array.from({ length: 40 }, (_, i) => `w${i}`).join(" ") });
    const without = await startMockOpenAI({ model: "load-off" });
    mocks.push(withLoad, without);
    const hc = { interval_seconds: 0.2, timeout_seconds: 0.5, unhealthy_threshold: 2, healthy_threshold: 2, window_seconds: 30 };
    await registerModel(control.api, "load-on");
    await registerModel(control.api, "load-off");
    const on = await control.api("POST", "/v1/deployments", {
      body: { id: "load-on", model: "load-on", strategy: "load_aware", load_signals: true, affinity: { source: "header", header: "x-session-id", load_factor: 1.5 }, health_check: hc, instances: [{ url: withLoad.url }] },
    });
    assert.equal(on.status, 201, on.text);
    const off = await control.api("POST", "/v1/deployments", { body: { id: "load-off", model: "load-off", strategy: "least_request", health_check: hc, instances: [{ url: without.url }] } });
    assert.equal(off.status, 201, off.text);
    const viewer = await open(1280, 900, VIEWER);
    const { ctx, page } = await open(1280, 900, ADMIN);
    try {
      const a = await instanceOf("load-on", withLoad.url);
      const b = await instanceOf("load-off", without.url);
      const loadCell = (p: Page, dep: string, inst: string) => row(p, dep, inst).locator('[data-label="Load"]');
      // The mock serves vLLM's /metrics: the control service scrapes it and the table carries a score.
      for (const p of [page, viewer.page]) {
        await waitFor(async () => /^score \d+(\.\d+)?( · 1 slot)? · \d+ s ago$/.test((await loadCell(p, "load-on", a).textContent()) ?? ""), T, "a numeric load score with its age");
      }
      // Saturated (one slot, two more waiting), the engine shows its capacity: the control learned 1 slot.
      withLoad.set({ tokensPerSecond: 20 });
      const gens = Array.from({ length: 3 }, () => fetch(`${withLoad.url}/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: "load-on", messages: [{ role: "user", content: "hi" }], max_tokens: 20 }) }).then((r) => r.text()));
      await waitFor(async () => /^score \d+(\.\d+)? · 1 slot · \d+ s ago$/.test((await loadCell(viewer.page, "load-on", a).textContent()) ?? ""), T, "the learned capacity: 1 slot");
      await Promise.all(gens);
      const meta = async (p: Page, dep: string) => (await p.locator(`#dep-${dep} .dep-head .meta`).first().textContent()) ?? "";
      assert.match(await meta(viewer.page, "load-on"), /load signals on/);
      assert.match(await meta(viewer.page, "load-on"), /affinity by header x-session-id · load factor 1\.5/);
      assert.match(await meta(viewer.page, "load-off"), /load signals off/);
      assert.match(await meta(viewer.page, "load-off"), /no session affinity/);
      // Its instance is in the table (active) but without load signals: no score.
      await waitFor(async () => ((await control.api("GET", "/v1/routing-table")).body.deployments ?? []).some((d: { id: string; instances: unknown[] }) => d.id === "load-off" && d.instances.length === 1), T, "load-off in the table");
      assert.equal(await loadCell(page, "load-off", b).textContent(), "—");
      assert.equal(await loadCell(viewer.page, "load-off", b).textContent(), "—");

      // An admin turns load signals on in the settings dialog: PATCH load_signals, then a score shows.
      await page.locator("#dep-load-off").getByRole("button", { name: "Settings" }).click();
      const dlg = page.getByRole("dialog", { name: /^Settings of / });
      const box = dlg.getByRole("checkbox", { name: "Engine load signals" });
      assert.equal(await box.isChecked(), false);
      await box.check();
      await dlg.getByRole("button", { name: "Save" }).click();
      await dlg.waitFor({ state: "detached", timeout: T });
      assert.equal((await control.api("GET", "/v1/deployments/load-off")).body.load_signals, true);
      await waitFor(async () => /load signals on/.test(await meta(viewer.page, "load-off")), T, "load signals on, live in another page");
      await waitFor(async () => /^score \d+(\.\d+)? · \d+ s ago$/.test((await loadCell(viewer.page, "load-off", b).textContent()) ?? ""), T, "a score once turned on");

      // Session affinity from the same dialog: a bad header name is refused on its field; by the body's
      // "user" with load factor 2; then none. Another page follows each change.
      const settings = async () => {
        await page.locator("#dep-load-on").getByRole("button", { name: "Settings" }).click();
        const d = page.getByRole("dialog", { name: /^Settings of / });
        await d.waitFor({ timeout: T });
        return d;
      };
      let aff = await settings();
      const source = aff.getByLabel("Session affinity");
      assert.equal(await source.inputValue(), "header");
      assert.equal(await aff.getByLabel("Session header").inputValue(), "x-session-id");
      assert.equal(await aff.getByLabel("Load factor").inputValue(), "1.5");
      await aff.getByLabel("Session header").fill("X Session");
      await aff.getByRole("button", { name: "Save" }).click();
      await aff.locator('[data-path="affinity.header"][aria-invalid="true"]').waitFor({ timeout: T });
      assert.deepEqual((await control.api("GET", "/v1/deployments/load-on")).body.affinity, { source: "header", header: "x-session-id", load_factor: 1.5 }, "nothing changed");
      await source.selectOption("user");
      assert.equal(await aff.getByLabel("Session header").isVisible(), false, "no header field for the body's user");
      await aff.getByLabel("Load factor").fill("2");
      await aff.getByRole("button", { name: "Save" }).click();
      await aff.waitFor({ state: "detached", timeout: T });
      assert.deepEqual((await control.api("GET", "/v1/deployments/load-on")).body.affinity, { source: "user", load_factor: 2 });
      await waitFor(async () => /affinity by body's "user" · load factor 2\b/.test(await meta(viewer.page, "load-on")), T, "the new affinity, live in another page");
      aff = await settings();
      await aff.getByLabel("Session affinity").selectOption("");
      assert.equal(await aff.getByLabel("Load factor").isVisible(), false);
      await aff.getByRole("button", { name: "Save" }).click();
      await aff.waitFor({ state: "detached", timeout: T });
      assert.equal((await control.api("GET", "/v1/deployments/load-on")).body.affinity, undefined, "removed");
      await waitFor(async () => /no session affinity/.test(await meta(viewer.page, "load-on")), T, "no affinity, live in another page");
      await page.screenshot({ path: `${ARTIFACTS}load-signals.png`, fullPage: true });
    } finally {
      await ctx.close();
      await viewer.ctx.close();
      for (const id of ["load-on", "load-off"]) await control.api("DELETE", `/v1/deployments/${id}`);
    }
  });

  test("admin: delete the deployment with confirmation; every open page follows", async () => {
    await ensureLlamaProd();
    const viewer = await open(1280, 900, VIEWER);
    await viewer.page.locator("#dep-llama-prod").waitFor({ timeout: T });
    const { ctx, page } = await open(1280, 900, ADMIN);
    await page.locator("#dep-llama-prod").getByRole("button", { name: "Delete" }).click();
    const dlg = page.getByRole("dialog", { name: "Delete deployment llama-prod?" });
    await dlg.getByRole("button", { name: "Delete deployment" }).click();
    await page.locator("#dep-llama-prod").waitFor({ state: "detached", timeout: T });
    await page.getByText("No deployments yet").waitFor({ timeout: T });
    await viewer.page.locator("#dep-llama-prod").waitFor({ state: "detached", timeout: T });
    assert.equal((await control.api("GET", "/v1/deployments/llama-prod")).status, 404);
    await ctx.close();
    await viewer.ctx.close();
    assert.deepEqual(pageErrors, [], "no script errors or CSP violations in any page");
  });
});
