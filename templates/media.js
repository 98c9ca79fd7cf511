// @ts-check
// segue's player, the data layer: what the core (./player.js) reads the network and the
// catalog through. The hooks the view listens on, small helpers, the bandwidth estimate (kept
// across visits), the in-memory bytes shared by the prefetcher and the engine (one request per
// URL, retried), the tracks, and the server's constants from the page. Nothing here touches
// MediaSource or the control channel; the pure parts are in ./logic.js.

import { ByteCache, ThroughputEstimate, initialBandwidth, parsePageConfig } from './logic.js';

/** @typedef {import('./types.js').Track} Track */

const MEMORY_LIMIT_BYTES = 48 * 1024 * 1024;
const RETRY_DELAYS_MS = [300, 1000];

/** The server's constants (the control protocol, the ABR share), rendered into the page. */
export const pageConfig = parsePageConfig(document.getElementById('segue-config')?.textContent);

/** What the view hears from the core. */
export const hooks = {
  /** Something shown changed (`full`: more than the playhead). @param {boolean} full */
  changed(full) {},
  /** A message for the user. @param {string} text */
  notify(text) {},
  /** The control channel is 'connecting', 'open' (joined: control.deviceId) or 'closed'. @param {'connecting' | 'open' | 'closed'} state */
  ws(state) {},
  /** A track's hinted bytes are in memory. @param {string} trackId */
  prefetched(trackId) {},
  /** A `library` message: tracks ingested while the page is open. @param {Track[]} tracks */
  libraryAdded(tracks) {},
};

// ---------------------------------------------------------------------------------------------
// Helpers

/**
 * Resolves after `ms`; rejects with the signal's reason on an abort.
 * @param {number} ms
 * @param {AbortSignal} [signal]
 * @returns {Promise<void>}
 */
export const sleep = (ms, signal) => new Promise((resolve, reject) => {
  const timer = setTimeout(resolve, ms);
  signal?.addEventListener('abort', () => { clearTimeout(timer); reject(signal.reason); }, { once: true });
});
/** The `name` of an error (a DOMException's kind), if it has one. @param {unknown} e */
export const errorName = (e) => /** @type {{ name?: unknown } | null | undefined} */ (e)?.name;
/** Whether `e` is an abort (of a fetch, a play, a sleep). @param {unknown} e */
export const isAbort = (e) => errorName(e) === 'AbortError';
/** localStorage, or nothing where storage is off. */
export const storage = {
  /** @param {string} key @returns {string | null} */
  get(key) { try { return localStorage.getItem(key); } catch { return null; } },
  /** @param {string} key @param {string} value */
  set(key, value) { try { localStorage.setItem(key, value); } catch { /* storage off: fine */ } },
};
/**
 * A message for the user, also logged (as a warning: it has been handled).
 * @param {string} text
 * @param {unknown} [detail]
 */
export function notify(text, detail) {
  console.warn(`segue: ${text}`, detail ?? '');
  hooks.notify(text);
}
/** Asks the view for a paint (`full`: more than the playhead). */
export const invalidate = (full = false) => hooks.changed(full);

/**
 * fetch() with a couple of retries (network errors, 5xx, 408, 429) and backoff.
 * @param {string} url
 * @param {AbortSignal} [signal]
 * @returns {Promise<Response>}
 */
async function fetchRetry(url, signal) {
  for (let attempt = 0; ; attempt++) {
    try {
      const res = await fetch(url, { signal });
      if (res.ok) return res;
      throw Object.assign(new Error(`HTTP ${res.status} for ${url}`), { status: res.status });
    } catch (err) {
      const e = /** @type {{ status?: number }} */ (err);
      const permanent = e.status != null && e.status >= 400 && e.status < 500 && e.status !== 408 && e.status !== 429;
      if (isAbort(e) || permanent || attempt >= RETRY_DELAYS_MS.length) throw err;
      await sleep(RETRY_DELAYS_MS[attempt], signal);
    }
  }
}
/**
 * The JSON at `url` (retried as fetchRetry does).
 * @param {string} url
 * @param {AbortSignal} [signal]
 * @returns {Promise<any>}
 */
export const fetchJson = async (url, signal) => (await fetchRetry(url, signal)).json();

