// @ts-check
// The view: renders the page from the player core (./player.js) and turns input into its
// actions. It paints once per animation frame and never on a start's critical path: the core
// only asks for a paint (hooks.changed). What it computes (times, initials, bar heights, key
// steps) is in ./format.js.
import * as core from './player.js';
import { clamp } from './logic.js';
import {
  barHeight, describeDevice, fmtTime, hueOf, initials, isSessionName, seekKeyTarget, waveformPeaks,
} from './format.js';

/** @typedef {import('./types.js').Track} Track */
/** @typedef {import('./player.js').View} View */

/**
 * The element `#id` of index.html, of the kind the view expects (a page without it is a broken
 * build: thrown at load).
 * @template {HTMLElement} T
 * @param {string} id
 * @param {{ new (): T, prototype: T }} kind
 * @returns {T}
 */
function byId(id, kind) {
  const node = document.getElementById(id);
  if (!(node instanceof kind)) throw new TypeError(`segue: the page has no #${id} of the expected kind`);
  return node;
}
const params = new URLSearchParams(location.search);
const ui = {
  tracks: byId('tracks', HTMLOListElement), libraryStatus: byId('library-status', HTMLElement),
  search: byId('search', HTMLInputElement), queue: byId('queue', HTMLOListElement),
  queueEmpty: byId('queue-empty', HTMLElement), devices: byId('devices', HTMLUListElement),
  playHere: byId('play-here', HTMLButtonElement), wsState: byId('ws-state', HTMLElement),
  nowCover: byId('now-cover', HTMLElement), nowTitle: byId('now-title', HTMLElement),
  nowArtist: byId('now-artist', HTMLElement), nowDevice: byId('now-device', HTMLElement),
  playPause: byId('play-pause', HTMLButtonElement), prev: byId('prev', HTMLButtonElement),
  next: byId('next', HTMLButtonElement), seek: byId('seek', HTMLCanvasElement), position: byId('position', HTMLElement),
  duration: byId('duration', HTMLElement), volume: byId('volume', HTMLInputElement),
  normalize: byId('normalize', HTMLInputElement), rendition: byId('rendition', HTMLElement),
  messages: byId('messages', HTMLElement), audio: byId('audio', HTMLAudioElement),
};

// Measurement mode (?prefetch=off): nothing of any track is fetched before it is asked for, so a
// click measures a truly cold start (covers wait for the first `playing` too).
const prefetchOnLoad = params.get('prefetch') !== 'off';
let coversOn = prefetchOnLoad;
const QUIET_START_MS = 250;

/**
 * A new element: `attrs` are attributes (true: present, null/false: absent), except `class` and
 * `text` (its text content).
 * @param {string} tag
 * @param {Record<string, string | number | boolean | null | undefined>} [attrs]
 * @param {...(Node | string | null | undefined)} children
 */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k === 'class') node.className = String(v);
    else if (k === 'text') node.textContent = String(v);
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  node.append(...children.filter((c) => c != null));
  return node;
}

/** The device name in the session: ?device=NAME, else the browser and system. */
function deviceName() {
  const asked = params.get('device')?.trim();
  if (asked) return asked.slice(0, 64);
  const uaData = /** @type {{ userAgentData?: { brands?: { brand: string }[] } }} */ (navigator).userAgentData;
  return describeDevice(navigator.userAgent, (uaData?.brands ?? []).map((b) => b.brand));
}

/** ?session=NAME, else a random one (128 bits: session names are capabilities) kept in
 *  localStorage, so that the tabs of a browser join one session
 *  (as Spotify Connect's devices of one account do). */
function sessionName() {
  const asked = params.get('session');
  if (isSessionName(asked)) return /** @type {string} */ (asked);
  /** @type {string | null} */
  let s = null;
  try { s = localStorage.getItem('segue.session'); } catch { /* storage off */ }
  if (s == null || !isSessionName(s)) {
    s = 's' + [...crypto.getRandomValues(new Uint8Array(16))].map((b) => b.toString(16).padStart(2, '0')).join('');
    try { localStorage.setItem('segue.session', s); } catch { /* storage off: a session per page */ }
  }
  return s;
}

/** Shows a message for a few seconds (the three latest at most). @param {string} text */
function notify(text) {
  const item = el('div', { class: 'message', text });
  ui.messages.append(item);
  setTimeout(() => item.remove(), 6000);
  while (ui.messages.childElementCount > 3) ui.messages.firstElementChild?.remove();
}

