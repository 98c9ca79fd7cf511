// @ts-check
// segue's playback engine: gapless playback of segue's CMAF renditions through Media Source
// Extensions, on the page's <audio id="audio">, with each track's loudness gain (./output.js)
// switched at its boundary. The session
// (./player.js) drives it; it tells the session where playback is through `engine.report`, and
// nothing here knows of the control channel. Its decisions (ABR, the timeline's placements,
// the edit-list rewrite) are pure functions of ./logic.js.
//
// - Bytes (./media.js): every media file goes through getBytes(), which keeps what it
//   fetched (and what the server hinted) in an in-memory map, shares one request among all who
//   want a URL, retries, and measures throughput for ABR.
// - Engine: one MediaSource with one SourceBuffer. Each queue entry is laid on one continuous
//   timeline (a "placement"): its real audio starts where the previous one's ended, and the
//   append window cuts the encoder priming and padding, so tracks join without a gap. A start
//   (click, seek outside the buffer, remote command) flushes and lays a fresh timeline from 0;
//   the pump then keeps ~25 s buffered ahead, choosing a rendition per segment.

import {
  sleep, isAbort, errorName, notify, invalidate, bandwidth, haveBytes, getBytes, tracks, trackById, pageConfig,
} from './media.js';
import { audio, volume, trackGain, gain } from './output.js';
import {
  chooseRendition as chooseFor, clamp, place, placementAt, preferReady, rangeAt, segTime, segUrl, segmentAt,
  trackDuration, withoutEditList,
} from './logic.js';

/** @typedef {import('./types.js').Track} Track */
/** @typedef {import('./types.js').Rendition} Rendition */
/** @typedef {import('./types.js').Placement} Placement */

const BUFFER_GOAL_S = 25;
const BUFFER_BEHIND_S = 10; // kept behind the playhead for quick small seeks back
const RESUME_AFTER_FAILURE_MS = 4000;


// ---------------------------------------------------------------------------------------------
// Engine: MSE playback. engine.gen counts starts; async work of an older start sees another gen
// and stops, so a click always wins over what was under way.

/**
 * The engine's state.
 * @typedef {object} Engine
 * @property {MediaSource | null} ms the MediaSource on the element (from startEngine())
 * @property {SourceBuffer | null} sb its SourceBuffer, once media came
 * @property {string | null} mime the SourceBuffer's type
 * @property {string | null} lastInit URL of the init segment the SourceBuffer last saw
 * @property {Promise<unknown>} opened resolves once `ms` is open
 * @property {number} gen counts starts
 * @property {AbortController | null} ctl aborts the requests of the current start
 * @property {string[]} queue the queue's track ids
 * @property {Placement[]} placements the queue entries on the timeline
 * @property {Placement | null} current the one the playhead is in
 * @property {boolean} playing what the user wants (the element stays paused while a start is under way)
 * @property {boolean} starting a start is under way
 * @property {number} startAt when it began (performance.now())
 * @property {Promise<void>} started resolves once it has begun playing (or given way)
 * @property {(() => void) | null} markStarted resolves `started`
 * @property {number} goal seconds to keep buffered ahead
 * @property {number} failedAt when a load last failed (performance.now())
 * @property {number} skipping the start whose broken track is being skipped
 * @property {Set<() => void>} wakers what wakes the pump before its tick
 * @property {Placement | null} preroll a first segment laid before any click (see prefetch.js)
 * @property {() => void} report tells the session where playback is (set by the session)
 */

/** The engine's state; a start (engine.gen) owns it until the next. @type {Engine} */
export const engine = {
  ms: null,
  sb: null, mime: null, lastInit: null, opened: Promise.resolve(),
  gen: 0, ctl: null, queue: [], placements: [], current: null,
  playing: false,
  starting: false, startAt: 0, started: Promise.resolve(), markStarted: null,
  goal: BUFFER_GOAL_S, failedAt: 0, skipping: -1, wakers: new Set(), preroll: null,
  report: () => {},
};
/** @type {Promise<unknown>} */
let sbTail = Promise.resolve();

