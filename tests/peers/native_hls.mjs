// Plays a segue HLS master playlist natively in Debian's headless Chromium: `<audio src>`, no
// MSE and no player library (Chromium plays HLS itself since its built-in HLS demuxer shipped),
// driven by playwright-core. Waits for the `ended` event, or an error, or the deadline, and
// prints a JSON summary on stdout for tests/peer_desktop.rs:
//   { chromium, ended, ended_at, duration, wall_s, errors: [..], failures: [..], events: [..] }
//
// Usage: node native_hls.mjs --src MASTER_URL [--timeout-ms N]

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { launchChromium } from './browser.mjs';

const { values: opt } = parseArgs({
  options: {
    src: { type: 'string' },
    'timeout-ms': { type: 'string', default: '60000' },
  },
});
if (!opt.src) throw new Error('missing --src');
const timeoutMs = Number(opt['timeout-ms']);
// The run's own deadline, in case the browser hangs outside the wait below.
setTimeout(() => {
  process.stderr.write(`native_hls.mjs: run deadline of ${timeoutMs + 30000} ms passed\n`);
  process.exit(3);
}, timeoutMs + 30000).unref();

const profile = mkdtempSync(join(tmpdir(), 'segue-native-hls-'));
const result = { src: opt.src, ended: false, errors: [], failures: [], events: [] };
let browser;
try {
  browser = await launchChromium(profile);
  result.chromium = browser.version();
  const page = await browser.newPage();
  page.on('pageerror', (e) => result.errors.push({ source: 'pageerror', detail: String(e) }));
  await page.setContent('<!doctype html><audio id="media" preload="auto"></audio>');
  const started = Date.now();
  const outcome = await page.evaluate(
    ({ src, timeoutMs }) =>
      new Promise((resolve) => {
        const media = document.getElementById('media');
        const events = [];
        const done = (how) =>
          resolve({
            how,
            events,
            currentTime: media.currentTime,
            duration: media.duration,
            error: media.error && { code: media.error.code, message: media.error.message },
          });
        for (const type of ['loadedmetadata', 'durationchange', 'playing', 'waiting', 'stalled', 'ended', 'error']) {
          media.addEventListener(type, () => {
            events.push({ type, t: media.currentTime, duration: media.duration });
            if (type === 'ended') done('ended');
            if (type === 'error') done('error');
          });
        }
        setTimeout(() => done('timeout'), timeoutMs);
        if (!media.canPlayType('application/vnd.apple.mpegurl')) {
          events.push({ type: 'canPlayType', detail: 'application/vnd.apple.mpegurl: no' });
        }
        media.src = src;
        media.play().catch((e) => {
          events.push({ type: 'play-rejected', detail: String(e) });
          done('error');
        });
      }),
    { src: opt.src, timeoutMs },
  );
  result.wall_s = (Date.now() - started) / 1000;
  result.events = outcome.events;
  result.duration = outcome.duration;
  if (outcome.how === 'ended') {
    result.ended = true;
    result.ended_at = outcome.currentTime;
  } else {
    result.failures.push(`${outcome.how} at ${outcome.currentTime} s of ${outcome.duration} s`);
  }
  if (outcome.error) result.errors.push({ source: 'media', detail: outcome.error });
} catch (e) {
  result.failures.push(String(e && (e.stack || e.message || e)));
} finally {
  if (browser) await browser.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}
process.stdout.write(JSON.stringify(result) + '\n');
