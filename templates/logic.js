// @ts-check
// segue's player, the pure part: every decision of the player that can be made from plain data
// (the catalog's JSON, numbers, byte arrays), with no browser global (no document, window,
// MediaSource, fetch, storage or clock): the bandwidth estimate, the byte cache, a track's media
// layout, ABR, the timeline's placements, the edit-list rewrite, and the queue's arithmetic.
// The other modules of the page do the I/O and call these; tests/player/*.test.mjs runs them
// under node:test. Keep it that way: a function that needs the time or the DOM takes what it
// needs as an argument. The data shapes are in ./types.js.

/** @typedef {import('./types.js').Track} Track */
/** @typedef {import('./types.js').Rendition} Rendition */
/** @typedef {import('./types.js').Placement} Placement */
/** @typedef {import('./types.js').PageConfig} PageConfig */

/** Loudness normalization target (LUFS). */
export const TARGET_LUFS = -14;
/** The true peak is kept under this (dBTP). */
export const PEAK_CEILING_DBTP = -1;
/** An upswitch waits for this much buffered ahead (s); a buffer this deep is healthy too. */
export const UPSWITCH_MIN_BUFFER_S = 8;
/** An upswitch needs this much headroom, so that an estimate at a threshold does not flap. */
export const UPSWITCH_MARGIN = 1.25;
/** Responses smaller than this (bytes) measure the round trip, not the throughput. */
export const MIN_SAMPLE_BYTES = 4096;
/** Bytes over which the fast and the slow estimate halve an old value's weight. */
export const HALF_LIFE_BYTES = { fast: 32 * 1024, slow: 256 * 1024 };

/**
 * `x` limited to [lo, hi].
 * @param {number} x
 * @param {number} lo
 * @param {number} hi
 */
export const clamp = (x, lo, hi) => Math.min(hi, Math.max(lo, x));

/**
 * The server's constants from the text of the page's JSON config element; throws when it is
 * missing or malformed (the page is served with it: a page without it is a broken build).
 * @param {string | null | undefined} text
 * @returns {PageConfig}
 */
export function parsePageConfig(text) {
  /** @type {unknown} */
  const raw = JSON.parse(text ?? 'null');
  const c = /** @type {Partial<PageConfig> | null} */ (raw);
  if (!c || typeof c.protocol !== 'string' || !c.protocol) throw new TypeError('segue: the page config names no protocol');
  if (typeof c.abr_share !== 'number' || !(c.abr_share > 0 && c.abr_share <= 1)) {
    throw new TypeError('segue: the page config has no ABR share in (0, 1]');
  }
  return { protocol: c.protocol, abr_share: c.abr_share };
}

// ---------------------------------------------------------------------------------------------
// Bandwidth: two byte-weighted EWMAs of segment throughput; the estimate is the lower, so a drop
// is believed at once and a rise only once it lasts (Shaka's rule, weighted by bytes rather than
// time because the segments are few and large).

/** A throughput estimate in bit/s from (bytes, milliseconds) samples. */
export class ThroughputEstimate {
  /** @param {number | null} [initialBps] a starting estimate (bit/s); none when not positive */
  constructor(initialBps = null) {
    const start = initialBps != null && initialBps > 0 ? initialBps : null;
    /** @type {number | null} the fast EWMA (bit/s) */
    this.fast = start;
    /** @type {number | null} the slow EWMA (bit/s) */
    this.slow = start;
  }

  /**
   * Takes a response of `bytes` that took `ms`; returns whether it counted (a small or
   * instant one does not).
   * @param {number} bytes
   * @param {number} ms
   */
  sample(bytes, ms) {
    if (!(bytes >= MIN_SAMPLE_BYTES) || !(ms > 0)) return false;
    const bps = (bytes * 8000) / ms;
    /** @param {number | null} old @param {number} halfBytes */
    const mix = (old, halfBytes) => (old == null ? bps : old + (1 - 0.5 ** (bytes / halfBytes)) * (bps - old));
    this.fast = mix(this.fast, HALF_LIFE_BYTES.fast);
    this.slow = mix(this.slow, HALF_LIFE_BYTES.slow);
    return true;
  }

