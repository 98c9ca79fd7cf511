// The player's pure logic (templates/logic.js) under node:test: the bandwidth estimate, the byte
// cache, a track's media layout, ABR, the timeline, the edit-list rewrite and the queue's
// arithmetic. Expected values are worked out by hand in the comments.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ByteCache, ThroughputEstimate, chooseRendition, inQueue, initialBandwidth, nextTarget, normalizationGain,
  parsePageConfig, peakBitrate, place, placementAt, preferReady, previousTarget, rangeAt, sameQueue, segEdges, segTime,
  segUrl, segmentAt, seekTarget, statePosition, trackDuration, withoutEditList,
} from '../../templates/logic.js';
import { makeTrack, rendition } from './fixtures.mjs';

/** Asserts |actual - expected| < 1e-9 (relative to expected). */
function near(actual, expected, message) {
  assert.ok(Math.abs(actual - expected) <= 1e-9 * Math.max(1, Math.abs(expected)), message ?? `${actual} != ${expected}`);
}

test('parsePageConfig takes the server constants and refuses a page without them', () => {
  assert.deepEqual(parsePageConfig('{"protocol":"segue.control.v1","abr_share":0.5,"extra":1}'),
    { protocol: 'segue.control.v1', abr_share: 0.5 });
  for (const bad of [null, undefined, '{}', '{"protocol":"","abr_share":0.5}', '{"protocol":"p","abr_share":0}',
    '{"protocol":"p","abr_share":1.5}', '{"protocol":"p","abr_share":"0.5"}', '{"abr_share":0.5}']) {
    assert.throws(() => parsePageConfig(bad), TypeError, String(bad));
  }
  assert.throws(() => parsePageConfig('{{segue_config}}'), SyntaxError); // the slot left unfilled
});

test('throughput estimate: none before a sample, small or instant responses ignored', () => {
  const est = new ThroughputEstimate();
  assert.equal(est.estimate(), null);
  assert.equal(est.sample(4095, 10), false); // under 4 KiB measures the round trip
  assert.equal(est.sample(4096, 0), false);
  assert.equal(est.sample(8192, -5), false);
  assert.equal(est.sample(Number.NaN, 10), false);
  assert.equal(est.estimate(), null);
  assert.equal(new ThroughputEstimate(0).estimate(), null);
  assert.equal(new ThroughputEstimate(-1).estimate(), null);
  assert.equal(new ThroughputEstimate(2e6).estimate(), 2e6);
});

test('throughput estimate: a drop is believed at once (the fast EWMA)', () => {
  const est = new ThroughputEstimate();
  // 32 KiB in 100 ms = 32768 * 8000 / 100 = 2 621 440 bit/s; the first sample is both averages.
  assert.equal(est.sample(32768, 100), true);
  assert.equal(est.estimate(), 2621440);
  // 32 KiB in 200 ms = 1 310 720 bit/s. Fast (half-life 32 KiB): weight 1 - 0.5^1 = 0.5 ->
  // 2 621 440 - 0.5 * 1 310 720 = 1 966 080. Slow (256 KiB): weight 1 - 0.5^(1/8) -> ~2 512 656.
  est.sample(32768, 200);
  near(est.fast, 1966080);
  near(est.slow, 2621440 - (1 - 0.5 ** (1 / 8)) * 1310720);
  near(est.estimate(), 1966080);
});

test('throughput estimate: a rise is believed only once it lasts (the slow EWMA)', () => {
  const est = new ThroughputEstimate(1e6);
  // 256 KiB at 10 Mbit/s: fast weight 1 - 0.5^8 = 0.99609375 -> 1e6 + 0.99609375 * 9e6 = 9 964 843.75;
  // slow weight 0.5 -> 5.5e6, the lower: the estimate.
  est.sample(262144, (262144 * 8000) / 10e6);
  near(est.fast, 9964843.75);
  near(est.slow, 5.5e6);
  near(est.estimate(), 5.5e6);
});

