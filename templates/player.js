// segue's player core: the library data, the queue, and gapless playback of segue's CMAF
// renditions through Media Source Extensions, joined to a shared session over the control
// channel (docs/control-protocol.md). It drives the page's <audio id="audio"> and nothing else
// of the DOM: the view (/assets/view.js) renders from getView(), calls
// `actions`, and hears of changes through `hooks`.
//
// How it fits together:
// - Bytes (/assets/media.js): every media file goes through getBytes(), which keeps what it
//   fetched (and what the server hinted) in an in-memory map, shares one request among all who
//   want a URL, retries, and measures throughput for ABR.
// - Engine: one MediaSource with one SourceBuffer. Each queue entry is laid on one continuous
//   timeline (a "placement"): its real audio starts where the previous one's ended, and the
//   append window cuts the encoder priming and padding, so tracks join without a gap. A start
//   (click, seek outside the buffer, remote command) flushes and lays a fresh timeline from 0;
//   the pump then keeps ~25 s buffered ahead, choosing a rendition per segment.
// - Control: the WebSocket session. A command is carried out here at once when this device
//   plays (or nobody does) and is sent to the server too; when another device plays, the
//   buttons are a remote and the `state` broadcast drives everything.
// - View: getView() is what to show, from the local engine or from the remote session.

import {
  hooks, sleep, isAbort, clamp, storage, notify, invalidate, fetchJson, bandwidth, haveBytes, getBytes,
  tracks, prefetched, addTracks, trackById, segUrl, trackDuration, segEdges, segmentAt, peakBitrate,
  normalizationGain,
} from '/assets/media.js';

// What the view uses of the data layer.
export { hooks, fetchJson, tracks, prefetched, addTracks, trackById, trackDuration, segmentAt };

const PREFETCH_TRACKS = 3;
const BUFFER_GOAL_S = 25;
const BUFFER_BEHIND_S = 10; // kept behind the playhead for quick small seeks back
const UPSWITCH_MIN_BUFFER_S = 8;
const UPSWITCH_MARGIN = 1.25; // an upswitch needs this much headroom, so an estimate at a threshold does not flap
const ABR_SHARE = 0.5; // a rendition's peak bitrate may use this share of the throughput (as in the server's hints)
const REPORT_EVERY_MS = 2000;
const RESUME_AFTER_FAILURE_MS = 4000;
const PROTOCOL = 'segue.control.v1';

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
  if (previous && previous.qi + 1 === pl.qi) control.report();
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

// What this device does when it plays for itself or for the session.
const local = {
  play() {
    const cur = engine.current, s = control.state;
    if (!cur) {
      if (s?.queue.length) start(s.queue, s.index, statePosition(s), true);
    } else if (audio.ended) {
      start(engine.queue, cur.qi, 0, true); // a finished queue plays its last track again
    } else {
      engine.playing = true;
      if (!cur.pendingStart) playElement();
    }
  },
  pause() { engine.playing = false; audio.pause(); },
  seek(pos) {
    const pl = engine.current;
    if (!pl) return;
    pos = clamp(pos, 0, Math.max(0, trackDuration(pl.track) - 0.05));
    if (isBuffered(pl.start + pos) && !pl.pendingStart) audio.currentTime = pl.start + pos;
    else start(engine.queue, pl.qi, pos, engine.playing); // fetches only from the target's segment
  },
  jump(qi) {
    if (qi < 0 || qi >= engine.queue.length) return;
    const placed = engine.placements.find((p) => p.qi === qi);
    if (placed && isBuffered(placed.start)) audio.currentTime = placed.start;
    else start(engine.queue, qi, 0, engine.playing);
  },
  next() {
    const pl = engine.current;
    if (pl && pl.qi + 1 < engine.queue.length) local.jump(pl.qi + 1);
    else if (pl) start(engine.queue, 0, 0, false); // past the end: back to the start, stopped (as the server does)
  },
  previous() {
    const pl = engine.current;
    if (pl && (position() > 3 || pl.qi === 0)) local.seek(0);
    else if (pl) local.jump(pl.qi - 1);
  },
  volume(level) { volume.user = level; volume.update(); },
};

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

// ---------------------------------------------------------------------------------------------
// Control channel (docs/control-protocol.md).