function newMediaSource() {
  const ms = new MediaSource();
  Object.assign(engine, { ms, sb: null, mime: null, lastInit: null });
  engine.opened = new Promise((resolve) => ms.addEventListener('sourceopen', resolve, { once: true }));
  const url = URL.createObjectURL(ms);
  engine.opened.then(() => URL.revokeObjectURL(url));
  audio.src = url;
}

/**
 * Runs `fn(sb)` after every earlier SourceBuffer operation. `fn` starts at most one async
 * operation (append/remove) and returns whether it did; the promise settles once that is done
 * (rejects on a SourceBuffer error). An operation of an older start is skipped (false).
 * @param {number} gen
 * @param {(sb: SourceBuffer) => boolean} fn
 * @returns {Promise<boolean>}
 */
function sbDo(gen, fn) {
  /** @type {Promise<boolean>} */
  const run = sbTail.then(() => new Promise((resolve, reject) => {
    const sb = engine.sb;
    if (gen !== engine.gen || !sb) return resolve(false);
    let failed = false;
    const onError = () => { failed = true; }; // `error` comes before `updateend`
    const onEnd = () => {
      cleanup();
      if (failed) reject(new DOMException('the browser could not use the media', 'DecodeError'));
      else resolve(true);
    };
    const cleanup = () => { sb.removeEventListener('error', onError); sb.removeEventListener('updateend', onEnd); };
    sb.addEventListener('error', onError);
    sb.addEventListener('updateend', onEnd);
    try {
      if (!fn(sb)) { cleanup(); resolve(true); }
    } catch (e) {
      cleanup();
      reject(e);
    }
  }));
  sbTail = run.catch(() => {});
  return run;
}

/** The SourceBuffer for `codec`: made, or switched with changeType() where the browser has it.
 *  @param {number} gen @param {string} codec */
async function ensureSourceBuffer(gen, codec) {
  const mime = `audio/mp4; codecs="${codec}"`;
  await engine.opened;
  if (gen !== engine.gen || !engine.ms) return;
  if (!engine.sb) [engine.sb, engine.mime] = [engine.ms.addSourceBuffer(mime), mime];
  else if (engine.mime !== mime && 'changeType' in engine.sb) await sbDo(gen, (sb) => { sb.changeType(mime); engine.mime = mime; return false; });
}

/** Seconds buffered ahead of the playhead. */
const bufferedAhead = () => { const r = rangeAt(audio.buffered, audio.currentTime); return r ? r[1] - audio.currentTime : 0; };
/** Whether timeline second `t` is buffered. @param {number} t */
const isBuffered = (t) => (rangeAt(audio.buffered, t)?.[1] ?? 0) > t + 0.05;

/** Seconds into the current track (where a start under way is going, until it is there). */
function position() {
  const pl = engine.current;
  if (!pl) return 0;
  return pl.pendingStart ? pl.pendingStart.pos : clamp(audio.currentTime - pl.start, 0, trackDuration(pl.track));
}

/** The track has no rendition: nothing of it can play. */
class NoRenditionError extends Error {
  /** @param {Track} track */
  constructor(track) {
    super(`track ${track.id} has no rendition`);
    this.name = 'NoRenditionError';
  }
}

/**
 * ./logic.js's ABR with this page's estimate and the server's share.
 * @param {Track} track
 * @param {number | null} curBitrate the rendition in use (bit/s; null at a start)
 * @param {number} ahead seconds buffered ahead
 * @returns {Rendition}
 */
function chooseRendition(track, curBitrate, ahead) {
  const rend = chooseFor(track, curBitrate, ahead, bandwidth.estimate(), pageConfig.abr_share);
  if (!rend) throw new NoRenditionError(track);
  return rend;
}