test('initial bandwidth: the saved estimate, else the downlink in Mbit/s, else none', () => {
  assert.equal(initialBandwidth(5e6, 10), 5e6);
  assert.equal(initialBandwidth(Number.NaN, 10), 10e6);
  assert.equal(initialBandwidth(0, 1.5), 1.5e6);
  assert.equal(initialBandwidth(0, undefined), null);
  assert.equal(initialBandwidth(-3, 0), null);
});

test('byte cache drops the least recently used first, a hit counting as a use', () => {
  const cache = new ByteCache(10);
  cache.put('a', new ArrayBuffer(4));
  cache.put('b', new ArrayBuffer(4));
  assert.equal(cache.get('a')?.byteLength, 4); // a is now younger than b
  cache.put('c', new ArrayBuffer(4)); // 12 > 10: b goes
  assert.deepEqual([cache.has('a'), cache.has('b'), cache.has('c')], [true, false, true]);
  assert.equal(cache.size, 8);
  cache.put('a', new ArrayBuffer(9)); // held already: kept as it was
  assert.equal(cache.size, 8);
  assert.equal(cache.get('b'), undefined);
});

test('byte cache: one entry larger than the limit is not kept, nor are the others', () => {
  const cache = new ByteCache(10);
  cache.put('small', new ArrayBuffer(3));
  cache.put('huge', new ArrayBuffer(11));
  assert.equal(cache.size, 0);
  assert.equal(cache.has('huge'), false);
  cache.put('exact', new ArrayBuffer(10)); // a queue of one that fits exactly
  assert.equal(cache.has('exact'), true);
});

test('media layout: segment URLs from 1, duration without priming and padding, edges in seconds', () => {
  const track = makeTrack();
  assert.equal(segUrl(track.renditions[0], 0), '/media/t/64k/1.m4s');
  assert.equal(segUrl(track.renditions[0], 2), '/media/t/64k/3.m4s');
  assert.equal(trackDuration(track), 4.3); // 206 400 / 48 000
  assert.deepEqual(segEdges(track), [0, 2, 4, 4.4]); // 96 000, 96 000, 19 200 samples
  assert.equal(segEdges(track), segEdges(track), 'cached');
  assert.deepEqual(segEdges(makeTrack({ segment_durations: [] })), [0]);
});

test('segmentAt counts the priming (2048 samples = 42.67 ms) and clamps to the ladder', () => {
  const track = makeTrack();
  assert.equal(segmentAt(track, 0), 0);
  assert.equal(segmentAt(track, 1.95), 0); // 1.9927 on the media timeline
  assert.equal(segmentAt(track, 1.96), 1); // 2.0027
  assert.equal(segmentAt(track, 3.99), 2); // 4.0327
  assert.equal(segmentAt(track, 100), 2); // past the end: the last
  assert.equal(segmentAt(track, -1), 0); // before the start: the first
  assert.equal(segmentAt(track, Number.NaN), 0);
  assert.equal(segmentAt(makeTrack({ segment_durations: [] }), 1), 0);
});

test('peak bitrate: the largest segment over its duration, short segments left out', () => {
  // Segments of 2 s, 2 s, 0.4 s: 32 000 B -> 128 kbit/s, 40 000 B -> 160 kbit/s, the 0.4 s one
  // (60 000 B, 1.2 Mbit/s) is under half a second and does not count.
  const rend = rendition(128000, [32000, 40000, 60000]);
  assert.equal(peakBitrate(makeTrack({ renditions: [rend] }), rend), 160000);
  // Segments all under the nominal bitrate: the nominal.
  const quiet = rendition(256000, [1000, 1000, 1000]);
  assert.equal(peakBitrate(makeTrack({ renditions: [quiet] }), quiet), 256000);
  const unsized = rendition(96000);
  assert.equal(peakBitrate(makeTrack({ renditions: [unsized] }), unsized), 96000);
});