// ---------------------------------------------------------------------------------------------
// Library

/** The tracks listed, and the number of the latest search (a newer one wins). */
const library = { listed: /** @type {Track[]} */ ([]), seq: 0 };
/** Lists the library's tracks that match `q` (all when empty). */
async function loadLibrary(q = ui.search.value.trim()) {
  const seq = ++library.seq;
  try {
    /** @type {import('./types.js').TrackList} */
    const page = await core.fetchJson(`/api/tracks?limit=500${q ? `&q=${encodeURIComponent(q)}` : ''}`);
    if (seq !== library.seq) return; // a newer search won
    core.addTracks(page.tracks);
    library.listed = page.tracks;
    ui.libraryStatus.textContent = q ? `${page.total} found` : `${page.total} track${page.total === 1 ? '' : 's'}`;
    renderLibrary();
  } catch (e) {
    if (seq !== library.seq) return;
    ui.libraryStatus.textContent = 'Could not load the library.';
    notify('Could not load the library.');
    console.warn('segue: could not load the library', e);
  }
}

/** The cover of `track`, or its initials on a colour. @param {Track} track */
function coverArt(track) {
  if (track.cover && coversOn) return el('img', { src: track.cover, alt: '', loading: 'lazy', decoding: 'async' });
  // No cover: initials on a colour taken from the album, so that an album's tracks look alike.
  const key = track.album || track.title || '?';
  const span = el('span', { class: 'art', text: initials(key) });
  span.style.setProperty('--hue', String(hueOf(key)));
  return span;
}

/**
 * A row of the library or the queue.
 * @param {Track | undefined} t the track (undefined while it loads)
 * @param {Record<string, string | number | boolean | null | undefined>} attrs the row's attributes
 * @param {string} label the button's accessible name
 * @param {Node} lead what comes first (a cover, a number)
 */
function trackRow(t, attrs, label, lead) {
  return el('li', attrs, el('button', { type: 'button', class: 'row', 'aria-label': label }, lead,
    el('span', { class: 'meta' }, el('span', { class: 'title', text: t?.title ?? '…' }), el('span', { class: 'sub muted', text: t ? [t.artist, t.album].filter(Boolean).join(' · ') : '' })),
    el('span', { class: 'dur muted', text: t ? fmtTime(t.duration) : '' })));
}

/** Lists `library.listed`. */
function renderLibrary() {
  ui.tracks.replaceChildren(...library.listed.map((t) => trackRow(t, { 'data-track-id': t.id, 'data-prefetched': core.prefetched.has(t.id) && 'true' },
    `Play ${t.title}${t.artist ? ` by ${t.artist}` : ''}`, el('span', { class: 'cover' }, coverArt(t)))));
  if (!library.listed.length) ui.tracks.append(el('li', { class: 'muted empty-note', text: 'No tracks.' }));
  invalidate(true);
}

// ---------------------------------------------------------------------------------------------
// Painting

/** What the last paint showed. @type {Partial<View>} */
let shown = {};
let wanted = 0; // 1: the playhead and such, 2: everything
/** Asks for a paint at the next frame (`full`: more than the playhead). */
const invalidate = (full = false) => { wanted = Math.max(wanted, full ? 2 : 1); };