/**
 * Rendition of the first segment of a placement. At a start, bytes in memory or on their way (a
 * prefetch) win, since they cost nothing; ABR takes over from the next segment. For the next
 * track of a gapless run there is time: prefetched bytes only if they are not worse.
 * @param {Track} track
 * @param {number} k the first segment (0-based)
 * @param {number | null} curBitrate
 * @param {boolean} [lookahead]
 * @returns {Rendition}
 */
function startRendition(track, k, curBitrate, lookahead = false) {
  const ready = track.renditions.filter((r) => haveBytes(r.init) && haveBytes(segUrl(r, k))).at(-1);
  const abr = ready && !lookahead ? null : chooseRendition(track, curBitrate, bufferedAhead());
  const rend = preferReady(ready, abr);
  if (!rend) throw new NoRenditionError(track);
  return rend;
}

/**
 * Starts queue entry `index` at `pos` seconds on a fresh timeline. The init and first segment
 * are requested before anything else, in parallel and without a playlist: they are the whole
 * critical path.
 * @param {string[]} queue
 * @param {number} index
 * @param {number} [pos]
 * @param {boolean} [play]
 */
function start(queue, index, pos = 0, play = true) {
  const gen = ++engine.gen;
  const previous = engine.ctl;
  const ctl = (engine.ctl = new AbortController());
  engine.markStarted?.(); // whatever waited for the previous start may go now
  /** @type {() => void} */
  let started = () => {};
  engine.started = new Promise((resolve) => { started = resolve; });
  engine.markStarted = () => { engine.starting = false; started(); };
  Object.assign(engine, { queue: queue.slice(), playing: play, starting: true, startAt: performance.now(), goal: BUFFER_GOAL_S });
  /** @param {Track} track */
  const kick = (track) => {
    const k = segmentAt(track, pos), rend = startRendition(track, k, engine.current?.rend.bitrate ?? null);
    for (const url of [rend.init, segUrl(rend, k)]) getBytes(url, { signal: ctl.signal }).catch(() => {});
    return rend;
  };
  const known = tracks.get(queue[index]);
  let rend = known && kick(known);
  previous?.abort(); // after the kick: a request both starts want lives on
  (async () => {
    const track = known ?? (await trackById(queue[index]));
    if (gen !== engine.gen) return;
    rend ||= kick(track);
    if (!play) audio.pause();
    // The preroll (see warmUp) is this start's first segment already in place: play it at once.
    const pre = engine.preroll;
    engine.preroll = null;
    const reuse = pre?.track === track && pre.rend === rend && segmentAt(track, pos) === 0;
    if (!reuse) await resetTimeline(gen);
    if (gen !== engine.gen) return;
    const pl = reuse ? Object.assign(pre, { qi: index }) : place(track, index, 0, rend, segmentAt(track, pos));
    pl.pendingStart = { pos };
    engine.placements = [pl];
    setCurrent(pl);
    if (reuse) {
      begin(gen, pl);
      await Promise.race([engine.started, sleep(1000)]);
    }
    pump(gen);
  })().catch((e) => failed(gen, e));
}

/** Empties the SourceBuffer (cutting short an append under way) so that a new timeline can begin. @param {number} gen */
async function resetTimeline(gen) {
  await engine.opened;
  const { ms, sb } = engine;
  if (!sb || !ms || gen !== engine.gen) return;
  if (sb.updating && ms.readyState === 'open') {
    sb.abort();
    engine.lastInit = null; // it may have been an init segment
  }
  await sbDo(gen, (sb) => {
    if (ms.readyState === 'open') sb.abort(); // parser reset: the next append starts clean
    if (!sb.buffered.length) return false;
    sb.remove(0, Infinity);
    return true;
  });
}

/**
 * Fetches and appends segment `k` of placement `pl` in rendition `rend`, with its init segment
 * (fetched in parallel) when the SourceBuffer last saw another.
 * @param {number} gen
 * @param {Placement} pl
 * @param {number} k
 * @param {Rendition} rend
 */
