// @ts-check
/**
 * @file Media in `<img>`: `GET /v1/media/{id}` needs the bearer token, which an `<img src>`
 * cannot send, so the bytes are fetched with it and shown from a `blob:` URL. The URLs are kept
 * in a bounded map (the oldest revoked first) so scrolling back does not fetch again.
 */
import { h } from './dom.js';

/** @typedef {import('./api.js').Api} Api */

const MAX = 200;

export class Media {
  /** @param {Api} api */
  constructor(api) {
    this.api = api;
    /** @type {Map<string, Promise<string | null>>} */
    this.urls = new Map();
  }

  /** @param {string} id @returns {Promise<string | null>} */
  url(id) {
    let p = this.urls.get(id);
    if (!p) {
      p = fetch(`${this.api.base}/v1/media/${encodeURIComponent(id)}`, {
        headers: this.api.token ? { authorization: `Bearer ${this.api.token}` } : {},
      })
        .then(async (r) => (r.ok ? URL.createObjectURL(await r.blob()) : null))
        .catch(() => null);
      this.urls.set(id, p);
      if (this.urls.size > MAX) {
        const [oldest, url] = this.urls.entries().next().value || [];
        if (oldest !== undefined) this.urls.delete(oldest);
        url?.then((u) => u && URL.revokeObjectURL(u));
      }
    }
    return p;
  }

  /**
   * An image element for a media id; says so when the bytes are not available (e.g. media
   * uploaded in another region, on a node without a shared bucket).
   * @param {string} id @param {string} alt
   * @returns {HTMLElement}
   */
  image(id, alt) {
    const img = /** @type {HTMLImageElement} */ (h('img', { alt, class: 'media', loading: 'lazy', 'data-media': id }));
    const box = h('div', { class: 'media-box' }, img);
    this.url(id).then((u) => {
      if (u) img.src = u;
      else box.replaceChildren(h('p', { class: 'muted' }, 'Image not available on this server.'));
    });
    return box;
  }

  /** Forgets every URL (at log out). */
  clear() {
    for (const p of this.urls.values()) p.then((u) => u && URL.revokeObjectURL(u));
    this.urls.clear();
  }
}