// ---------------------------------------------------------------------------------------------
// Bandwidth: the estimate of ./logic.js, started from the one saved last time and saved as it
// changes (at most every 2 s).

/** The throughput estimate for ABR and the server's hints. */
export const bandwidth = {
  est: new ThroughputEstimate(), savedAt: 0,
  /** Starts from the saved estimate, else the browser's coarse `downlink`. */
  init() {
    const connection = /** @type {{ connection?: { downlink?: number } }} */ (navigator).connection;
    this.est = new ThroughputEstimate(initialBandwidth(Number(storage.get('segue.bandwidth')), connection?.downlink));
  },
  /** Takes a response of `bytes` that took `ms`. @param {number} bytes @param {number} ms */
  sample(bytes, ms) {
    if (!this.est.sample(bytes, ms) || performance.now() - this.savedAt <= 2000) return;
    this.savedAt = performance.now();
    storage.set('segue.bandwidth', String(Math.round(this.est.estimate() ?? 0)));
  },
  /** The estimate in bit/s, or null. */
  estimate() { return this.est.estimate(); },
};

// ---------------------------------------------------------------------------------------------
// Bytes: the in-memory cache (./logic.js's ByteCache, least recently used out first) shared by
// the prefetcher and the engine, and the requests under way, shared by URL.

const memory = new ByteCache(MEMORY_LIMIT_BYTES);
/** @typedef {{ promise: Promise<ArrayBuffer>, ctl: AbortController, users: number, keep: boolean }} Request */
/** @type {Map<string, Request>} */
const inflight = new Map();
/** Whether the bytes of `url` are in memory or on their way. @param {string} url */
export const haveBytes = (url) => memory.has(url) || inflight.has(url);

/**
 * The bytes of `url`: from memory, from a request under way, or fetched. A caller with a signal
 * may give up; the request is aborted only once all its callers have and no prefetch (`keep`)
 * wants it.
 * @param {string} url
 * @param {{ signal?: AbortSignal, keep?: boolean }} [options]
 * @returns {Promise<ArrayBuffer>}
 */
export function getBytes(url, { signal, keep = false } = {}) {
  const hit = memory.get(url);
  if (hit) return Promise.resolve(hit);
  let f = inflight.get(url);
  if (!f) {
    const ctl = new AbortController();
    const t0 = performance.now();
    const promise = fetchRetry(url, ctl.signal).then((r) => r.arrayBuffer()).then((buf) => {
      bandwidth.sample(buf.byteLength, performance.now() - t0);
      memory.put(url, buf);
      return buf;
    });
    f = { promise, ctl, users: 0, keep };
    const forget = () => inflight.delete(url);
    promise.then(forget, forget);
    inflight.set(url, f);
  }
  f.keep ||= keep;
  if (!signal) return f.promise;
  if (signal.aborted) return Promise.reject(signal.reason);
  const request = f;
  request.users++;
  return new Promise((resolve, reject) => {
    request.promise.then(resolve, reject);
    // An abort after the bytes came is harmless: the request is over by then.
    signal.addEventListener('abort', () => {
      reject(signal.reason);
      if (--request.users === 0 && !request.keep) request.ctl.abort();
    }, { once: true });
  });
}

// ---------------------------------------------------------------------------------------------
// Catalog: every track seen (by id) and the loads under way.

/** Every track seen, by id. @type {Map<string, Track>} */
export const tracks = new Map();
/** @type {Map<string, Promise<Track>>} */
const trackLoads = new Map();
/** Track ids whose hinted bytes are in memory. @type {Set<string>} */
export const prefetched = new Set();

/** Tracks the view has listed (the first ones are prefetched at load, see boot). @param {Track[]} list */
export function addTracks(list) {
  for (const t of list) tracks.set(t.id, t);
}

/**
 * The track `id`: known, or fetched (one request however many ask).
 * @param {string} id
 * @returns {Promise<Track>}
 */
export function trackById(id) {
  const known = tracks.get(id);
  if (known) return Promise.resolve(known);
  let load = trackLoads.get(id);
  if (!load) {
    load = fetchJson(`/api/tracks/${encodeURIComponent(id)}`).then((/** @type {Track} */ t) => { tracks.set(t.id, t); return t; });
    load.finally(() => trackLoads.delete(id)).catch(() => {});
    trackLoads.set(id, load);
  }
  return load;
}
