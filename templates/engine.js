// segue's playback engine: gapless playback of segue's CMAF renditions through Media Source
// Extensions, on the page's <audio id="audio">, plus loudness normalization. The session (/assets/player.js) drives it; it tells the session where
// playback is through `engine.report`, and nothing here knows of the control channel.
//
// - Bytes (/assets/media.js): every media file goes through getBytes(), which keeps what it
//   fetched (and what the server hinted) in an in-memory map, shares one request among all who
//   want a URL, retries, and measures throughput for ABR.
// - Engine: one MediaSource with one SourceBuffer. Each queue entry is laid on one continuous
//   timeline (a "placement"): its real audio starts where the previous one's ended, and the
//   append window cuts the encoder priming and padding, so tracks join without a gap. A start
//   (click, seek outside the buffer, remote command) flushes and lays a fresh timeline from 0;
//   the pump then keeps ~25 s buffered ahead, choosing a rendition per segment.

import {
  sleep, isAbort, clamp, notify, invalidate, bandwidth, haveBytes, getBytes, tracks, trackById, segUrl,
  trackDuration, segEdges, segmentAt, peakBitrate, normalizationGain,
} from '/assets/media.js';

const BUFFER_GOAL_S = 25;
const BUFFER_BEHIND_S = 10; // kept behind the playhead for quick small seeks back
export const UPSWITCH_MIN_BUFFER_S = 8; // also: a buffer this deep is healthy (see prefetch.js)
const UPSWITCH_MARGIN = 1.25; // an upswitch needs this much headroom, so an estimate at a threshold does not flap
const ABR_SHARE = 0.5; // a rendition's peak bitrate may use this share of the throughput (as in the server's hints)
const RESUME_AFTER_FAILURE_MS = 4000;

const audio = document.querySelector('#audio');

// ---------------------------------------------------------------------------------------------
// Engine: MSE playback. engine.gen counts starts; async work of an older start sees another gen
// and stops, so a click always wins over what was under way.

export const engine = {
  ms: null, sb: null, mime: null, lastInit: null, opened: null,
  gen: 0, ctl: null, queue: [], placements: [], current: null,
  playing: false, // what the user wants (the element stays paused while a start is under way)
  starting: false, startAt: 0, started: Promise.resolve(), markStarted: null,
  goal: BUFFER_GOAL_S, failedAt: 0, wakers: new Set(), preroll: null,
  report: () => {}, // tells the session where playback is (set by the session)
};
let sbTail = Promise.resolve();

function newMediaSource() {
  const ms = new MediaSource();
  Object.assign(engine, { ms, sb: null, mime: null, lastInit: null });
  engine.opened = new Promise((resolve) => ms.addEventListener('sourceopen', resolve, { once: true }));
  const url = URL.createObjectURL(ms);
  engine.opened.then(() => URL.revokeObjectURL(url));
  audio.src = url;
}

/** Runs `fn(sb)` after every earlier SourceBuffer operation. `fn` starts at most one async
 *  operation (append/remove) and returns whether it did; the promise settles once that is done
 *  (rejects on a SourceBuffer error). An operation of an older start is skipped (false). */
