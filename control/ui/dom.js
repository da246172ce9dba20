// @ts-check
/**
 * A tiny element builder. Data only ever reaches the page as text (textContent) or attribute values:
 * nothing here parses HTML.
 */

/**
 * @typedef {string | number | boolean | null | undefined | EventListener | Record<string, string>} AttrValue
 * @typedef {Node | string | number | null | undefined | false} Child
 */

/**
 * h("button", { class: "btn", onclick: f, "aria-label": "…" }, "text", child, …)
 * Attributes: `on*` → listeners; `dataset` → data-*; true → present; false/null/undefined → absent.
 * @param {string} tag
 * @param {Record<string, AttrValue>} [attrs]
 * @param {...(Child | Child[])} children
 * @returns {HTMLElement}
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

const SVG_NS = "http://www.w3.org/2000/svg";

/**
 * @param {string} tag
 * @param {Record<string, string | number | null | undefined>} [attrs]
 * @param {...(Node | string | null | undefined)} children
 * @returns {SVGElement}
 */
export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== null && v !== undefined) el.setAttribute(k, String(v));
  for (const c of children) if (c !== null && c !== undefined) el.append(typeof c === "string" ? document.createTextNode(c) : c);
  return el;
}

/** @param {HTMLElement} el @param {Record<string, AttrValue>} attrs */
function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), /** @type {EventListener} */ (v));
    else if (k === "dataset" && typeof v === "object") for (const [dk, dv] of Object.entries(v)) el.dataset[dk] = dv;
    else if (k === "value" && "value" in el) /** @type {HTMLInputElement} */ (el).value = String(v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
}

/** @param {Node} el @param {(Child | Child[])[]} children */
function append(el, children) {
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
  }
}

/** @param {string} id @returns {HTMLElement} */
export function byId(id) {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} missing`);
  return el;
}

/** Replace all children of `el`. @param {Element} el @param {...(Child | Child[])} children */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

let uid = 0;
/** A page-unique id for label/aria wiring. @param {string} prefix */
export const nextId = (prefix) => `${prefix}-${++uid}`;