async function appendSegment(gen, pl, k, rend) {
  const signal = engine.ctl?.signal;
  const needInit = engine.lastInit !== rend.init;
  const [init, seg] = await Promise.all([needInit ? getBytes(rend.init, { signal }) : null, getBytes(segUrl(rend, k), { signal })]);
  if (gen !== engine.gen) return;
  if (init) {
    await ensureSourceBuffer(gen, rend.codec);
    if (!(await sbDo(gen, (sb) => { sb.appendBuffer(withoutEditList(init)); return true; })) || gen !== engine.gen) return;
    engine.lastInit = rend.init;
  }
  for (let tries = 0; ; tries++) {
    try {
      await sbDo(gen, (sb) => {
        sb.timestampOffset = pl.offset;
        sb.appendWindowEnd = Infinity; // the start must stay below the end while both move
        sb.appendWindowStart = pl.start;
        sb.appendWindowEnd = pl.end;
        sb.appendBuffer(seg);
        return true;
      });
      break;
    } catch (e) {
      if (errorName(e) !== 'QuotaExceededError' || tries >= 5) throw e;
      // The browser's buffer is full: drop what is behind the playhead, or wait for it to move.
      engine.goal = Math.max(6, bufferedAhead() - 2);
      if (!(await evict(gen, 1))) await sleep(1000);
    }
  }
  if (gen !== engine.gen) return;
  // A damaged segment can vanish without an error (a parser waiting for the rest of a box that
  // claims to be huge): check that the audio it holds is there.
  const from = Math.max(pl.start, segTime(pl, k)), to = Math.min(pl.end, segTime(pl, k + 1));
  if (to - from > 0.05 && (rangeAt(audio.buffered, from)?.[1] ?? -1) < to - 0.05) throw new DOMException(`segment ${k + 1} gave no audio`, 'DecodeError');
  [pl.segRend[k], pl.rend, pl.next] = [rend, rend, k + 1];
}

/**
 * Segment `k` of `pl` is unusable: the track ends at its last good sample and the next one is
 * laid right there, without resetting the element (which plays on what it has).
 * @param {number} gen
 * @param {Placement} pl
 * @param {number} k
 */
async function cutBroken(gen, pl, k) {
  notify(`Could not play “${pl.track.title}”: skipping it.`);
  const at = Math.max(pl.start, segTime(pl, k));
  await sbDo(gen, (sb) => {
    if (engine.ms?.readyState === 'open') sb.abort(); // drop what the parser holds of the bad segment
    if (!sb.buffered.length || sb.buffered.end(sb.buffered.length - 1) <= at) return false;
    sb.remove(at, Infinity);
    return true;
  });
  engine.lastInit = null; // the next segment needs its init again
  [pl.end, pl.next] = [at, pl.track.segment_durations.length];
  if (at <= pl.start + 0.01 && pl !== engine.current) engine.placements.splice(engine.placements.indexOf(pl), 1);
}

/** A track the element cannot decode: the element is dead after that, so a new MediaSource, and
 *  playback goes on with the next track. @param {Placement} pl */
function skipBroken(pl) {
  if (engine.skipping === engine.gen) return;
  engine.skipping = engine.gen;
  notify(`Could not play “${pl.track.title}”: skipping it.`, audio.error);
  newMediaSource();
  if (pl.qi + 1 < engine.queue.length) start(engine.queue, pl.qi + 1, 0, true);
  else [engine.gen, engine.playing] = [engine.gen + 1, false];
}

/** Removes media more than `keep` seconds behind the playhead; returns whether it did.
 *  @param {number} gen @param {number} keep */
