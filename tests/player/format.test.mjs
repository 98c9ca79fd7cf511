// What the view shows (templates/format.js) under node:test: times, initials and hues of a
// missing cover, session names, device names, the waveform's bars and the seek bar's keys.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  barHeight, describeDevice, fmtTime, hueOf, initials, isSessionName, seekKeyTarget, waveformPeaks,
} from '../../templates/format.js';

test('times: m:ss under an hour, h:mm:ss from an hour, whole seconds down', () => {
  assert.equal(fmtTime(0), '0:00');
  assert.equal(fmtTime(59.999), '0:59');
  assert.equal(fmtTime(60), '1:00');
  assert.equal(fmtTime(605), '10:05');
  assert.equal(fmtTime(3599), '59:59');
  assert.equal(fmtTime(3600), '1:00:00');
  assert.equal(fmtTime(3725.5), '1:02:05');
  assert.equal(fmtTime(36000), '10:00:00');
});

test('times: negative, NaN and infinite are 0:00', () => {
  for (const t of [-3, -0.5, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) assert.equal(fmtTime(t), '0:00', String(t));
});

test('initials: the first letters of the first two words, punctuation dropped', () => {
  assert.equal(initials('The Dark Side of the Moon'), 'TD');
  assert.equal(initials('(What’s the Story) Morning Glory?'), 'WT');
  assert.equal(initials('ñandú café'), 'ÑC');
  assert.equal(initials('1999'), '1');
  assert.equal(initials('  leading'), 'L');
  assert.equal(initials(''), '');
});

test('hues: 31-based hash of the code points, mod 360, the same for the same name', () => {
  assert.equal(hueOf(''), 0);
  assert.equal(hueOf('a'), 97);
  assert.equal(hueOf('ab'), 225); // (97 * 31 + 98) % 360 = 3105 % 360
  assert.equal(hueOf('Album'), hueOf('Album'));
  assert.ok(hueOf('a'.repeat(1000)) < 360);
});

test('session names: 1-64 of A-Z a-z 0-9 _ -', () => {
  assert.equal(isSessionName('s0123abcd_-X'), true);
  assert.equal(isSessionName('x'.repeat(64)), true);
  assert.equal(isSessionName('x'.repeat(65)), false);
  assert.equal(isSessionName(''), false);
  assert.equal(isSessionName('a b'), false);
  assert.equal(isSessionName('é'), false);
  assert.equal(isSessionName(null), false);
  assert.equal(isSessionName(undefined), false);
});

test('device names: the browser from UA-CH brands or the user agent, and the system', () => {
  const linuxChrome = 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36';
  assert.equal(describeDevice(linuxChrome, ['Not A(Brand', 'Google Chrome', 'Chromium']), 'Chrome on Linux');
  assert.equal(describeDevice(linuxChrome, []), 'Chrome on Linux');
  assert.equal(describeDevice(linuxChrome.replace('Chrome/', 'HeadlessChrome/'), []), 'Chromium on Linux');
  assert.equal(describeDevice(`${linuxChrome.replace('X11; Linux x86_64', 'Windows NT 10.0; Win64; x64')} Edg/120.0`, []), 'Edge on Windows');
  assert.equal(describeDevice('x', ['Microsoft Edge', 'Chromium']), 'Edge on the web');
  assert.equal(describeDevice('Mozilla/5.0 (Macintosh; Intel Mac OS X 14.1; rv:120.0) Gecko/20100101 Firefox/120.0', []), 'Firefox on macOS');
  const iphone = 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1';
  assert.equal(describeDevice(iphone, []), 'Safari on iOS');
  assert.equal(describeDevice('', []), 'Browser on the web');
});

test('waveform peaks: the larger magnitude of each (min, max) pair over full scale', () => {
  // 8 bits: full scale 128. (-64, 32) -> 0.5, (0, 128) -> 1; a lone trailing value is dropped.
  assert.deepEqual([...waveformPeaks({ bits: 8, data: [-64, 32, 0, 128, 5] })], [0.5, 1]);
  // 16 bits by default: full scale 32768.
  assert.deepEqual([...waveformPeaks({ data: [-16384, 8192] })], [0.5]);
  assert.equal(waveformPeaks({ data: [] }).length, 0);
});

test('seek bar heights: the loudest peak under a bar, square-rooted, at least 0.04', () => {
  const peaks = Float32Array.from([0, 0.25, 1, 0]);
  assert.equal(barHeight(peaks, 0, 2), 0.5); // max(0, 0.25) -> sqrt
  assert.equal(barHeight(peaks, 1, 2), 1);
  assert.equal(barHeight(Float32Array.from([0]), 0, 1), 0.04);
  // More bars than peaks: each bar takes at least one peak.
  const two = Float32Array.from([0.25, 1]);
  assert.deepEqual([0, 1, 2, 3].map((i) => barHeight(two, i, 4)), [0.5, 0.5, 1, 1]);
  // No waveform (yet): a flat line.
  assert.equal(barHeight(null, 0, 10), 0.08);
  assert.equal(barHeight(new Float32Array(0), 3, 10), 0.08);
});

test('seek bar keys: arrows 5 s, pages 30 s, Home and End, inside the track', () => {
  assert.equal(seekKeyTarget('ArrowRight', 10, 100), 15);
  assert.equal(seekKeyTarget('ArrowLeft', 10, 100), 5);
  assert.equal(seekKeyTarget('ArrowLeft', 2, 100), 0);
  assert.equal(seekKeyTarget('PageUp', 90, 100), 99); // 1 s before the end at most
  assert.equal(seekKeyTarget('PageDown', 50, 100), 20);
  assert.equal(seekKeyTarget('Home', 50, 100), 0);
  assert.equal(seekKeyTarget('End', 50, 100), 99);
  assert.equal(seekKeyTarget('End', 0, 0.5), 0, 'a track under a second');
  assert.equal(seekKeyTarget('x', 50, 100), null);
  assert.equal(seekKeyTarget(' ', 50, 100), null);
});