  /** The estimate in bit/s, or null before any sample. @returns {number | null} */
  estimate() {
    return this.fast == null || this.slow == null ? null : Math.min(this.fast, this.slow);
  }
}

/**
 * The estimate to start from (bit/s): the one saved last time, else the browser's `downlink`
 * (Mbit/s), else none.
 * @param {number} saved bit/s (0 or NaN: none)
 * @param {number | undefined} downlinkMbps
 * @returns {number | null}
 */
export function initialBandwidth(saved, downlinkMbps) {
  if (saved > 0) return saved;
  return downlinkMbps != null && downlinkMbps > 0 ? downlinkMbps * 1e6 : null;
}

/**
 * Bytes by URL up to a total size, least recently used out first (a Map keeps insertion order:
 * a hit moves to the young end).
 */
export class ByteCache {
  /** @param {number} limitBytes the most it holds in all */
  constructor(limitBytes) {
    /** @type {number} */
    this.limit = limitBytes;
    /** @type {number} the bytes held */
    this.size = 0;
    /** @type {Map<string, ArrayBuffer>} */
    this.entries = new Map();
  }

  /** Whether `url` is held. @param {string} url */
  has(url) { return this.entries.has(url); }

  /** The bytes of `url` (now the most recently used), or undefined. @param {string} url */
  get(url) {
    const hit = this.entries.get(url);
    if (hit) {
      this.entries.delete(url);
      this.entries.set(url, hit);
    }
    return hit;
  }

