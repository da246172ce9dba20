// @ts-check
/**
 * Modal dialogs (native <dialog>: focus stays inside, Escape cancels) and labelled form fields whose
 * errors come from the API's `issues` (matched by `data-path`, e.g. "instances.0.url").
 */
import { h, nextId } from "./dom.js";
import { ApiError } from "./api.js";

/**
 * @typedef {{ path: string, message: string }} Issue
 * @typedef {{ label: string, path: string, type?: string, value?: string | number | null, required?: boolean, hint?: string,
 *   min?: number, max?: number, step?: string, placeholder?: string, inputmode?: string, options?: [string, string, boolean?][], autocomplete?: string }} FieldSpec
 */

/**
 * A labelled input or select with a hint and an error slot.
 * @param {FieldSpec} f
 * @returns {{ wrap: HTMLElement, input: HTMLInputElement | HTMLSelectElement }}
 */
export function field(f) {
  const id = nextId("f");
  const hintId = f.hint ? `${id}-hint` : null;
  const errId = `${id}-err`;
  const describedBy = [hintId, errId].filter(Boolean).join(" ");
  /** @type {HTMLInputElement | HTMLSelectElement} */
  let input;
  if (f.options) {
    input = /** @type {HTMLSelectElement} */ (
      h(
        "select",
        { id, name: f.path, dataset: { path: f.path }, required: f.required, "aria-describedby": describedBy },
        f.options.map(([value, label, disabled]) => h("option", { value, disabled: disabled === true, selected: String(f.value ?? "") === value }, label)),
      )
    );
  } else {
    input = /** @type {HTMLInputElement} */ (
      h("input", {
        id,
        name: f.path,
        type: f.type ?? "text",
        dataset: { path: f.path },
        value: f.value === null || f.value === undefined ? undefined : String(f.value),
        required: f.required,
        min: f.min,
        max: f.max,
        step: f.step,
        placeholder: f.placeholder,
        inputmode: f.inputmode,
        autocomplete: f.autocomplete ?? "off",
        spellcheck: "false",
        "aria-describedby": describedBy,
      })
    );
  }
  const wrap = h(
    "div",
    { class: "field" },
    h("label", { for: id }, f.label, f.required ? h("span", { class: "req", "aria-hidden": "true" }, " *") : null),
    input,
    f.hint ? h("p", { class: "hint", id: hintId }, f.hint) : null,
    h("p", { class: "field-error", id: errId }),
  );
  return { wrap, input };
}

/** Number from an input ("" → undefined, or `empty`). @param {HTMLInputElement | HTMLSelectElement} input @param {null} [empty] */
export function num(input, empty) {
  const v = input.value.trim();
  if (v === "") return empty === null ? null : undefined;
  const n = Number(v);
  return Number.isFinite(n) ? n : v; // a non-number goes to the API, which names the field
}