test('normalization gain: toward -14 LUFS, under a -1 dBTP true peak', () => {
  // -20 LUFS wants +6 dB; a -10 dBTP peak allows +9: +6 dB = 10^(6/20).
  near(normalizationGain(makeTrack({ loudness: { integrated_lufs: -20, true_peak_dbtp: -10 } })), 10 ** (6 / 20));
  // -20 LUFS with a -3 dBTP peak: only +2 dB.
  near(normalizationGain(makeTrack({ loudness: { integrated_lufs: -20, true_peak_dbtp: -3 } })), 10 ** (2 / 20));
  // -8 LUFS: -6 dB = 0.501.
  near(normalizationGain(makeTrack({ loudness: { integrated_lufs: -8, true_peak_dbtp: 0 } })), 10 ** (-6 / 20));
  // No peak measured: no ceiling.
  near(normalizationGain(makeTrack({ loudness: { integrated_lufs: -20, true_peak_dbtp: Number.NaN } })), 10 ** (6 / 20));
  assert.equal(normalizationGain(makeTrack({ loudness: null })), 1);
  assert.equal(normalizationGain(makeTrack({ loudness: { integrated_lufs: Number.NEGATIVE_INFINITY, true_peak_dbtp: -1 } })), 1);
});

test('ABR: no estimate keeps the current rendition, else the lowest', () => {
  const track = makeTrack();
  assert.equal(chooseRendition(track, null, 0, null, 0.5)?.bitrate, 64000);
  assert.equal(chooseRendition(track, 128000, 0, null, 0.5)?.bitrate, 128000);
  assert.equal(chooseRendition(track, 130000, 0, null, 0.5)?.bitrate, 128000, 'the nearest of the ladder');
});

test('ABR: the highest rendition whose peak fits the share of the estimate', () => {
  const track = makeTrack();
  // Share 0.5: 300 kbit/s gives a budget of 150 kbit/s: 128k fits, 256k does not.
  assert.equal(chooseRendition(track, null, 0, 300000, 0.5)?.bitrate, 128000);
  assert.equal(chooseRendition(track, null, 0, 512000, 0.5)?.bitrate, 256000, 'a peak equal to the budget fits');
  assert.equal(chooseRendition(track, null, 0, 511999, 0.5)?.bitrate, 128000);
  // The share is the server's, not the page's: with 0.25 the same estimate buys less.
  assert.equal(chooseRendition(track, null, 0, 512000, 0.25)?.bitrate, 128000);
  // Nothing fits (zero bandwidth, or under the lowest): the lowest.
  assert.equal(chooseRendition(track, null, 0, 0, 0.5)?.bitrate, 64000);
  assert.equal(chooseRendition(track, null, 0, 100000, 0.5)?.bitrate, 64000);
});

test('ABR: an upswitch needs 25% headroom and 8 s buffered; a downswitch is at once', () => {
  const track = makeTrack();
  // From 128k, 256k needs 256 000 * 1.25 = 320 000 <= est * 0.5, so est >= 640 000.
  assert.equal(chooseRendition(track, 128000, 30, 600000, 0.5)?.bitrate, 128000);
  assert.equal(chooseRendition(track, 128000, 30, 640000, 0.5)?.bitrate, 256000);
  assert.equal(chooseRendition(track, 128000, 7.9, 640000, 0.5)?.bitrate, 128000, 'thin buffer: no upswitch');
  assert.equal(chooseRendition(track, 128000, 8, 640000, 0.5)?.bitrate, 256000);
  // From 256k at 300 kbit/s (budget 150k), down to 128k even with a thin buffer.
  assert.equal(chooseRendition(track, 256000, 0, 300000, 0.5)?.bitrate, 128000);
});

test('ABR: an empty ladder has no choice', () => {
  assert.equal(chooseRendition(makeTrack({ renditions: [] }), null, 0, 1e6, 0.5), null);
  assert.equal(chooseRendition(makeTrack({ renditions: [] }), 128000, 0, null, 0.5), null);
});

test('a start prefers bytes at hand unless ABR would pick higher', () => {
  const [low, high] = [rendition(64000), rendition(256000)];
  assert.equal(preferReady(low, high), high);
  assert.equal(preferReady(high, low), high);
  assert.equal(preferReady(low, low), low);
  assert.equal(preferReady(low, null), low);
  assert.equal(preferReady(undefined, high), high);
  assert.equal(preferReady(undefined, null), null);
});