/** Paints what changed; false when it must wait. @param {boolean} full */
function paint(full) {
  const v = core.getView(), t = v.track;
  // Nothing is painted during the first moments of a start here: the frame after a click would
  // hold up the media events that start playback (Chromium runs the `play` task after it), and
  // the music starting is the feedback the user waits for. Bounded, so a slow start still shows.
  if (core.engine.starting && !v.remote && performance.now() - core.engine.startAt < QUIET_START_MS) return false;
  const changed = full || shown.track !== t || shown.remote !== v.remote;
  if (changed) {
    ui.nowTitle.textContent = t ? t.title : 'Nothing playing';
    ui.nowArtist.textContent = t ? [t.artist, t.album].filter(Boolean).join(' · ') : '';
    ui.nowDevice.hidden = !v.remote;
    ui.nowDevice.textContent = v.remote ? `Playing on ${v.remote}` : '';
    ui.duration.textContent = fmtTime(t ? core.trackDuration(t) : 0);
    ui.seek.setAttribute('aria-valuemax', String(Math.round(t ? core.trackDuration(t) : 0)));
    ui.tracks.querySelector('[aria-current]')?.removeAttribute('aria-current');
    if (t) ui.tracks.querySelector(`[data-track-id="${CSS.escape(t.id)}"]`)?.setAttribute('aria-current', 'true');
    const coverKey = `${t?.id}|${coversOn}`;
    if (ui.nowCover.dataset.key !== coverKey) {
      ui.nowCover.dataset.key = coverKey;
      ui.nowCover.replaceChildren(...(t ? [coverArt(t)] : []));
    }
    if (t) waveform(t);
    renderQueue(v);
    renderDevices();
    mediaSession(t);
  } else if (shown.index !== v.index || shown.queue !== v.queue) renderQueue(v);
  if (shown.playing !== v.playing) {
    ui.playPause.classList.toggle('playing', v.playing);
    ui.playPause.setAttribute('aria-label', v.playing ? 'Pause' : 'Play');
    if ('mediaSession' in navigator) navigator.mediaSession.playbackState = v.playing ? 'playing' : 'paused';
  }
  const pos = fmtTime(v.position);
  if (ui.position.textContent !== pos) {
    ui.position.textContent = pos;
    ui.seek.setAttribute('aria-valuenow', String(Math.round(v.position)));
    ui.seek.setAttribute('aria-valuetext', `${pos} of ${ui.duration.textContent}`);
  }
  const rend = v.rendition ? v.rendition.id : v.remote ? 'remote' : '—';
  if (ui.rendition.textContent !== rend) {
    ui.rendition.textContent = rend;
    ui.rendition.title = v.rendition ? `${v.rendition.codec}, ${Math.round(v.rendition.bitrate / 1000)} kbit/s` : '';
  }
  // The slider follows the session's volume, except under the user's hand.
  if (shown.volume !== v.volume && document.activeElement !== ui.volume) ui.volume.value = String(v.volume);
  shown = v;
  drawSeek(v);
  return true;
}

/** Lists the queue of `v`. @param {View} v */
function renderQueue(v) {
  ui.queue.replaceChildren(...v.queue.map((id, i) => {
    const t = core.tracks.get(id);
    if (!t) core.trackById(id).then(() => invalidate(true), () => {});
    return trackRow(t, { 'data-queue-index': i, 'aria-current': i === v.index && 'true', class: i < v.index && 'played' },
      `Play ${t?.title ?? 'track'} from the queue`, el('span', { class: 'qnum muted', text: String(i + 1) }));
  }));
  ui.queueEmpty.hidden = v.queue.length > 0;
}

/** Lists the session's devices. */
function renderDevices() {
  const { state: s, joined, deviceId } = core.control, devices = joined && s ? s.devices : [];
  ui.devices.replaceChildren(...devices.map((d) => {
    const self = d.id === deviceId, active = d.id === s?.active_device;
    return el('li', { 'data-device-id': d.id, 'data-active': String(active), 'data-self': self && 'true' },
      el('span', { class: 'device-icon', 'aria-hidden': 'true', text: active ? '♪' : '▭' }),
      el('span', { class: 'device-name' }, d.name, self ? el('small', { class: 'muted', text: 'this device' }) : null),
      el('button', { type: 'button', class: 'chip small', 'data-action': 'transfer', 'aria-label': `Play on ${d.name}`, disabled: active, text: active ? 'Playing' : 'Play here' }));
  }));
  if (!devices.length) ui.devices.append(el('li', { class: 'muted empty-note', text: joined ? 'No devices.' : 'Not connected.' }));
}

/** The system's now-playing metadata. @param {Track | null} t */
function mediaSession(t) {
  if (!('mediaSession' in navigator) || !t) return;
  navigator.mediaSession.metadata = new MediaMetadata({ title: t.title, artist: t.artist ?? '', album: t.album ?? '',
    artwork: t.cover ? [{ src: new URL(t.cover, location.href).href }] : [] });
}

// The seek bar: the track's waveform peaks, the played part in the accent colour.