/** Clears field errors in `root`. @param {Element} root */
export function clearErrors(root) {
  for (const el of root.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
  for (const el of root.querySelectorAll(".field-error")) el.textContent = "";
}

/**
 * Shows the API's issues next to their fields; returns the ones no field matched.
 * @param {Element} root @param {Issue[]} issues @returns {Issue[]}
 */
export function showIssues(root, issues) {
  /** @type {Issue[]} */
  const rest = [];
  /** @type {HTMLElement | null} */
  let first = null;
  for (const i of issues) {
    const el = /** @type {HTMLElement | null} */ (root.querySelector(`[data-path="${CSS.escape(i.path)}"]`));
    const err = el ? el.closest(".field")?.querySelector(".field-error") : null;
    if (!el || !err) {
      rest.push(i);
      continue;
    }
    el.setAttribute("aria-invalid", "true");
    err.textContent = err.textContent ? `${err.textContent}; ${i.message}` : i.message;
    first ??= el;
  }
  first?.focus();
  return rest;
}

/** An error message for people. @param {unknown} e */
export function describeError(e) {
  if (e instanceof ApiError) {
    if (e.status === 412) return "This deployment changed after you opened this form (another change or a health verdict). The form now uses the latest version: check the values and submit again.";
    if (e.status === 503) return "The control service's state store is unavailable; nothing was changed. Try again in a moment.";
    if (e.status === 401) return "Your token is no longer accepted. Sign in again.";
    if (e.status === 403) return "Your token may not do this (viewer tokens are read-only).";
    if (e.code === "connectivity_failed") {
      return "No instance passed its connectivity test, so nothing was stored. Fix the instance and try again — or store it anyway: an unreachable instance takes no traffic until a re-test passes.";
    }
    return e.message + (e.requestId ? ` (request ${e.requestId})` : "");
  }
  return e instanceof Error ? `Could not reach the control service: ${e.message}` : String(e);
}

/**
 * @typedef {{ dialog: HTMLDialogElement, body: HTMLElement, actions: HTMLElement, submit: HTMLButtonElement, cancel: HTMLButtonElement,
 *   error(msg: string | null, list?: Issue[]): void, close(): void, setBusy(b: boolean): void }} DialogHandle
 */

/**
 * Opens a modal form dialog. `onSubmit` returns true to keep it open (e.g. to show results).
 * Focus returns to the element with the opener's `data-key` (the opener may have been re-rendered).
 * @param {{ title: string, description?: string, body: (Node | null)[], submitLabel: string, danger?: boolean, cancelLabel?: string,
 *   onSubmit: (d: DialogHandle) => Promise<boolean | void>, onClose?: () => void, focus?: HTMLElement | null, wide?: boolean }} o
 * @returns {DialogHandle}
 */
export function openDialog(o) {
  const active = /** @type {HTMLElement | null} */ (document.activeElement);
  const openerKey = active?.dataset?.key ?? null;
  const titleId = nextId("dlg-title");
  const descId = o.description ? nextId("dlg-desc") : null;
  const errorBox = h("div", { class: "dialog-error", role: "alert", hidden: true });
  const submit = /** @type {HTMLButtonElement} */ (h("button", { type: "submit", class: `btn ${o.danger ? "btn-danger" : "btn-primary"}` }, o.submitLabel));
  const cancel = /** @type {HTMLButtonElement} */ (h("button", { type: "button", class: "btn", value: "cancel" }, o.cancelLabel ?? "Cancel"));
  const body = h("div", { class: "dialog-body" }, ...o.body);
  const actions = h("div", { class: "dialog-actions" }, cancel, submit);
  const form = h(
    "form",
    { method: "dialog", novalidate: true },
    h("div", { class: "dialog-head" }, h("h2", { id: titleId }, o.title), o.description ? h("p", { id: descId, class: "muted" }, o.description) : null),
    body,
    errorBox,
    actions,
  );
  const dialog = /** @type {HTMLDialogElement} */ (h("dialog", { class: `dialog${o.wide ? " dialog-wide" : ""}`, "aria-labelledby": titleId, "aria-describedby": descId }, form));

  /** @type {DialogHandle} */
  const handle = {
    dialog,
    body,
    actions,
    submit,
    cancel,
    error(msg, list = []) {
      errorBox.hidden = msg === null;
      errorBox.replaceChildren();
      if (msg !== null) {
        errorBox.append(h("p", {}, msg));
        if (list.length > 0) errorBox.append(h("ul", {}, list.map((i) => h("li", {}, i.path ? `${i.path}: ${i.message}` : i.message))));
      }
    },
    close() {
      if (dialog.open) dialog.close();
    },
    setBusy(b) {
      submit.disabled = b;
      form.setAttribute("aria-busy", String(b));
    },
  };

  cancel.addEventListener("click", () => handle.close());
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (submit.disabled) return;
    handle.error(null);
    clearErrors(form);
    handle.setBusy(true);
    let keep = false;
    try {
      keep = (await o.onSubmit(handle)) === true;
    } catch (e) {
      keep = true;
      const rest = e instanceof ApiError ? showIssues(form, e.issues) : [];
      handle.error(describeError(e), rest);
      if (rest.length > 0 || !(e instanceof ApiError) || e.issues.length === 0) errorBox.focus?.();
    } finally {
      handle.setBusy(false);
    }
    if (!keep) handle.close();
  });
  dialog.addEventListener("close", () => {
    dialog.remove();
    o.onClose?.();
    const back = openerKey ? /** @type {HTMLElement | null} */ (document.querySelector(`[data-key="${CSS.escape(openerKey)}"]`)) : active;
    (back && back.isConnected ? back : document.getElementById("main"))?.focus();
  });
  errorBox.tabIndex = -1;
  document.body.append(dialog);
  dialog.showModal();
  (o.focus ?? /** @type {HTMLElement | null} */ (form.querySelector("input, select, textarea")) ?? cancel).focus();
  return handle;
}
