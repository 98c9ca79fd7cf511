// @ts-check
// segue's player core: the library data, the queue, and the session: playback (./engine.js)
// joined to a shared session over the control channel (docs/control-protocol.md). The view
// (./view.js) renders from getView(), calls `actions`, and hears of changes through `hooks`.
//
// How it fits together:
// - Logic (./logic.js): the pure decisions (ABR, queue arithmetic, the data shapes), tested
//   under node (tests/player/).
// - Bytes (./media.js): the library data and every media file, kept in memory.
// - Engine (./engine.js): gapless MSE playback of a queue on the page's <audio>; the element,
//   the volume and the loudness gain are in ./output.js.
// - Prefetch (./prefetch.js): the server's hints fetched ahead, and a preroll.
// - Control: the WebSocket session. A command is carried out here at once when this device
//   plays (or nobody does) and is sent to the server too; when another device plays, the
//   buttons are a remote and the `state` broadcast drives everything.
// - View: getView() is what to show, from the local engine or from the remote session.

import {
  hooks, storage, notify, invalidate, fetchJson, bandwidth, tracks, prefetched, addTracks, trackById, pageConfig,
} from './media.js';
import { engine, startEngine, start, position, bufferedAhead, isBuffered, playElement, onTimeUpdate } from './engine.js';
import { settings, audio, volume, gain, trackGain } from './output.js';
import { whenHealthy, prefetchFirst, placed, prefetchHints } from './prefetch.js';
import {
  clamp, inQueue, nextTarget, previousTarget, sameQueue, seekTarget, segmentAt, statePosition as positionOf, trackDuration,
} from './logic.js';

/** @typedef {import('./types.js').Track} Track */
/** @typedef {import('./types.js').Rendition} Rendition */
/** @typedef {import('./types.js').SessionState} SessionState */
/** @typedef {import('./types.js').ServerMessage} ServerMessage */
/** @typedef {import('./types.js').ClientMessage} ClientMessage */

// What the view uses of the data layer and the engine.
export { hooks, fetchJson, tracks, prefetched, addTracks, trackById, trackDuration, segmentAt };
export { engine, settings, whenHealthy, prefetchFirst };

const REPORT_EVERY_MS = 2000;

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
  /** @param {number} pos track seconds */
  seek(pos) {
    const pl = engine.current;
    if (!pl) return;
    pos = seekTarget(pos, trackDuration(pl.track));
    if (isBuffered(pl.start + pos) && !pl.pendingStart) audio.currentTime = pl.start + pos;
    else start(engine.queue, pl.qi, pos, engine.playing); // fetches only from the target's segment
  },
  /** @param {number} qi */
  jump(qi) {
    if (!inQueue(qi, engine.queue.length)) return;
    const placed = engine.placements.find((p) => p.qi === qi);
    if (placed && isBuffered(placed.start)) audio.currentTime = placed.start;
    else start(engine.queue, qi, 0, engine.playing);
  },
  next() {
    const pl = engine.current;
    if (!pl) return;
    const to = nextTarget(pl.qi, engine.queue.length);
    if (to.play) local.jump(to.jump);
    else start(engine.queue, to.jump, 0, false); // past the end: back to the start, stopped (as the server does)
  },
  previous() {
    const pl = engine.current;
    if (!pl) return;
    const to = previousTarget(pl.qi, position());
    if ('seek' in to) local.seek(to.seek);
    else local.jump(to.jump);
  },
  /** @param {number} level from 0 to 1 */
  volume(level) { volume.user = level; volume.update(); },
};

// ---------------------------------------------------------------------------------------------
// Control channel (docs/control-protocol.md).