/** Track id -> peaks (0-1), or 'loading' or 'none'. @type {Map<string, Float32Array | 'loading' | 'none'>} */
const waveforms = new Map();
/** Fetches the waveform of `t` once the playback is healthy (once per track). @param {Track} t */
function waveform(t) {
  if (waveforms.has(t.id) || !t.waveform) return;
  waveforms.set(t.id, 'loading');
  core.whenHealthy().then(() => core.fetchJson(t.waveform)).then((w) => {
    waveforms.set(t.id, waveformPeaks(w));
    invalidate(true);
  }, (e) => { waveforms.set(t.id, 'none'); console.warn('segue: no waveform', e); });
}

/**
 * The seek bar's state: a drag or a hover under way (0-1 of the track), what was drawn last, the
 * colours and the size (CSS pixels).
 * @type {{ drag: number | null, hover: number | null, drawn: string, colors: string[] | null, width: number, height: number }}
 */
const seekState = { drag: null, hover: null, drawn: '', colors: null, width: 0, height: 0 };
/** Draws the seek bar for `v` (only when a bar changes colour). @param {View} v */
function drawSeek(v) {
  const c = ui.seek, dpr = devicePixelRatio || 1;
  // The size comes from a ResizeObserver: reading it here would force a layout every frame.
  const w = Math.round(seekState.width * dpr), h = Math.round(seekState.height * dpr);
  if (!w || !h) return;
  const bar = 2 * dpr, gap = dpr, n = Math.max(1, Math.floor(w / (bar + gap)));
  const dur = v.track ? core.trackDuration(v.track) : 0;
  const played = Math.round((seekState.drag ?? (dur ? clamp(v.position / dur, 0, 1) : 0)) * n);
  const hover = seekState.hover == null ? -1 : Math.round(seekState.hover * n);
  const peaks = v.track ? waveforms.get(v.track.id) : null;
  const key = `${w}x${h}|${v.track?.id}|${played}|${hover}|${typeof peaks}`;
  if (key === seekState.drawn) return; // redrawn only when a bar changes colour
  seekState.drawn = key;
  if (c.width !== w || c.height !== h) [c.width, c.height] = [w, h];
  const colors = (seekState.colors ??= ['--accent', '--wave-hover', '--wave'].map((name) => getComputedStyle(c).getPropertyValue(name).trim()));
  const g = c.getContext('2d');
  if (!g) return;
  g.clearRect(0, 0, w, h);
  for (let i = 0; i < n; i++) {
    const p = barHeight(peaks instanceof Float32Array ? peaks : null, i, n);
    const bh = Math.max(dpr, p * h * 0.92);
    g.fillStyle = colors[i < played ? 0 : i < hover ? 1 : 2];
    g.fillRect(i * (bar + gap), (h - bh) / 2, bar, bh);
  }
}

// ---------------------------------------------------------------------------------------------
// Input

const { actions } = core;
/** Play/pause; with nothing anywhere to resume, plays the list. */
function togglePlay() {
  const v = core.getView();
  // Nothing anywhere to resume: play the list.
  if (!v.track && !v.queue.length) actions.playTracks(library.listed.map((t) => t.id));
  else actions.togglePlay();
}

/**
 * The nearest element from an event's target up that matches `selector`.
 * @param {Event} e
 * @param {string} selector
 * @returns {HTMLElement | null}
 */
const closest = (e, selector) => (e.target instanceof Element ? e.target.closest(selector) : null);