export const control = {
  ws: null, joined: false, deviceId: null, state: null, stateAt: 0, fresh: false, retryMs: 500, nextId: 1,
  // Ids of commands carried out here whose `state` has not come back: until then the server's
  // state is older than local playback and must not drive it.
  pending: new Map(),
  session: null, name: null, // from boot()

  async connect() {
    hooks.ws('connecting');
    // The server says where the socket is: `/ws`, or a signed `/t/TOKEN/ws` when it signs URLs
    // (asked again on every reconnect, so an expired token is renewed).
    let path = '/ws';
    try {
      path = (await fetchJson('/api/control')).ws || path;
    } catch (e) {
      console.warn('segue: /api/control unavailable, trying /ws', e);
    }
    let ws;
    try {
      ws = this.ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}${path}`, PROTOCOL);
    } catch (e) {
      console.warn('segue: no control channel', e);
      return this.dropped();
    }
    ws.onopen = () => ws.send(JSON.stringify({ type: 'hello', device: { name: this.name }, session: this.session }));
    ws.onmessage = (ev) => {
      try { this.receive(JSON.parse(ev.data)); } catch (e) { console.warn('segue: bad control message', ev.data, e); }
    };
    ws.onclose = () => { if (this.ws === ws) this.dropped(); };
    ws.onerror = () => {}; // `close` follows
  },
  dropped() {
    Object.assign(this, { ws: null, joined: false, state: null });
    this.pending.clear();
    hooks.ws('closed');
    setTimeout(() => this.connect(), this.retryMs * (0.8 + Math.random() * 0.4));
    this.retryMs = Math.min(this.retryMs * 2, 15000);
    invalidate(true);
  },
  receive(msg) {
    if (msg.type === 'welcome') {
      Object.assign(this, { joined: true, deviceId: msg.device, fresh: true, retryMs: 500 });
      hooks.ws('open');
    } else if (msg.type === 'state') {
      this.onState(msg);
    } else if (msg.type === 'prefetch') {
      // Skipped when the pump has that track on the timeline already.
      if (!placed(msg.hint)) whenHealthy().then(() => placed(msg.hint) || prefetchHints([msg.hint]));
    } else if (msg.type === 'library') {
      addTracks(msg.added ?? []);
      hooks.libraryAdded(msg.added ?? []);
    } else if (msg.type === 'error') {
      this.pending.delete(msg.in_reply_to);
      if (msg.code === 'not_active') console.warn('segue: control error', msg);
      else notify(msg.message || msg.code, msg);
    } // other types: a newer server's, ignored
  },
  onState(s) {
    Object.assign(this, { state: s, stateAt: performance.now() });
    const oldest = this.pending.keys().next();
    if (!oldest.done) this.pending.delete(oldest.value);
    for (const [id, at] of this.pending) if (performance.now() - at > 5000) this.pending.delete(id);
    const fresh = this.fresh;
    this.fresh = false;
    const mine = () => ({ type: 'load', tracks: engine.queue, index: engine.current.qi, position: position(), play: true });
    if (s.active_device === this.deviceId) {
      if (!this.pending.size) matchSession(s);
    } else if (fresh && engine.playing && engine.current) {
      // (Re)joined while playing here: this playback is the session's (the latest action wins).
      if (s.active_device != null) this.send({ type: 'transfer' }, true);
      this.send(mine(), true);
    } else if (s.active_device != null && (engine.playing || !audio.paused)) {
      local.pause(); // another device plays now: playback was moved away from here
    }
    invalidate(true);
  },
  isActive() { return this.joined && this.state?.active_device === this.deviceId; },
  /** Whether a command is carried out here: this device plays, or nobody does. */
  playsHere() { return !this.joined || !this.state || this.state.active_device == null || this.isActive(); },
  send(msg, appliedHere = false) {
    if (!this.joined || this.ws?.readyState !== WebSocket.OPEN) return;
    msg.id = this.nextId++;
    if (appliedHere) this.pending.set(msg.id, performance.now());
    this.ws.send(JSON.stringify(msg));
  },
  report() {
    if (!this.isActive() || !engine.current || this.pending.size) return;
    this.send({
      type: 'report', index: engine.current.qi, position: position(), playing: engine.playing && !audio.ended,
      buffered: bufferedAhead(), bandwidth: Math.round(bandwidth.estimate() ?? 0) || undefined,
    });
  },
};

/** The session's position now: as of the `state`, plus the time since while playing. */
export function statePosition(s) {
  const t = s.track && tracks.get(s.track);
  const p = s.position + (s.playing ? (performance.now() - control.stateAt) / 1000 : 0);
  return t ? Math.min(p, trackDuration(t)) : p;
}

/** This device plays for the session: local playback is made to match its state. */
function matchSession(s) {
  if (!s.queue.length || s.track == null) return engine.playing && local.pause();
  const pos = statePosition(s), cur = engine.current;
  const sameQueue = s.queue.length === engine.queue.length && s.queue.every((id, i) => id === engine.queue[i]);
  // Just past a gapless boundary the server may not have our report yet: one entry behind, at its end, is us.
  const lagging = cur && s.index + 1 === cur.qi && s.playing && pos >= trackDuration(tracks.get(s.track) ?? cur.track) - 2;
  if (!cur || !sameQueue || (s.index !== cur.qi && !lagging)) start(s.queue, s.index, pos, s.playing);
  else if (!lagging) {
    if (Math.abs(position() - pos) > 1 && !audio.ended && !cur.pendingStart) local.seek(pos);
    if (s.playing && !engine.playing && !audio.ended) local.play();
    else if (!s.playing && engine.playing) local.pause();
  }
  if (Math.abs(volume.user - s.volume) > 0.005) local.volume(s.volume);
}

/** A user's command: carried out here at once when this device plays for the session (or nobody
 *  plays) and sent to the server; with another device playing, only sent (a remote control). */
function command(msg, here) {
  const playsHere = control.playsHere();
  if (playsHere) here();
  control.send(msg, playsHere);
  invalidate();
}

// ---------------------------------------------------------------------------------------------
// Prefetch: the server's hints (GET /api/prefetch, `prefetch` messages) fetched into memory.

const placed = (hint) => engine.placements.some((p) => p.track.id === hint?.track);

/** Resolves once the track playing has enough buffered that other requests (the next track's
 *  bytes, a waveform, covers) cannot starve it: a track's start is when its buffer is thinnest. */
export async function whenHealthy() {
  await engine.started;
  for (let i = 0; i < 60; i++) {
    const pl = engine.placements.at(-1);
    if (!pl || !engine.playing || bufferedAhead() >= UPSWITCH_MIN_BUFFER_S || pl.next >= pl.track.segment_durations.length) return;
    await sleep(500);
  }
}

function prefetchHints(hints) {
  for (const h of hints ?? []) {
    if (!h?.init) continue;
    Promise.all([h.init, ...h.segments].map((f) => getBytes(f.url, { keep: true }))).then(() => {
      prefetched.add(h.track);
      hooks.prefetched(h.track);
    }, (e) => console.warn('segue: prefetch failed', h.track, e));
  }
}

/** Prepares the element with the start of the track a click is likeliest to start (the first of
 *  the list): its init and first segment, appended as its start would (a preroll). Chromium
 *  builds its demuxer and decoder as the first media comes in, tens of milliseconds that would
 *  otherwise come after the click; a start of another track removes the preroll. */
async function warmUp(hint) {
  const gen = engine.gen;
  try {
    const track = await trackById(hint.track);
    const rend = track.renditions.find((r) => r.init === hint.init.url);
    if (gen !== engine.gen || engine.sb || !rend || hint.segments[0]?.number !== 1) return;
    const pl = place(track, 0, 0, rend, 0);
    await appendSegment(gen, pl, 0, rend);
    if (gen === engine.gen && pl.next === 1) engine.preroll = pl;
  } catch (e) {
    console.warn('segue: could not prepare the player', e);
  }
}

/** Load-time prefetch of the first tracks of the list (`ids`), and the pipeline warmed up with the
 *  first. */
export async function prefetchFirst(ids) {
  ids = ids.slice(0, PREFETCH_TRACKS).filter((id) => !prefetched.has(id));
  if (!ids.length) return;
  const est = bandwidth.estimate();
  try {
    const { hints } = await fetchJson(`/api/prefetch?tracks=${ids.join(',')}${est ? `&bandwidth=${Math.round(est)}` : ''}`);
    prefetchHints(hints);
    if (hints?.[0]?.track === ids[0]) warmUp(hints[0]);
  } catch (e) {
    console.warn('segue: no prefetch hints', e);
  }
}

// ---------------------------------------------------------------------------------------------
// The view's interface

/** What to show: the local engine when it plays for the session (or alone), else the remote
 *  session's state. `remote` is the name of the device playing elsewhere. */
export function getView() {
  const s = control.state;
  if (control.playsHere() || !s) {
    const pl = engine.current;
    return {
      queue: engine.queue, index: pl?.qi ?? -1, track: pl?.track ?? null, position: position(), playing: engine.playing,
      volume: volume.user, rendition: pl && (pl.segRend[segmentAt(pl.track, position())] ?? pl.rend),
    };
  }
  return {
    queue: s.queue, index: s.track ? s.index : -1, track: (s.track && tracks.get(s.track)) ?? null, position: statePosition(s),
    playing: s.playing, volume: s.volume, remote: s.devices.find((d) => d.id === s.active_device)?.name ?? 'another device',
  };
}

let volumeTimer;
/** What the user can do; each is a command of the protocol, carried out here or remotely. */
export const actions = {
  /** Plays `ids` from the first. */
  playTracks(ids) {
    ids = ids.slice(0, 1000);
    if (ids.length) command({ type: 'load', tracks: ids, index: 0 }, () => start(ids, 0, 0, true));
  },
  togglePlay() {
    const playing = getView().playing;
    command({ type: playing ? 'pause' : 'play' }, playing ? local.pause : local.play);
  },
  seek(pos) { command({ type: 'seek', position: pos }, () => local.seek(pos)); },
  next() { command({ type: 'next' }, local.next); },
  previous() { command({ type: 'previous' }, local.previous); },
  /** Plays queue entry `qi` (resuming if paused). */
  jump(qi) {
    const paused = !getView().playing;
    command({ type: 'jump', index: qi }, () => local.jump(qi));
    if (paused) actions.togglePlay();
  },
  volume(level) {
    if (control.playsHere()) local.volume(level);
    storage.set('segue.volume', String(level));
    clearTimeout(volumeTimer); // a drag would otherwise spend the command rate limit
    volumeTimer = setTimeout(() => control.send({ type: 'volume', level }, control.playsHere()), 150);
  },
  normalize(on) {
    settings.normalize = on;
    storage.set('segue.normalize', on ? '1' : '0');
    if (engine.current) gain.apply(trackGain(engine.current));
  },
  /** Moves playback to device `id`. */
  transfer(id) { control.send({ type: 'transfer', device: id }); },
  /** Moves playback here: with nobody playing, that means play; else it stays playing or paused. */
  playHere() {
    if (!control.joined) return local.play();
    control.send(control.state?.active_device == null ? { type: 'transfer', play: true } : { type: 'transfer' });
  },
  /** A user gesture: a suspended AudioContext may resume now. */
  gesture() { gain.resume(); },
};

/** Moves the current track on when the playhead crosses a boundary; the view calls it every
 *  frame too, so the UI flips at once. */
export const tick = onTimeUpdate;

function wireAudio() {
  audio.addEventListener('timeupdate', onTimeUpdate);
  audio.addEventListener('playing', () => engine.markStarted?.());
  audio.addEventListener('seeking', () => {
    gain.scheduledFor = null;
    if (engine.current) gain.apply(trackGain(placementAt(audio.currentTime) ?? engine.current));
  });
  audio.addEventListener('seeked', () => { onTimeUpdate(); [...engine.wakers].forEach((w) => w()); });
  audio.addEventListener('ended', () => { engine.playing = false; control.report(); invalidate(); });
  // Paused from outside the page (a system media key, headphones pulled out); a start's own
  // pauses (a new MediaSource pauses the element) are not the user's.
  audio.addEventListener('pause', () => {
    if (engine.starting || !engine.playing || audio.ended) return;
    engine.playing = false;
    control.report();
  });
  audio.addEventListener('error', () => { if (engine.current && audio.error) skipBroken(engine.current); });
  setInterval(onTimeUpdate, 250); // a boundary must not wait for a frame (none come to a background tab)
  setInterval(() => control.report(), REPORT_EVERY_MS);
}

/** Starts the core: the MediaSource, the audio graph and the control channel, joining `session`
 *  as `device`. */
export function boot({ device, session }) {
  Object.assign(control, { name: device, session });
  bandwidth.init();
  const savedVolume = storage.get('segue.volume');
  volume.user = savedVolume == null ? 1 : clamp(Number(savedVolume) || 0, 0, 1);
  settings.normalize = storage.get('segue.normalize') !== '0';
  volume.update();
  newMediaSource();
  wireAudio();
  control.connect();
  gain.create();
}