/** The control channel's state and its handlers. */
export const control = {
  /** @type {WebSocket | null} */
  ws: null,
  joined: false,
  /** @type {string | null} this device's id in the session */
  deviceId: null,
  /** @type {SessionState | null} the last `state` */
  state: null,
  stateAt: 0, fresh: false, retryMs: 500, nextId: 1,
  /** Ids of commands carried out here whose `state` has not come back (-> when sent): until then
   *  the server's state is older than local playback and must not drive it.
   *  @type {Map<number, number>} */
  pending: new Map(),
  /** @type {string | null} from boot() */
  session: null,
  /** @type {string | null} from boot() */
  name: null,

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
      ws = this.ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}${path}`, pageConfig.protocol);
    } catch (e) {
      console.warn('segue: no control channel', e);
      return this.dropped();
    }
    /** @type {ClientMessage} */
    const hello = { type: 'hello', device: { name: this.name }, session: this.session };
    ws.onopen = () => ws.send(JSON.stringify(hello));
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
  /** @param {ServerMessage} msg */
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
      if (typeof msg.in_reply_to === 'number') this.pending.delete(msg.in_reply_to); // ours are numbers
      if (msg.code === 'not_active') console.warn('segue: control error', msg);
      else notify(msg.message || msg.code, msg);
    } // other types: a newer server's, ignored
  },
  /** @param {SessionState} s */
  onState(s) {
    Object.assign(this, { state: s, stateAt: performance.now() });
    const oldest = this.pending.keys().next();
    if (!oldest.done) this.pending.delete(oldest.value);
    for (const [id, at] of this.pending) if (performance.now() - at > 5000) this.pending.delete(id);
    const fresh = this.fresh;
    this.fresh = false;
    /** @returns {ClientMessage} */
    const mine = () => ({ type: 'load', tracks: engine.queue, index: engine.current?.qi ?? 0, position: position(), play: true });
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
  /** Sends `msg` (numbered); `appliedHere`: carried out here already. @param {ClientMessage} msg */
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

/** The session's position now: as of the `state`, plus the time since while playing. @param {SessionState} s */
export function statePosition(s) {
  const t = s.track ? tracks.get(s.track) : undefined;
  return positionOf(s, performance.now() - control.stateAt, t ? trackDuration(t) : null);
}

/** This device plays for the session: local playback is made to match its state. @param {SessionState} s */
function matchSession(s) {
  if (!s.queue.length || s.track == null) {
    if (engine.playing) local.pause();
    return;
  }
  const pos = statePosition(s), cur = engine.current;
  // Just past a gapless boundary the server may not have our report yet: one entry behind, at its end, is us.
  const lagging = cur && s.index + 1 === cur.qi && s.playing && pos >= trackDuration(tracks.get(s.track) ?? cur.track) - 2;
  if (!cur || !sameQueue(s.queue, engine.queue) || (s.index !== cur.qi && !lagging)) start(s.queue, s.index, pos, s.playing);
  else if (!lagging) {
    if (Math.abs(position() - pos) > 1 && !audio.ended && !cur.pendingStart) local.seek(pos);
    if (s.playing && !engine.playing && !audio.ended) local.play();
    else if (!s.playing && engine.playing) local.pause();
  }
  if (Math.abs(volume.user - s.volume) > 0.005) local.volume(s.volume);
}

/**
 * A user's command: carried out here at once when this device plays for the session (or nobody
 * plays) and sent to the server; with another device playing, only sent (a remote control).
 * @param {ClientMessage} msg
 * @param {() => void} here
 */
function command(msg, here) {
  const playsHere = control.playsHere();
  if (playsHere) here();
  control.send(msg, playsHere);
  invalidate();
}

// ---------------------------------------------------------------------------------------------
// The view's interface

/**
 * What the view shows.
 * @typedef {object} View
 * @property {readonly string[]} queue the queue's track ids
 * @property {number} index the entry playing (-1: none)
 * @property {Track | null} track its track
 * @property {number} position track seconds
 * @property {boolean} playing whether it plays
 * @property {number} volume from 0 to 1
 * @property {Rendition | null} [rendition] the rendition playing here
 * @property {string} [remote] the name of the device playing elsewhere
 */

/** What to show: the local engine when it plays for the session (or alone), else the remote
 *  session's state. `remote` is the name of the device playing elsewhere. @returns {View} */
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
    queue: s.queue, index: s.track ? s.index : -1, track: (s.track ? tracks.get(s.track) : null) ?? null, position: statePosition(s),
    playing: s.playing, volume: s.volume, remote: s.devices.find((d) => d.id === s.active_device)?.name ?? 'another device',
  };
}

/** @type {ReturnType<typeof setTimeout> | undefined} */
let volumeTimer;
/** What the user can do; each is a command of the protocol, carried out here or remotely. */
export const actions = {
  /** Plays `ids` from the first. @param {string[]} ids */
  playTracks(ids) {
    ids = ids.slice(0, 1000);
    if (ids.length) command({ type: 'load', tracks: ids, index: 0 }, () => start(ids, 0, 0, true));
  },
  togglePlay() {
    const playing = getView().playing;
    command({ type: playing ? 'pause' : 'play' }, playing ? local.pause : local.play);
  },
  /** Seeks to `pos` track seconds. @param {number} pos */
  seek(pos) { command({ type: 'seek', position: pos }, () => local.seek(pos)); },
  next() { command({ type: 'next' }, local.next); },
  previous() { command({ type: 'previous' }, local.previous); },
  /** Plays queue entry `qi` (resuming if paused). @param {number} qi */
  jump(qi) {
    const paused = !getView().playing;
    command({ type: 'jump', index: qi }, () => local.jump(qi));
    if (paused) actions.togglePlay();
  },
  /** Sets the session's volume. @param {number} level from 0 to 1 */
  volume(level) {
    if (control.playsHere()) local.volume(level);
    storage.set('segue.volume', String(level));
    clearTimeout(volumeTimer); // a drag would otherwise spend the command rate limit
    volumeTimer = setTimeout(() => control.send({ type: 'volume', level }, control.playsHere()), 150);
  },
  /** Turns loudness normalization on or off. @param {boolean} on */
  normalize(on) {
    settings.normalize = on;
    storage.set('segue.normalize', on ? '1' : '0');
    if (engine.current) gain.apply(trackGain(engine.current));
  },
  /** Moves playback to device `id`. @param {string} id */
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

/**
 * Starts the core: the engine, the control channel and the audio graph, joining `session` as
 * `device`.
 * @param {{ device: string, session: string }} who
 */
export function boot({ device, session }) {
  Object.assign(control, { name: device, session });
  engine.report = () => control.report();
  const savedVolume = storage.get('segue.volume');
  volume.user = savedVolume == null ? 1 : clamp(Number(savedVolume) || 0, 0, 1);
  settings.normalize = storage.get('segue.normalize') !== '0';
  startEngine();
  setInterval(() => control.report(), REPORT_EVERY_MS);
  control.connect();
  gain.create();
}
