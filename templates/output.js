// @ts-check
// segue's player, the output: the page's <audio> element, the volume and the loudness gain.
// Loudness normalization goes through a GainNode. Making an AudioContext blocks the
// main thread for tens of milliseconds (the audio device opens), and routing the element into it
// mid-playback stalls the element; so the context is made at boot, before anything plays, never
// on a click's path. The element is routed into it only once it runs (one made without a user
// gesture stays suspended until one, and a suspended graph would silence the element). Until
// then the gain is folded into the element's volume, which can only lower it.

import { clamp } from './logic.js';

/** @typedef {import('./types.js').Placement} Placement */

/** The page's media element. */
export const audio = /** @type {HTMLAudioElement} */ (document.querySelector('#audio'));

/** The element's volume: the user's level times the gain folded in without Web Audio. */
export const volume = { user: 1, fallback: 1, update() { audio.volume = clamp(this.user * this.fallback, 0, 1); } };
/** The user's playback settings. */
export const settings = { normalize: true };
/** The gain of `pl` as the settings want it. @param {Placement} pl */
export const trackGain = (pl) => (settings.normalize ? pl.gain : 1);
/** The loudness gain: a GainNode once the audio graph runs, else the element's volume. */
export const gain = {
  /** @type {AudioContext | null} */
  ctx: null,
  /** No Web Audio here: the element's volume does it all. */
  unavailable: false,
  /** @type {GainNode | null} */
  node: null,
  /** @type {Placement | null} the placement whose gain is scheduled at its start */
  scheduledFor: null,
  /** The gain the playhead's track wants now (set by the engine). @type {() => number} */
  current: () => 1,
  create() {
    if (this.ctx || this.unavailable) return;
    try {
      const ctx = (this.ctx = new AudioContext({ latencyHint: 'playback' }));
      ctx.addEventListener('statechange', () => this.connect());
      this.connect();
    } catch (e) {
      this.unavailable = true;
      console.warn('segue: no Web Audio; normalizing with the element volume', e);
    }
  },
  connect() {
    const ctx = this.ctx;
    if (this.node || !ctx || ctx.state !== 'running') return;
    const node = ctx.createGain();
    ctx.createMediaElementSource(audio).connect(node).connect(ctx.destination);
    this.node = node;
    this.apply(this.current());
  },
  resume() { if (this.ctx?.state === 'suspended') this.ctx.resume().catch(() => {}); },
  /** Sets the gain now, or `inSeconds` from now on the audio clock. @param {number} value @param {number} [inSeconds] */
  apply(value, inSeconds = 0) {
    if (this.node && this.ctx) {
      const g = this.node.gain, now = this.ctx.currentTime;
      g.cancelScheduledValues(now);
      g.setValueAtTime(inSeconds > 0 ? g.value : value, now);
      if (inSeconds > 0) g.setValueAtTime(value, now + inSeconds);
    }
    volume.fallback = this.node ? 1 : Math.min(1, value);
    volume.update();
  },
};


