// segue's player, the data layer: what the core (/assets/player.js) reads the network and the
// catalog through. The hooks the view listens on, small helpers, the bandwidth estimate, the
// in-memory bytes shared by the prefetcher and the engine (one request per URL, retried), and
// the tracks with their media layout (segment edges, peak bitrates, loudness gain). Nothing
// here touches MediaSource or the control channel.

const TARGET_LUFS = -14;
const PEAK_CEILING_DBTP = -1;
const MEMORY_LIMIT_BYTES = 48 * 1024 * 1024;
const RETRY_DELAYS_MS = [300, 1000];

/** What the view hears from the core. */
export const hooks = {
  changed(full) {}, // something shown changed (`full`: more than the playhead)
  notify(text) {}, // a message for the user
  ws(state) {}, // the control channel is 'connecting', 'open' (joined: control.deviceId) or 'closed'
  prefetched(trackId) {}, // a track's hinted bytes are in memory
  libraryAdded(tracks) {}, // a `library` message: tracks ingested while the page is open
};

// ---------------------------------------------------------------------------------------------
// Helpers

export const sleep = (ms, signal) => new Promise((resolve, reject) => {
  const timer = setTimeout(resolve, ms);
  signal?.addEventListener('abort', () => { clearTimeout(timer); reject(signal.reason); }, { once: true });
});
export const isAbort = (e) => e?.name === 'AbortError';
export const clamp = (x, lo, hi) => Math.min(hi, Math.max(lo, x));
export const storage = {
  get(key) { try { return localStorage.getItem(key); } catch { return null; } },
  set(key, value) { try { localStorage.setItem(key, value); } catch { /* storage off: fine */ } },
};
/** A message for the user, also logged (as a warning: it has been handled). */
export function notify(text, detail) {
  console.warn(`segue: ${text}`, detail ?? '');
  hooks.notify(text);
}
export const invalidate = (full = false) => hooks.changed(full);

/** fetch() with a couple of retries (network errors, 5xx, 408, 429) and backoff. */
async function fetchRetry(url, signal) {
  for (let attempt = 0; ; attempt++) {
    try {
      const res = await fetch(url, { signal });
      if (res.ok) return res;
      throw Object.assign(new Error(`HTTP ${res.status} for ${url}`), { status: res.status });
    } catch (e) {
      const permanent = e.status >= 400 && e.status < 500 && e.status !== 408 && e.status !== 429;
      if (isAbort(e) || permanent || attempt >= RETRY_DELAYS_MS.length) throw e;
      await sleep(RETRY_DELAYS_MS[attempt], signal);
    }
  }
}
export const fetchJson = async (url, signal) => (await fetchRetry(url, signal)).json();

// ---------------------------------------------------------------------------------------------
// Bandwidth: two byte-weighted EWMAs of segment throughput; the estimate is the lower, so a drop
// is believed at once and a rise only once it lasts (Shaka's rule, weighted by bytes rather than
// time because the segments are few and large).

export const bandwidth = {
  fast: null, slow: null, savedAt: 0,
  init() {
    const saved = Number(storage.get('segue.bandwidth'));
    const downlink = navigator.connection?.downlink; // Mbit/s, coarse, capped by the browser
    this.fast = this.slow = saved > 0 ? saved : downlink > 0 ? downlink * 1e6 : null;
  },
  sample(bytes, ms) {
    if (bytes < 4096 || ms <= 0) return; // a small response measures the round trip, not the throughput
    const bps = (bytes * 8000) / ms;
    const mix = (old, halfBytes) => (old == null ? bps : old + (1 - 0.5 ** (bytes / halfBytes)) * (bps - old));
    this.fast = mix(this.fast, 32 * 1024);
    this.slow = mix(this.slow, 256 * 1024);
    if (performance.now() - this.savedAt > 2000) {
      this.savedAt = performance.now();
      storage.set('segue.bandwidth', String(Math.round(this.estimate())));
    }
  },
  estimate() { return this.fast == null ? null : Math.min(this.fast, this.slow); },
};

// ---------------------------------------------------------------------------------------------
// Bytes: the in-memory map (url -> ArrayBuffer, least recently used first) shared by the
// prefetcher and the engine, and the requests under way, shared by URL.

const memory = new Map();
let memoryBytes = 0;
const inflight = new Map(); // url -> { promise, ctl, users, keep }
export const haveBytes = (url) => memory.has(url) || inflight.has(url);