async function evict(gen, keep) {
  const cut = audio.currentTime - keep;
  if (!audio.buffered.length || audio.buffered.start(0) >= cut - 0.5) return false;
  await sbDo(gen, (sb) => { sb.remove(0, cut); return true; });
  engine.placements = engine.placements.filter((p) => p.end > cut || p === engine.current);
  return true;
}

/** Waits `ms`, or less when something wakes the pump (a seek). @returns {Promise<void>} */
const waitTick = (ms = 300) => new Promise((resolve) => {
  const done = () => { clearTimeout(timer); engine.wakers.delete(done); resolve(); };
  const timer = setTimeout(done, ms);
  engine.wakers.add(done);
});

/** The loader of one start: keeps BUFFER_GOAL_S ahead, segment by segment, lays each next queue
 *  entry right after the previous one, and ends the stream after the last. @param {number} gen */
async function pump(gen) {
  while (gen === engine.gen) {
    const pl = engine.placements.at(-1);
    if (!pl) return; // a start lays its first placement before the pump runs
    const ahead = bufferedAhead();
    if (pl.next < pl.track.segment_durations.length) {
      if (ahead >= engine.goal && !pl.pendingStart) { await waitTick(); continue; }
      const rend = pl.next === pl.first ? pl.rend : chooseRendition(pl.track, pl.rend.bitrate, ahead);
      try {
        await appendSegment(gen, pl, pl.next, rend);
      } catch (e) {
        if (isAbort(e) || gen !== engine.gen) return;
        if (audio.error) return skipBroken(pl);
        if (errorName(e) === 'DecodeError') await cutBroken(gen, pl, pl.next).catch(() => skipBroken(pl));
        else { failed(gen, e); await waitTick(RESUME_AFTER_FAILURE_MS); }
        continue;
      }
      if (gen !== engine.gen) return;
      if (pl.pendingStart) {
        begin(gen, pl);
        // Nothing more until playback has begun (every request costs main-thread time too), unless
        // the next segment may take long to come.
        const est = bandwidth.estimate(), bytes = rend.segment_sizes?.[pl.next] ?? Infinity;
        const fetchSeconds = est ? (bytes * 8) / est : Infinity;
        if (fetchSeconds < bufferedAhead() / 2) await Promise.race([engine.started, sleep(1000)]);
      }
      if (audio.currentTime - (audio.buffered.length ? audio.buffered.start(0) : 0) > BUFFER_BEHIND_S + 5) {
        evict(gen, BUFFER_BEHIND_S).catch(() => {});
      }
      continue;
    }
    const qi = pl.qi + 1;
    if (qi >= engine.queue.length) {
      await sbDo(gen, () => { if (engine.ms?.readyState === 'open') engine.ms.endOfStream(); return false; }).catch(() => {});
      return;
    }
    if (ahead >= engine.goal) { await waitTick(); continue; }
    const track = await trackById(engine.queue[qi]).catch((e) => { failed(gen, e); return null; });
    if (gen !== engine.gen) return;
    if (!track) { await waitTick(RESUME_AFTER_FAILURE_MS); continue; }
    const next = place(track, qi, pl.end, startRendition(track, 0, pl.rend.bitrate, true), 0);
    if (pl.pendingStart) [next.pendingStart, pl.pendingStart] = [{ pos: 0 }, null]; // it was cut before it began
    engine.placements.push(next);
  }
}

/** After the first append of a start: the playhead goes there, and playback begins once the
 *  element can play (play() before that would fire `waiting`).
 *  @param {number} gen @param {Placement} pl */
function begin(gen, pl) {
  const t = pl.start + (pl.pendingStart?.pos ?? 0);
  pl.pendingStart = null;
  if (Math.abs(audio.currentTime - t) > 0.001) audio.currentTime = t;
  if (!engine.playing) {
    engine.markStarted?.();
    return;
  }
  const off = () => { audio.removeEventListener('canplay', tryPlay); audio.removeEventListener('seeked', tryPlay); };
  const tryPlay = () => {
    if (gen !== engine.gen || !engine.playing) return off();
    if (audio.readyState < HTMLMediaElement.HAVE_FUTURE_DATA || audio.seeking) return;
    off();
    playElement();
  };
  audio.addEventListener('canplay', tryPlay);
  audio.addEventListener('seeked', tryPlay);
  tryPlay();
}