test('a placement shifts the timeline back by the priming and ends after the real audio', () => {
  const track = makeTrack({ loudness: { integrated_lufs: -20, true_peak_dbtp: -10 } });
  const pl = place(track, 3, 10, track.renditions[1], 1);
  assert.equal(pl.start, 10);
  near(pl.end, 14.3); // 10 + 206 400 / 48 000
  near(pl.offset, 10 - 2048 / 48000);
  assert.deepEqual([pl.qi, pl.first, pl.next, pl.rend, pl.pendingStart], [3, 1, 1, track.renditions[1], null]);
  assert.deepEqual(pl.segRend, []);
  near(pl.gain, 10 ** (6 / 20));
  near(segTime(pl, 0), 10 - 2048 / 48000);
  near(segTime(pl, 1), 12 - 2048 / 48000);
  near(segTime(pl, 3), 14.4 - 2048 / 48000); // the end of the last segment
});

test('placementAt: the last placement started by then (5 ms early counts), else the first', () => {
  const track = makeTrack();
  const pls = [0, 5, 9.5].map((start, qi) => place(track, qi, start, track.renditions[0], 0));
  assert.equal(placementAt(pls, 4.99)?.qi, 0);
  assert.equal(placementAt(pls, 4.996)?.qi, 1);
  assert.equal(placementAt(pls, 100)?.qi, 2);
  assert.equal(placementAt(pls, -1)?.qi, 0);
  assert.equal(placementAt(pls, Number.NaN)?.qi, 0);
  assert.equal(placementAt([], 1), null);
});

test('rangeAt: the buffered range that holds a time (10 ms early counts), ends excluded', () => {
  const ranges = [[0, 5], [6, 8]];
  const buffered = { length: ranges.length, start: (i) => ranges[i][0], end: (i) => ranges[i][1] };
  assert.deepEqual(rangeAt(buffered, 0), [0, 5]);
  assert.deepEqual(rangeAt(buffered, 4.999), [0, 5]);
  assert.equal(rangeAt(buffered, 5), null);
  assert.deepEqual(rangeAt(buffered, 5.995), [6, 8]);
  assert.equal(rangeAt(buffered, 8), null);
  assert.equal(rangeAt(buffered, Number.NaN), null);
  assert.equal(rangeAt({ length: 0, start: () => 0, end: () => 0 }, 0), null);
});

test('queue: previous restarts the track after 3 s or on the first entry, else goes back', () => {
  assert.deepEqual(previousTarget(0, 1), { seek: 0 });
  assert.deepEqual(previousTarget(2, 3.5), { seek: 0 });
  assert.deepEqual(previousTarget(2, 3), { jump: 1 });
  assert.deepEqual(previousTarget(1, 0), { jump: 0 });
});

test('queue: next goes on, and past the last back to the first, stopped', () => {
  assert.deepEqual(nextTarget(1, 3), { jump: 2, play: true });
  assert.deepEqual(nextTarget(2, 3), { jump: 0, play: false });
  assert.deepEqual(nextTarget(0, 1), { jump: 0, play: false }, 'a queue of one');
});

test('queue: indexes and equality', () => {
  assert.equal(inQueue(0, 1), true);
  assert.equal(inQueue(1, 1), false);
  assert.equal(inQueue(0, 0), false, 'an empty queue');
  assert.equal(inQueue(-1, 3), false);
  assert.equal(inQueue(1.5, 3), false);
  assert.equal(inQueue(Number.NaN, 3), false);
  assert.equal(sameQueue(['a', 'b'], ['a', 'b']), true);
  assert.equal(sameQueue(['a', 'b'], ['b', 'a']), false);
  assert.equal(sameQueue(['a'], ['a', 'b']), false);
  assert.equal(sameQueue([], []), true);
});

test('seek targets stay inside the track, 50 ms before its end', () => {
  assert.equal(seekTarget(-5, 100), 0);
  assert.equal(seekTarget(42, 100), 42);
  assert.equal(seekTarget(200, 100), 99.95);
  assert.equal(seekTarget(Number.POSITIVE_INFINITY, 100), 99.95);
  assert.equal(seekTarget(Number.NaN, 100), 0);
  assert.equal(seekTarget(5, 0.01), 0, 'a track shorter than the margin');
});

