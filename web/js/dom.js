// @ts-check
/** @file A few DOM helpers: build elements, relative times, a status message. */

/**
 * @typedef {string | Node | null | undefined | false | ChildList} Child
 */
/**
 * @typedef {Array<Child>} ChildList
 */

/**
 * Builds an element: `h('button', {class: 'x', onclick}, 'text')`. Attributes starting with
 * `on` are listeners; `false`/`null` attributes and children are left out.
 * @param {string} tag
 * @param {Record<string, any>} [attrs]
 * @param {...Child} children
 * @returns {HTMLElement}
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === false || v === null || v === undefined) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

/**
 * @param {Element} el
 * @param {Child[]} children
 */
function append(el, children) {
  for (const c of children) {
    if (Array.isArray(c)) append(el, c);
    else if (c !== null && c !== undefined && c !== false) el.append(c);
  }
}

/**
 * Replaces an element's children.
 * @param {Element} el
 * @param {...Child} children
 */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

/**
 * "3 min ago" style time, with the exact time in a `<time>` element.
 * @param {string} iso
 * @returns {HTMLElement}
 */
export function time(iso) {
  const t = new Date(iso);
  const s = Math.max(0, (Date.now() - t.getTime()) / 1000);
  const text =
    s < 60 ? 'just now' : s < 3600 ? `${Math.floor(s / 60)} min` : s < 86400 ? `${Math.floor(s / 3600)} h` : t.toLocaleDateString();
  return h('time', { datetime: iso, title: t.toLocaleString() }, text);
}

/**
 * Shows a short message in the page's live region (read out by screen readers).
 * @param {string} text
 * @param {'info' | 'error'} [kind]
 */
export function notice(text, kind = 'info') {
  const el = document.getElementById('notice');
  if (!el) return;
  el.textContent = text;
  el.className = `notice ${kind}`;
  el.hidden = false;
  clearTimeout(Number(el.dataset.timer));
  el.dataset.timer = String(setTimeout(() => (el.hidden = true), 3500));
}

/** A random id for idempotency keys and chat `client_id`s. */
export function randomId() {
  return crypto.randomUUID();
}