/** The listeners of the page's controls. */
function wireInput() {
  for (const type of ['pointerdown', 'keydown']) addEventListener(type, () => actions.gesture(), { capture: true });
  ui.tracks.addEventListener('click', (e) => {
    const i = library.listed.findIndex((t) => t.id === closest(e, '[data-track-id]')?.dataset.trackId);
    if (i >= 0) actions.playTracks(library.listed.slice(i).map((t) => t.id)); // the track, then the rest of the list
  });
  ui.queue.addEventListener('click', (e) => {
    const item = closest(e, '[data-queue-index]');
    if (item) actions.jump(Number(item.dataset.queueIndex));
  });
  ui.playPause.addEventListener('click', togglePlay);
  ui.next.addEventListener('click', actions.next);
  ui.prev.addEventListener('click', actions.previous);
  ui.volume.addEventListener('input', () => actions.volume(Number(ui.volume.value)));
  ui.normalize.addEventListener('change', () => actions.normalize(ui.normalize.checked));
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let searchTimer;
  ui.search.addEventListener('input', () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => loadLibrary(), 150);
  });
  ui.devices.addEventListener('click', (e) => {
    const device = closest(e, '[data-action="transfer"]') && closest(e, '[data-device-id]')?.dataset.deviceId;
    if (device) actions.transfer(device);
  });
  ui.playHere.addEventListener('click', actions.playHere);

  const seek = ui.seek, at = (/** @type {PointerEvent} */ e) => { const r = seek.getBoundingClientRect(); return clamp((e.clientX - r.left) / r.width, 0, 1); };
  new ResizeObserver(([entry]) => {
    ({ inlineSize: seekState.width, blockSize: seekState.height } = entry.contentBoxSize[0]);
  }).observe(seek);
  seek.addEventListener('pointerdown', (e) => {
    if (!core.getView().track) return;
    seek.setPointerCapture(e.pointerId);
    seekState.drag = at(e);
  });
  seek.addEventListener('pointermove', (e) => { if (seekState.drag != null) seekState.drag = at(e); else seekState.hover = at(e); });
  seek.addEventListener('pointerleave', () => { seekState.hover = null; });
  const release = (/** @type {boolean} */ commit) => (/** @type {PointerEvent} */ e) => {
    if (seekState.drag == null) return;
    seekState.drag = null;
    const t = core.getView().track;
    if (commit && t) actions.seek(at(e) * core.trackDuration(t));
  };
  seek.addEventListener('pointerup', release(true));
  seek.addEventListener('pointercancel', release(false));
  seek.addEventListener('keydown', (e) => {
    const v = core.getView();
    const pos = v.track ? seekKeyTarget(e.key, v.position, core.trackDuration(v.track)) : null;
    if (pos == null) return;
    e.preventDefault();
    actions.seek(pos);
  });
  document.addEventListener('keydown', (e) => {
    if (e.key !== ' ' || closest(e, 'input, textarea, select, button, [contenteditable], [role="slider"]')) return; // those use space themselves
    e.preventDefault();
    togglePlay();
  });
  if ('mediaSession' in navigator) {
    /** @type {[MediaSessionAction, MediaSessionActionHandler][]} */
    const handlers = [
      ['play', () => { if (!core.getView().playing) togglePlay(); }], ['pause', () => { if (core.getView().playing) togglePlay(); }],
      ['nexttrack', actions.next], ['previoustrack', actions.previous],
      ['seekto', (d) => { if (d.seekTime != null) actions.seek(d.seekTime); }],
    ];
    for (const [action, fn] of handlers) {
      try { navigator.mediaSession.setActionHandler(action, fn); } catch { /* unsupported action */ }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Start-up

Object.assign(core.hooks, {
  changed: invalidate,
  notify,
  /** @param {'connecting' | 'open' | 'closed'} state */
  ws(state) {
    document.body.dataset.ws = state;
    if (state === 'open') document.body.dataset.deviceId = core.control.deviceId ?? '';
    ui.wsState.setAttribute('aria-label', `Control channel: ${state}`);
    ui.wsState.title = `Control channel: ${state}`;
    invalidate(true);
  },
  prefetched: (/** @type {string} */ id) => ui.tracks.querySelector(`[data-track-id="${CSS.escape(id)}"]`)?.setAttribute('data-prefetched', 'true'),
  /** @param {Track[]} added */
  libraryAdded(added) {
    if (!added.length) return;
    notify(`${added.length} new track${added.length === 1 ? '' : 's'} in the library`);
    loadLibrary();
  },
});
ui.audio.addEventListener('playing', () => {
  if (!coversOn) core.whenHealthy().then(() => { coversOn = true; renderLibrary(); });
});
let lastFrame = 0;
const frame = () => {
  lastFrame = performance.now();
  core.tick(); // the current track flips as the playhead crosses a boundary
  if (paint(wanted === 2)) wanted = 0;
};
const loop = () => { frame(); requestAnimationFrame(loop); };
requestAnimationFrame(loop);
// Animation frames stop in a background tab, and come rarely to an unfocused window.
setInterval(() => { if (performance.now() - lastFrame > 200) frame(); }, 250);
wireInput();
renderDevices();
// The library request goes first: booting the core opens the audio device, which takes a while.
loadLibrary('').then(() => { if (prefetchOnLoad) core.prefetchFirst(library.listed.map((t) => t.id)); });
core.boot({ device: deviceName(), session: sessionName() });
ui.normalize.checked = core.settings.normalize;
