// @ts-check
// What the view shows, computed: times, initials and colours for a missing cover, the device's
// name, the waveform's bars, the seek bar's keys. Pure (no browser global), so that
// tests/player/*.test.mjs runs it under node:test; ./view.js does the DOM.

import { clamp } from './logic.js';

/**
 * Track seconds as `m:ss`, or `h:mm:ss` from an hour; a negative or non-finite time is 0:00.
 * @param {number} s
 */
export function fmtTime(s) {
  s = Number.isFinite(s) ? Math.max(0, Math.floor(s)) : 0;
  const m = Math.floor(s / 60) % 60, sec = String(s % 60).padStart(2, '0');
  return s >= 3600 ? `${Math.floor(s / 3600)}:${String(m).padStart(2, '0')}:${sec}` : `${m}:${sec}`;
}

/**
 * Up to two initials of a name (letters and digits of its first words), for a missing cover.
 * @param {string} key
 */
export const initials = (key) => key.replace(/[^\p{L}\p{N} ]/gu, '').split(/\s+/).map((w) => w.charAt(0)).join('').slice(0, 2).toUpperCase();

/**
 * A hue (0-359) taken from a name, so that an album's tracks look alike.
 * @param {string} key
 */
export const hueOf = (key) => [...key].reduce((h, c) => (h * 31 + (c.codePointAt(0) ?? 0)) % 360, 0);

/**
 * Whether `s` is a valid session name (as the server accepts).
 * @param {string | null | undefined} s
 */
export const isSessionName = (s) => /^[A-Za-z0-9_-]{1,64}$/.test(s ?? '');

/**
 * A device's name from its user agent (and UA-CH brands): "Browser on System".
 * @param {string} ua
 * @param {readonly string[]} brands
 */
export function describeDevice(ua, brands) {
  const browser = ['Microsoft Edge', 'Opera', 'Google Chrome', 'Chromium'].find((b) => brands.includes(b))?.replace(/^(Microsoft|Google) /, '')
    ?? [['Firefox/', 'Firefox'], ['Edg/', 'Edge'], ['HeadlessChrome', 'Chromium'], ['Chrome/', 'Chrome'], ['Safari/', 'Safari']].find(([k]) => ua.includes(k))?.[1] ?? 'Browser';
  const os = [['Android', 'Android'], ['iPhone', 'iOS'], ['iPad', 'iOS'], ['CrOS', 'ChromeOS'], ['Mac OS X', 'macOS'], ['Windows', 'Windows'], ['Linux', 'Linux']]
    .find(([k]) => ua.includes(k))?.[1] ?? 'the web';
  return `${browser} on ${os}`;
}

/**
 * Waveform peaks (0-1) from the server's JSON (`data`: min, max pairs at `bits` bits).
 * @param {{ bits?: number, data: number[] }} w
 */
export function waveformPeaks(w) {
  const scale = 2 ** ((w.bits || 16) - 1), peaks = new Float32Array(Math.floor(w.data.length / 2));
  for (let i = 0; i < peaks.length; i++) peaks[i] = Math.max(Math.abs(w.data[2 * i]), Math.abs(w.data[2 * i + 1])) / scale;
  return peaks;
}

/**
 * Height (0-1) of bar `i` of `n` of the seek bar: the loudest peak under it, square-rooted so
 * that quiet passages stay visible, at least 0.04; 0.08 without peaks.
 * @param {Float32Array | null | undefined} peaks
 * @param {number} i
 * @param {number} n
 */
export function barHeight(peaks, i, n) {
  if (!peaks?.length) return 0.08;
  const a = Math.floor((i / n) * peaks.length), b = Math.max(a + 1, Math.floor(((i + 1) / n) * peaks.length));
  return Math.max(0.04, Math.sqrt(Math.max(...peaks.subarray(a, b))));
}

/**
 * Where a key on the seek bar goes, in track seconds, or null for another key: arrows 5 s,
 * PageUp/PageDown 30 s, Home the start, End 1 s before the end.
 * @param {string} key
 * @param {number} position
 * @param {number} duration
 * @returns {number | null}
 */
export function seekKeyTarget(key, position, duration) {
  const step = /** @type {Record<string, number>} */ ({ ArrowLeft: -5, ArrowRight: 5, PageDown: -30, PageUp: 30 })[key];
  const pos = step != null ? position + step : key === 'Home' ? 0 : key === 'End' ? Infinity : null;
  return pos == null ? null : clamp(pos, 0, Math.max(0, duration - 1));
}