function sbDo(gen, fn) {
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

async function ensureSourceBuffer(gen, codec) {
  const mime = `audio/mp4; codecs="${codec}"`;
  await engine.opened;
  if (gen !== engine.gen) return;
  if (!engine.sb) [engine.sb, engine.mime] = [engine.ms.addSourceBuffer(mime), mime];
  else if (engine.mime !== mime && 'changeType' in engine.sb) await sbDo(gen, (sb) => { sb.changeType(mime); engine.mime = mime; return false; });
}

/** The buffered range [start, end] that holds time `t`, or null. */
function rangeAt(t) {
  const b = audio.buffered;
  for (let i = 0; i < b.length; i++) if (b.start(i) <= t + 0.01 && t < b.end(i)) return [b.start(i), b.end(i)];
  return null;
}
const bufferedAhead = () => { const r = rangeAt(audio.currentTime); return r ? r[1] - audio.currentTime : 0; };
const isBuffered = (t) => (rangeAt(t)?.[1] ?? 0) > t + 0.05;
const placementAt = (t) => engine.placements.findLast((p) => p.start <= t + 0.005) ?? engine.placements[0] ?? null;

/** Seconds into the current track (where a start under way is going, until it is there). */
function position() {
  const pl = engine.current;
  if (!pl) return 0;
  return pl.pendingStart ? pl.pendingStart.pos : clamp(audio.currentTime - pl.start, 0, trackDuration(pl.track));
}

/** Queue entry `qi` laid on the timeline from `start` seconds. The fMP4 timeline begins with the
 *  encoder priming, so it is shifted back by it, and the append window keeps only the real
 *  audio: [start, start + valid). */
function place(track, qi, start, rend, first) {
  const sr = track.sample_rate;
  return {
    track, qi, start, end: start + track.gapless.valid_samples / sr, offset: start - track.gapless.priming_samples / sr,
    first, next: first, rend, segRend: [], pendingStart: null, gain: normalizationGain(track),
  };
}
const segTime = (pl, k) => pl.offset + segEdges(pl.track)[k];

/** ABR, per segment (so a switch happens at a segment boundary): the highest rendition whose
 *  peak fits ABR_SHARE of the estimate (with a margin above the current one); no upswitch on a
 *  thin buffer; a downswitch as soon as the estimate falls. `curBitrate`: the rendition in use
 *  (null at a start); no estimate: the lowest. */
function chooseRendition(track, curBitrate, ahead) {
  const rends = track.renditions;
  const cur = curBitrate == null ? null
    : rends.reduce((a, r) => (Math.abs(r.bitrate - curBitrate) < Math.abs(a.bitrate - curBitrate) ? r : a));
  const est = bandwidth.estimate();
  if (est == null) return cur ?? rends[0];
  const margin = (r) => (cur && r.bitrate > cur.bitrate ? UPSWITCH_MARGIN : 1);
  const best = rends.findLast((r) => peakBitrate(track, r) * margin(r) <= est * ABR_SHARE) ?? rends[0];
  return cur && best.bitrate > cur.bitrate && ahead < UPSWITCH_MIN_BUFFER_S ? cur : best;
}

/** Rendition of the first segment of a placement. At a start, bytes in memory or on their way (a
 *  prefetch) win, since they cost nothing; ABR takes over from the next segment. For the next
 *  track of a gapless run there is time: prefetched bytes only if they are not worse. */
function startRendition(track, k, curBitrate, lookahead = false) {
  const ready = track.renditions.filter((r) => haveBytes(r.init) && haveBytes(segUrl(r, k))).at(-1);
  const abr = ready && !lookahead ? null : chooseRendition(track, curBitrate, bufferedAhead());
  return ready && (!abr || ready.bitrate >= abr.bitrate) ? ready : abr;
}

/** Starts queue entry `index` at `pos` seconds on a fresh timeline. The init and first segment
 *  are requested before anything else, in parallel and without a playlist: they are the whole
 *  critical path. */
function start(queue, index, pos = 0, play = true) {
  const gen = ++engine.gen;
  const previous = engine.ctl;
  const ctl = (engine.ctl = new AbortController());
  engine.markStarted?.(); // whatever waited for the previous start may go now
  let started;
  engine.started = new Promise((resolve) => { started = resolve; });
  engine.markStarted = () => { engine.starting = false; started(); };
  Object.assign(engine, { queue: queue.slice(), playing: play, starting: true, startAt: performance.now(), goal: BUFFER_GOAL_S });
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

/** A copy of an init segment with its edit list boxes renamed `free` (ISO/IEC 14496-12 8.6.5,
 *  8.1.2). Browsers disagree on edit lists in MSE (Chromium shifts the timestamps by the edit's
 *  media_time, others ignore it); the page trims priming and padding itself with the append
 *  window, so the edit list must not act as well. */
function withoutEditList(buf) {
  const bytes = new Uint8Array(buf.slice(0));
  const view = new DataView(bytes.buffer);
  const walk = (from, to) => {
    for (let o = from; o + 8 <= to;) {
      let size = view.getUint32(o);
      if (size === 1) size = Number(view.getBigUint64(o + 8));
      else if (size === 0) size = to - o;
      if (size < 8 || o + size > to) return;
      const type = String.fromCharCode(...bytes.subarray(o + 4, o + 8));
      if (type === 'edts') bytes.set([0x66, 0x72, 0x65, 0x65], o + 4);
      else if (type === 'moov' || type === 'trak') walk(o + 8, o + size);
      o += size;
    }
  };
  walk(0, bytes.length);
  return bytes;
}

/** Empties the SourceBuffer (cutting short an append under way) so that a new timeline can begin. */
async function resetTimeline(gen) {
  await engine.opened;
  const { ms, sb } = engine;
  if (!sb || gen !== engine.gen) return;
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

/** Fetches and appends segment `k` of placement `pl` in rendition `rend`, with its init segment
 *  (fetched in parallel) when the SourceBuffer last saw another. */
async function appendSegment(gen, pl, k, rend) {
  const signal = engine.ctl?.signal;
  const needInit = engine.lastInit !== rend.init;
  const [init, seg] = await Promise.all([needInit && getBytes(rend.init, { signal }), getBytes(segUrl(rend, k), { signal })]);
  if (gen !== engine.gen) return;
  if (needInit) {
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
      if (e.name !== 'QuotaExceededError' || tries >= 5) throw e;
      // The browser's buffer is full: drop what is behind the playhead, or wait for it to move.
      engine.goal = Math.max(6, bufferedAhead() - 2);
      if (!(await evict(gen, 1))) await sleep(1000);
    }
  }
  if (gen !== engine.gen) return;
  // A damaged segment can vanish without an error (a parser waiting for the rest of a box that
  // claims to be huge): check that the audio it holds is there.
  const from = Math.max(pl.start, segTime(pl, k)), to = Math.min(pl.end, segTime(pl, k + 1));
  if (to - from > 0.05 && (rangeAt(from)?.[1] ?? -1) < to - 0.05) throw new DOMException(`segment ${k + 1} gave no audio`, 'DecodeError');
  [pl.segRend[k], pl.rend, pl.next] = [rend, rend, k + 1];
}

/** Segment `k` of `pl` is unusable: the track ends at its last good sample and the next one is
 *  laid right there, without resetting the element (which plays on what it has). */
async function cutBroken(gen, pl, k) {
  notify(`Could not play “${pl.track.title}”: skipping it.`);
  const at = Math.max(pl.start, segTime(pl, k));
  await sbDo(gen, (sb) => {
    if (engine.ms.readyState === 'open') sb.abort(); // drop what the parser holds of the bad segment
    if (!sb.buffered.length || sb.buffered.end(sb.buffered.length - 1) <= at) return false;
    sb.remove(at, Infinity);
    return true;
  });
  engine.lastInit = null; // the next segment needs its init again
  [pl.end, pl.next] = [at, pl.track.segment_durations.length];
  if (at <= pl.start + 0.01 && pl !== engine.current) engine.placements.splice(engine.placements.indexOf(pl), 1);
}

/** A track the element cannot decode: the element is dead after that, so a new MediaSource, and
 *  playback goes on with the next track. */
function skipBroken(pl) {
  if (engine.skipping === engine.gen) return;
  engine.skipping = engine.gen;
  notify(`Could not play “${pl.track.title}”: skipping it.`, audio.error);
  newMediaSource();
  if (pl.qi + 1 < engine.queue.length) start(engine.queue, pl.qi + 1, 0, true);
  else [engine.gen, engine.playing] = [engine.gen + 1, false];
}

/** Removes media more than `keep` seconds behind the playhead; returns whether it did. */
async function evict(gen, keep) {
  const cut = audio.currentTime - keep;
  if (!audio.buffered.length || audio.buffered.start(0) >= cut - 0.5) return false;
  await sbDo(gen, (sb) => { sb.remove(0, cut); return true; });
  engine.placements = engine.placements.filter((p) => p.end > cut || p === engine.current);
  return true;
}

const waitTick = (ms = 300) => new Promise((resolve) => {
  const done = () => { clearTimeout(timer); engine.wakers.delete(done); resolve(); };
  const timer = setTimeout(done, ms);
  engine.wakers.add(done);
});

/** The loader of one start: keeps BUFFER_GOAL_S ahead, segment by segment, lays each next queue
 *  entry right after the previous one, and ends the stream after the last. */
async function pump(gen) {
  while (gen === engine.gen) {
    const pl = engine.placements.at(-1);
    const ahead = bufferedAhead();
    if (pl.next < pl.track.segment_durations.length) {
      if (ahead >= engine.goal && !pl.pendingStart) { await waitTick(); continue; }
      const rend = pl.next === pl.first ? pl.rend : chooseRendition(pl.track, pl.rend.bitrate, ahead);
      try {
        await appendSegment(gen, pl, pl.next, rend);
      } catch (e) {
        if (isAbort(e) || gen !== engine.gen) return;
        if (audio.error) return skipBroken(pl);
        if (e.name === 'DecodeError') await cutBroken(gen, pl, pl.next).catch(() => skipBroken(pl));
        else { failed(gen, e); await waitTick(RESUME_AFTER_FAILURE_MS); }
        continue;
      }
      if (gen !== engine.gen) return;
      if (pl.pendingStart) {
        begin(gen, pl);
        // Nothing more until playback has begun (every request costs main-thread time too), unless
        // the next segment may take long to come.
        const est = bandwidth.estimate(), bytes = rend.segment_sizes?.[pl.next] ?? Infinity;
        if ((bytes * 8) / est < bufferedAhead() / 2) await Promise.race([engine.started, sleep(1000)]);
      }
      if (audio.currentTime - (audio.buffered.length ? audio.buffered.start(0) : 0) > BUFFER_BEHIND_S + 5) {
        evict(gen, BUFFER_BEHIND_S).catch(() => {});
      }
      continue;
    }
    const qi = pl.qi + 1;
    if (qi >= engine.queue.length) {
      await sbDo(gen, () => { if (engine.ms.readyState === 'open') engine.ms.endOfStream(); return false; }).catch(() => {});
      return;
    }
    if (ahead >= engine.goal) { await waitTick(); continue; }
    const track = await trackById(engine.queue[qi]).catch((e) => failed(gen, e));
    if (gen !== engine.gen) return;
    if (!track) { await waitTick(RESUME_AFTER_FAILURE_MS); continue; }
    const next = place(track, qi, pl.end, startRendition(track, 0, pl.rend.bitrate, true), 0);
    if (pl.pendingStart) [next.pendingStart, pl.pendingStart] = [{ pos: 0 }, null]; // it was cut before it began
    engine.placements.push(next);
  }
}

/** After the first append of a start: the playhead goes there, and playback begins once the
 *  element can play (play() before that would fire `waiting`). */
function begin(gen, pl) {
  const t = pl.start + pl.pendingStart.pos;
  pl.pendingStart = null;
  if (Math.abs(audio.currentTime - t) > 0.001) audio.currentTime = t;
  if (!engine.playing) return engine.markStarted();
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

function playElement() {
  audio.play().catch((e) => {
    if (isAbort(e)) return; // a pause or a new start came first
    engine.playing = false;
    notify(e.name === 'NotAllowedError' ? 'The browser wants a click before it plays: press play.' : `Could not play: ${e.message}`, e);
  });
}

function failed(gen, e) {
  if (gen !== engine.gen || isAbort(e)) return;
  // One message per outage: the pump keeps retrying quietly.
  if (performance.now() - engine.failedAt > 15000) notify('Could not load the music; retrying…', e);
  engine.failedAt = performance.now();
}

/** The playhead is in `pl` now: the UI's current track, its gain, and a report at a boundary. */
function setCurrent(pl) {
  const previous = engine.current;
  engine.current = pl;
  if (gain.scheduledFor !== pl) gain.apply(trackGain(pl));
  gain.scheduledFor = null;
  if (previous && previous.qi + 1 === pl.qi) engine.report();
  invalidate(true);
}

function onTimeUpdate() {
  if (!engine.placements.length) return;
  const pl = placementAt(audio.currentTime);
  if (pl && pl !== engine.current) setCurrent(pl);
  // The next track's gain is set on the audio clock, at the boundary.
  const next = engine.placements.find((p) => p.qi === engine.current.qi + 1);
  const until = next ? next.start - audio.currentTime : Infinity;
  if (until > 0 && until < 0.6 && gain.scheduledFor !== next && !audio.paused) {
    gain.apply(trackGain(next), until);
    gain.scheduledFor = next;
  }
}

// ---------------------------------------------------------------------------------------------
// Loudness and volume. Normalization goes through a GainNode. Making an AudioContext blocks the
// main thread for tens of milliseconds (the audio device opens), and routing the element into it
// mid-playback stalls the element; so the context is made at boot, before anything plays, never
// on a click's path. The element is routed into it only once it runs (one made without a user
// gesture stays suspended until one, and a suspended graph would silence the element). Until
// then the gain is folded into the element's volume, which can only lower it.

const volume = { user: 1, fallback: 1, update() { audio.volume = clamp(this.user * this.fallback, 0, 1); } };
export const settings = { normalize: true };
const trackGain = (pl) => (settings.normalize ? pl.gain : 1);
const gain = {
  ctx: null, node: null, scheduledFor: null,
  create() {
    if (this.ctx) return;
    try {
      this.ctx = new AudioContext({ latencyHint: 'playback' });
      this.ctx.addEventListener('statechange', () => this.connect());
      this.connect();
    } catch (e) {
      this.ctx = { state: 'unavailable' };
      console.warn('segue: no Web Audio; normalizing with the element volume', e);
    }
  },
  connect() {
    if (this.node || this.ctx?.state !== 'running') return;
    const node = this.ctx.createGain();
    this.ctx.createMediaElementSource(audio).connect(node).connect(this.ctx.destination);
    this.node = node;
    this.apply(engine.current ? trackGain(engine.current) : 1);
  },
  resume() { if (this.ctx?.state === 'suspended') this.ctx.resume().catch(() => {}); },
  /** Sets the gain now, or `inSeconds` from now on the audio clock. */
  apply(value, inSeconds = 0) {
    if (this.node) {
      const g = this.node.gain, now = this.ctx.currentTime;
      g.cancelScheduledValues(now);
      g.setValueAtTime(inSeconds > 0 ? g.value : value, now);
      if (inSeconds > 0) g.setValueAtTime(value, now + inSeconds);
    }
    volume.fallback = this.node ? 1 : Math.min(1, value);
    volume.update();
  },
};

function wireAudio() {
  audio.addEventListener('timeupdate', onTimeUpdate);
  audio.addEventListener('playing', () => engine.markStarted?.());
  audio.addEventListener('seeking', () => {
    gain.scheduledFor = null;
    if (engine.current) gain.apply(trackGain(placementAt(audio.currentTime) ?? engine.current));
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
  bandwidth.init();
  volume.update();
  newMediaSource();
  wireAudio();
}

// What the session uses of the engine besides the exports above.
export { audio, start, position, bufferedAhead, isBuffered, playElement, volume, gain, trackGain, onTimeUpdate };
// What the prefetch (/assets/prefetch.js) uses to lay a preroll.
export { place, appendSegment };