test('the session position moves on only while playing, up to the end of the track', () => {
  assert.equal(statePosition({ position: 10, playing: true }, 1500, 100), 11.5);
  assert.equal(statePosition({ position: 10, playing: false }, 1500, 100), 10);
  assert.equal(statePosition({ position: 10, playing: true }, 1500, 11), 11);
  assert.equal(statePosition({ position: 10, playing: true }, 1500, null), 11.5);
});

/** A box: 32-bit size, type, body (ISO/IEC 14496-12 4.2). */
function box(type, ...body) {
  const inner = body.reduce((n, b) => n + b.length, 0);
  const out = new Uint8Array(8 + inner);
  new DataView(out.buffer).setUint32(0, 8 + inner);
  out.set([...type].map((c) => c.charCodeAt(0)), 4);
  let o = 8;
  for (const b of body) { out.set(b, o); o += b.length; }
  return out;
}
const types = (bytes) => {
  const found = [];
  for (let o = 0; o + 8 <= bytes.length; o++) {
    const t = String.fromCharCode(...bytes.subarray(o + 4, o + 8));
    if (['edts', 'free', 'moov', 'trak', 'mdia', 'elst'].includes(t)) found.push(`${t}@${o}`);
  }
  return found;
};

test('the edit-list rewrite renames edts inside moov/trak to free and changes nothing else', () => {
  const elst = box('elst', new Uint8Array(8));
  const init = box('moov', box('mvhd', new Uint8Array(4)), box('trak', box('tkhd', new Uint8Array(4)), box('edts', elst), box('mdia')));
  const ftyp = box('ftyp', new Uint8Array(8));
  const file = new Uint8Array(ftyp.length + init.length);
  file.set(ftyp);
  file.set(init, ftyp.length);
  const before = file.slice();
  const out = withoutEditList(file.buffer);
  // ftyp 16 + moov header 8 + mvhd 12 + trak header 8 + tkhd 12 = 56: where edts was.
  assert.equal(String.fromCharCode(...out.subarray(60, 64)), 'free');
  assert.equal(out.length, file.length);
  const diff = [...out].flatMap((b, i) => (b === before[i] ? [] : [i]));
  assert.deepEqual(diff, [60, 61, 62, 63], 'only the four type bytes change');
  assert.deepEqual(file, before, 'the input is left as it was');
  assert.ok(types(out).includes('elst@64'), 'the edit list itself is left inside the free box');
});

test('the edit-list rewrite leaves edts elsewhere, and damaged sizes, alone without throwing', () => {
  // An edts inside mdia (not a place of ISO/IEC 14496-12) is not walked into.
  const odd = box('moov', box('trak', box('mdia', box('edts'))));
  assert.deepEqual(withoutEditList(odd.buffer.slice(0)), odd);
  // A box claiming more than there is stops the walk where it is.
  const truncated = box('moov', box('trak', box('edts')));
  new DataView(truncated.buffer).setUint32(8, 400); // trak's size past the end
  assert.deepEqual(withoutEditList(truncated.buffer.slice(0)), truncated);
  // A 64-bit size (size = 1) cut short: no RangeError.
  const large = new Uint8Array(12);
  new DataView(large.buffer).setUint32(0, 1);
  large.set([0x6d, 0x6f, 0x6f, 0x76], 4); // moov
  assert.deepEqual(withoutEditList(large.buffer.slice(0)), large);
  // A 64-bit size that is whole: walked into.
  const body = box('trak', box('edts'));
  const big = new Uint8Array(16 + body.length);
  const view = new DataView(big.buffer);
  view.setUint32(0, 1);
  big.set([0x6d, 0x6f, 0x6f, 0x76], 4);
  view.setBigUint64(8, BigInt(big.length));
  big.set(body, 16);
  assert.equal(String.fromCharCode(...withoutEditList(big.buffer).subarray(28, 32)), 'free');
  assert.equal(withoutEditList(new ArrayBuffer(0)).length, 0);
});