  /**
   * Keeps `buf` for `url` (a URL held already keeps its bytes), then drops the oldest until the
   * total fits the limit (the new entry too, when it alone is larger).
   * @param {string} url
   * @param {ArrayBuffer} buf
   */
  put(url, buf) {
    if (this.entries.has(url)) return;
    this.entries.set(url, buf);
    this.size += buf.byteLength;
    for (const [old, b] of this.entries) {
      if (this.size <= this.limit) break;
      this.entries.delete(old);
      this.size -= b.byteLength;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// A track's media layout.

/**
 * URL of segment `k` (0-based) of a rendition (the template numbers from 1).
 * @param {Rendition} rend
 * @param {number} k
 */
export const segUrl = (rend, k) => rend.segment_template.replace('$Number$', String(k + 1));

/**
 * A track's real duration in seconds (priming and padding excluded).
 * @param {Track} t
 */
export const trackDuration = (t) => t.gapless.valid_samples / t.sample_rate;

/** @type {WeakMap<Track, number[]>} */
const edgeCache = new WeakMap();
/**
 * Start of each segment and the end of the last, in media-timeline seconds (priming included).
 * @param {Track} track
 * @returns {number[]}
 */
export function segEdges(track) {
  let edges = edgeCache.get(track);
  if (!edges) {
    let sum = 0;
    edges = [0, ...track.segment_durations.map((d) => (sum += d))].map((s) => s / track.sample_rate);
    edgeCache.set(track, edges);
  }
  return edges;
}

/**
 * Index (0-based) of the segment that holds track position `pos` seconds: the first before
 * the start (or for NaN), the last past the end.
 * @param {Track} track
 * @param {number} pos
 */
export function segmentAt(track, pos) {
  if (Number.isNaN(pos)) return 0;
  const edges = segEdges(track), t = pos + track.gapless.priming_samples / track.sample_rate;
  const k = edges.findIndex((edge, i) => i > 0 && t < edge) - 1;
  return k < 0 ? Math.max(0, edges.length - 2) : k;
}

/** @type {WeakMap<Rendition, number>} */
const peakCache = new WeakMap();
/**
 * Peak bitrate of a rendition in bit/s (its largest segment over that segment's duration;
 * segments under half a second, the short last one, do not count): what the server's hints
 * weigh against the bandwidth, so that both choose alike.
 * @param {Track} track
 * @param {Rendition} rend
 */
export function peakBitrate(track, rend) {
  let peak = peakCache.get(rend);
  if (peak == null) {
    const edges = segEdges(track);
    const peaks = (rend.segment_sizes ?? []).map((bytes, k) => (edges[k + 1] - edges[k] > 0.5 ? (bytes * 8) / (edges[k + 1] - edges[k]) : 0));
    peak = Math.max(rend.bitrate, ...peaks);
    peakCache.set(rend, peak);
  }
  return peak;
}

/**
 * Linear gain toward TARGET_LUFS, lowered so that the true peak stays under PEAK_CEILING_DBTP;
 * 1 without a measurement.
 * @param {Track} track
 */
export function normalizationGain(track) {
  const l = track.loudness;
  if (!l || !Number.isFinite(l.integrated_lufs)) return 1;
  let db = TARGET_LUFS - l.integrated_lufs;
  if (Number.isFinite(l.true_peak_dbtp)) db = Math.min(db, PEAK_CEILING_DBTP - l.true_peak_dbtp);
  return 10 ** (db / 20);
}

// ---------------------------------------------------------------------------------------------
// ABR and the timeline.

/**
 * ABR, per segment (so a switch happens at a segment boundary): the highest rendition whose
 * peak fits `share` of the estimate (with UPSWITCH_MARGIN above the current one); no upswitch
 * with less than UPSWITCH_MIN_BUFFER_S ahead; a downswitch as soon as the estimate falls. No
 * estimate: the current one, else the lowest. An empty ladder: null.
 * @param {Track} track
 * @param {number | null} curBitrate the rendition in use (bit/s; null at a start)
 * @param {number} ahead seconds buffered ahead
 * @param {number | null} estimate the throughput estimate (bit/s)
 * @param {number} share ABR share of the throughput (the server's)
 * @returns {Rendition | null}
 */
export function chooseRendition(track, curBitrate, ahead, estimate, share) {
  const rends = track.renditions;
  if (!rends.length) return null;
  const cur = curBitrate == null ? null
    : rends.reduce((a, r) => (Math.abs(r.bitrate - curBitrate) < Math.abs(a.bitrate - curBitrate) ? r : a));
  if (estimate == null) return cur ?? rends[0];
  /** @param {Rendition} r */
  const margin = (r) => (cur && r.bitrate > cur.bitrate ? UPSWITCH_MARGIN : 1);
  const best = rends.findLast((r) => peakBitrate(track, r) * margin(r) <= estimate * share) ?? rends[0];
  return cur && best.bitrate > cur.bitrate && ahead < UPSWITCH_MIN_BUFFER_S ? cur : best;
}

/**
 * The rendition to start a placement with: bytes in memory or on their way (`ready`, the
 * highest such) cost nothing, so they win over `abr` unless `abr` is higher.
 * @param {Rendition | undefined} ready
 * @param {Rendition | null} abr
 * @returns {Rendition | null}
 */
export function preferReady(ready, abr) {
  return ready && (!abr || ready.bitrate >= abr.bitrate) ? ready : abr;
}

/**
 * Queue entry `qi` laid on the timeline from `start` seconds. The fMP4 timeline begins with the
 * encoder priming, so it is shifted back by it, and the append window keeps only the real
 * audio: [start, start + valid).
 * @param {Track} track
 * @param {number} qi
 * @param {number} start
 * @param {Rendition} rend
 * @param {number} first the first segment to append (0-based)
 * @returns {Placement}
 */
export function place(track, qi, start, rend, first) {
  const sr = track.sample_rate;
  return {
    track, qi, start, end: start + track.gapless.valid_samples / sr, offset: start - track.gapless.priming_samples / sr,
    first, next: first, rend, segRend: [], pendingStart: null, gain: normalizationGain(track),
  };
}

/**
 * Timeline seconds where segment `k` of `pl` starts (k = the count: where the last ends).
 * @param {Placement} pl
 * @param {number} k
 */
export const segTime = (pl, k) => pl.offset + segEdges(pl.track)[k];

/**
 * The placement that holds timeline second `t`: the last that starts by then, else the first.
 * @param {Placement[]} placements
 * @param {number} t
 * @returns {Placement | null}
 */
export const placementAt = (placements, t) => placements.findLast((p) => p.start <= t + 0.005) ?? placements[0] ?? null;

/**
 * The range of `buffered` (a TimeRanges) that holds time `t`, as [start, end], or null.
 * @param {{ length: number, start(i: number): number, end(i: number): number }} buffered
 * @param {number} t
 * @returns {[number, number] | null}
 */
export function rangeAt(buffered, t) {
  for (let i = 0; i < buffered.length; i++) {
    if (buffered.start(i) <= t + 0.01 && t < buffered.end(i)) return [buffered.start(i), buffered.end(i)];
  }
  return null;
}

/**
 * A copy of an init segment with its edit list boxes renamed `free` (ISO/IEC 14496-12 8.6.5,
 * 8.1.2). Browsers disagree on edit lists in MSE (Chromium shifts the timestamps by the edit's
 * media_time, others ignore it); the page trims priming and padding itself with the append
 * window, so the edit list must not act as well. Boxes are walked inside `moov` and `trak`
 * only (with 32- and 64-bit sizes, 4.2); a box whose size runs past its parent stops the walk
 * there (the rest is left as is).
 * @param {ArrayBuffer} buf
 * @returns {Uint8Array<ArrayBuffer>}
 */
export function withoutEditList(buf) {
  const bytes = new Uint8Array(buf.slice(0));
  const view = new DataView(bytes.buffer);
  /** @param {number} from @param {number} to */
  const walk = (from, to) => {
    for (let o = from; o + 8 <= to;) {
      let size = view.getUint32(o), header = 8;
      if (size === 1) { // a 64-bit largesize follows the type (4.2)
        if (o + 16 > to) return;
        [size, header] = [Number(view.getBigUint64(o + 8)), 16];
      } else if (size === 0) size = to - o; // to the end of the enclosing box
      if (size < header || o + size > to) return;
      const type = String.fromCharCode(...bytes.subarray(o + 4, o + 8));
      if (type === 'edts') bytes.set([0x66, 0x72, 0x65, 0x65], o + 4);
      else if (type === 'moov' || type === 'trak') walk(o + header, o + size);
      o += size;
    }
  };
  walk(0, bytes.length);
  return bytes;
}

// ---------------------------------------------------------------------------------------------
// The queue and the session.

/**
 * What `previous` does at track position `pos` seconds of queue entry `qi`: back to the
 * start of this track (past its first 3 s, or on the first entry), else the entry before.
 * @param {number} qi
 * @param {number} pos
 * @returns {{ seek: 0 } | { jump: number }}
 */
export function previousTarget(qi, pos) {
  return pos > 3 || qi <= 0 ? { seek: 0 } : { jump: qi - 1 };
}

/**
 * What `next` does on queue entry `qi` of a queue of `length`: the next entry, or past the
 * last, back to the first, stopped (as the server does).
 * @param {number} qi
 * @param {number} length
 * @returns {{ jump: number, play: boolean }}
 */
export function nextTarget(qi, length) {
  return qi + 1 < length ? { jump: qi + 1, play: true } : { jump: 0, play: false };
}

/**
 * Whether `qi` is an entry of a queue of `length`.
 * @param {number} qi
 * @param {number} length
 */
export const inQueue = (qi, length) => Number.isInteger(qi) && qi >= 0 && qi < length;

/**
 * Whether two queues hold the same ids in the same order.
 * @param {readonly string[]} a
 * @param {readonly string[]} b
 */
export const sameQueue = (a, b) => a.length === b.length && a.every((id, i) => id === b[i]);

/**
 * A seek target within a track of `duration` seconds: kept 50 ms before its end, never negative
 * (NaN: the start).
 * @param {number} pos
 * @param {number} duration
 */
export const seekTarget = (pos, duration) => (Number.isNaN(pos) ? 0 : clamp(pos, 0, Math.max(0, duration - 0.05)));

/**
 * The session's position now: as of the `state`, plus the `elapsedMs` since while playing,
 * no further than the track's `duration` (when known).
 * @param {{ position: number, playing: boolean }} s
 * @param {number} elapsedMs
 * @param {number | null} duration
 */
export function statePosition(s, elapsedMs, duration) {
  const p = s.position + (s.playing ? elapsedMs / 1000 : 0);
  return duration == null ? p : Math.min(p, duration);
}