/** Plays the element (the user's wish, or a start that is ready). */
function playElement() {
  audio.play().catch((/** @type {Error} */ e) => {
    if (isAbort(e)) return; // a pause or a new start came first
    engine.playing = false;
    notify(e.name === 'NotAllowedError' ? 'The browser wants a click before it plays: press play.' : `Could not play: ${e.message}`, e);
  });
}

/** A load of start `gen` failed with `e` (told once per outage). @param {number} gen @param {unknown} e */
function failed(gen, e) {
  if (gen !== engine.gen || isAbort(e)) return;
  // One message per outage: the pump keeps retrying quietly.
  if (performance.now() - engine.failedAt > 15000) notify('Could not load the music; retrying…', e);
  engine.failedAt = performance.now();
}

/** The playhead is in `pl` now: the UI's current track, its gain, and a report at a boundary.
 *  @param {Placement} pl */
function setCurrent(pl) {
  const previous = engine.current;
  engine.current = pl;
  if (gain.scheduledFor !== pl) gain.apply(trackGain(pl));
  gain.scheduledFor = null;
  if (previous && previous.qi + 1 === pl.qi) engine.report();
  invalidate(true);
}

/** Follows the playhead: the current placement, and the next one's gain at the boundary. */
function onTimeUpdate() {
  if (!engine.placements.length) return;
  const pl = placementAt(engine.placements, audio.currentTime);
  if (pl && pl !== engine.current) setCurrent(pl);
  const current = engine.current;
  if (!current) return;
  // The next track's gain is set on the audio clock, at the boundary.
  const next = engine.placements.find((p) => p.qi === current.qi + 1);
  const until = next ? next.start - audio.currentTime : Infinity;
  if (next && until > 0 && until < 0.6 && gain.scheduledFor !== next && !audio.paused) {
    gain.apply(trackGain(next), until);
    gain.scheduledFor = next;
  }
}

/** The element's listeners: the playhead, the user's pauses, errors. */
function wireAudio() {
  audio.addEventListener('timeupdate', onTimeUpdate);
  audio.addEventListener('playing', () => engine.markStarted?.());
  audio.addEventListener('seeking', () => {
    gain.scheduledFor = null;
    if (engine.current) gain.apply(trackGain(placementAt(engine.placements, audio.currentTime) ?? engine.current));
  });
  audio.addEventListener('seeked', () => { onTimeUpdate(); [...engine.wakers].forEach((w) => w()); });
  audio.addEventListener('ended', () => { engine.playing = false; engine.report(); invalidate(); });
  // Paused from outside the page (a system media key, headphones pulled out); a start's own
  // pauses (a new MediaSource pauses the element) are not the user's.
  audio.addEventListener('pause', () => {
    if (engine.starting || !engine.playing || audio.ended) return;
    engine.playing = false;
    engine.report();
  });
  audio.addEventListener('error', () => { if (engine.current && audio.error) skipBroken(engine.current); });
  setInterval(onTimeUpdate, 250); // a boundary must not wait for a frame (none come to a background tab)
}

/** Starts the engine: the MediaSource and the element's listeners (the volume as the session
 *  restored it). The audio graph is made later, by `gain.create()`. */
export function startEngine() {
  gain.current = () => (engine.current ? trackGain(engine.current) : 1);
  bandwidth.init();
  volume.update();
  newMediaSource();
  wireAudio();
}

// What the session uses of the engine besides the exports above.
export { start, position, bufferedAhead, isBuffered, playElement, onTimeUpdate };
// What the prefetch (./prefetch.js) uses to lay a preroll.
export { appendSegment };