function remember(url, buf) {
  if (memory.has(url)) return;
  memory.set(url, buf);
  memoryBytes += buf.byteLength;
  for (const [old, b] of memory) {
    if (memoryBytes <= MEMORY_LIMIT_BYTES) break;
    memory.delete(old);
    memoryBytes -= b.byteLength;
  }
}

/** The bytes of `url`: from memory, from a request under way, or fetched. A caller with a signal
 *  may give up; the request is aborted only once all its callers have and no prefetch (`keep`)
 *  wants it. */
export function getBytes(url, { signal, keep = false } = {}) {
  const hit = memory.get(url);
  if (hit) {
    memory.delete(url); // to the young end
    memory.set(url, hit);
    return Promise.resolve(hit);
  }
  let f = inflight.get(url);
  if (!f) {
    const ctl = new AbortController();
    const t0 = performance.now();
    f = { ctl, users: 0, keep };
    f.promise = fetchRetry(url, ctl.signal).then((r) => r.arrayBuffer()).then((buf) => {
      bandwidth.sample(buf.byteLength, performance.now() - t0);
      remember(url, buf);
      return buf;
    });
    const forget = () => inflight.delete(url);
    f.promise.then(forget, forget);
    inflight.set(url, f);
  }
  f.keep ||= keep;
  if (!signal) return f.promise;
  if (signal.aborted) return Promise.reject(signal.reason);
  f.users++;
  return new Promise((resolve, reject) => {
    f.promise.then(resolve, reject);
    // An abort after the bytes came is harmless: the request is over by then.
    signal.addEventListener('abort', () => {
      reject(signal.reason);
      if (--f.users === 0 && !f.keep) f.ctl.abort();
    }, { once: true });
  });
}

// ---------------------------------------------------------------------------------------------
// Catalog: every track seen (by id), the list shown, and a track's media layout.

export const tracks = new Map();
const trackLoads = new Map();
export const prefetched = new Set(); // track ids whose hinted bytes are in memory

/** Tracks the view has listed (the first ones are prefetched at load, see boot). */
export function addTracks(list) {
  for (const t of list) tracks.set(t.id, t);
}

export function trackById(id) {
  if (tracks.has(id)) return Promise.resolve(tracks.get(id));
  if (!trackLoads.has(id)) {
    const p = fetchJson(`/api/tracks/${encodeURIComponent(id)}`).then((t) => { tracks.set(t.id, t); return t; });
    p.finally(() => trackLoads.delete(id)).catch(() => {});
    trackLoads.set(id, p);
  }
  return trackLoads.get(id);
}

export const segUrl = (rend, k) => rend.segment_template.replace('$Number$', String(k + 1)); // k is 0-based
export const trackDuration = (t) => t.gapless.valid_samples / t.sample_rate;

/** Start of each segment and the end of the last, in media-timeline seconds (priming included). */
const edgeCache = new WeakMap();
export function segEdges(track) {
  if (!edgeCache.has(track)) {
    let sum = 0;
    edgeCache.set(track, [0, ...track.segment_durations.map((d) => (sum += d))].map((s) => s / track.sample_rate));
  }
  return edgeCache.get(track);
}
/** Index (0-based) of the segment that holds track position `pos` seconds. */
export function segmentAt(track, pos) {
  const edges = segEdges(track), t = pos + track.gapless.priming_samples / track.sample_rate;
  const k = edges.findIndex((edge, i) => i > 0 && t < edge) - 1;
  return k < 0 ? edges.length - 2 : k;
}

/** Peak bitrate of a rendition (largest segment over its duration): what the server's hints
 *  weigh against the bandwidth, so that both choose alike. */
const peakCache = new WeakMap();
export function peakBitrate(track, rend) {
  if (!peakCache.has(rend)) {
    const edges = segEdges(track);
    const peaks = (rend.segment_sizes ?? []).map((bytes, k) => edges[k + 1] - edges[k] > 0.5 ? (bytes * 8) / (edges[k + 1] - edges[k]) : 0);
    peakCache.set(rend, Math.max(rend.bitrate, ...peaks));
  }
  return peakCache.get(rend);
}

/** Linear gain toward TARGET_LUFS, lowered so that the true peak stays under PEAK_CEILING_DBTP. */
export function normalizationGain(track) {
  const l = track.loudness;
  if (!Number.isFinite(l?.integrated_lufs)) return 1;
  let db = TARGET_LUFS - l.integrated_lufs;
  if (Number.isFinite(l.true_peak_dbtp)) db = Math.min(db, PEAK_CEILING_DBTP - l.true_peak_dbtp);
  return 10 ** (db / 20);
}
