// A player plays a track through nginx in front of two segue origins, and one origin dies
// (SIGKILL) mid-track: tests/fleet.rs asserts on the JSON summary this prints on stdout.
//
// Players: hls.js and dash.js on tests/peers/player.html (served here, on another 127.0.0.1
// port: every media request is a CORS request through nginx), or segue's own page (GET / through
// nginx, a click on the track in #tracks). Every media element's events are recorded in the page
// (capture-phase listeners installed before the page's scripts). Once playback has passed
// --kill-at seconds, this script sends SIGKILL to --kill-pid (an origin the test started) and
// notes when (ms since the Unix epoch, the clock of nginx's access log), then waits for `ended`.
// --rate speeds playback up after the first `playing`, so that a 30 s track plays in 15 s; the
// players fetch ahead of the playhead at that rate too.
//
// Usage: node fleet_players.mjs --player hls.js|dash.js|segue --src URL --kill-pid PID
//          [--track ID] [--kill-at 3] [--rate 2] [--timeout-ms 60000]
//   --src: the HLS master (hls.js) or MPD (dash.js) URL through nginx, or nginx's origin
//   (segue, with --track: the track to click).

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { launchChromium, startPageServer } from './browser.mjs';

const LIBS = {
  '/lib/hls.js': 'node_modules/hls.js/dist/hls.min.js',
  '/lib/dash.js': 'node_modules/dashjs/dist/modern/umd/dash.all.min.js',
};

const { values: opt } = parseArgs({
  options: {
    player: { type: 'string' },
    src: { type: 'string' },
    track: { type: 'string' },
    'kill-pid': { type: 'string' },
    'kill-at': { type: 'string', default: '3' },
    rate: { type: 'string', default: '2' },
    'timeout-ms': { type: 'string', default: '60000' },
  },
});
for (const k of ['player', 'src', 'kill-pid']) {
  if (!opt[k]) throw new Error(`missing --${k}`);
}
if (opt.player === 'segue' && !opt.track) throw new Error('--player segue needs --track');
const killAt = Number(opt['kill-at']);
const rate = Number(opt.rate);
const deadline = Date.now() + Number(opt['timeout-ms']);
setTimeout(() => {
  process.stderr.write('fleet_players.mjs: run deadline passed\n');
  process.exit(3);
}, Number(opt['timeout-ms']) + 20000).unref();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Installed before the page's scripts: every media element's events, on the epoch clock. */
function instrument() {
  const rec = (window.__fleet = { events: [], errors: [] });
  for (const type of ['playing', 'waiting', 'stalled', 'pause', 'ended', 'error', 'ratechange']) {
    window.addEventListener(type, (e) => {
      const m = e.target;
      if (!(m instanceof HTMLMediaElement)) return;
      rec.events.push({ type, at: Date.now(), ct: m.currentTime });
      if (type === 'error') rec.errors.push({ source: 'media', detail: m.error && `${m.error.code} ${m.error.message}` });
    }, true);
  }
  rec.media = () => document.querySelector('audio, video');
}

const result = {
  player: opt.player, ok: false, failures: [], errors: [], console_errors: [],
  killed_at_ms: null, killed_at_ct: null, events: [], failed_requests: [], final_time_s: null,
};
const userDataDir = mkdtempSync(join(tmpdir(), 'segue-chromium-'));
let browser;
let pages;
try {
  browser = await launchChromium(userDataDir);
  result.chromium = browser.version();
  const context = await browser.newContext();
  await context.addInitScript(instrument);
  const page = await context.newPage();
  // Every request goes to nginx (and on a miss to an origin), not to the browser's cache.
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.setCacheDisabled', { cacheDisabled: true });
  page.on('pageerror', (e) => result.errors.push({ source: 'pageerror', detail: String(e) }));
  page.on('console', (m) => { if (m.type() === 'error') result.console_errors.push(m.text()); });
  page.on('response', (r) => {
    if (r.status() >= 400) result.failed_requests.push({ url: r.url(), status: r.status() });
  });
  page.on('requestfailed', (r) => {
    // A WebSocket is not a request here; an aborted fetch (a player cancelling) is not a failure
    // of the fleet, but a refused or reset one is.
    const why = r.failure() && r.failure().errorText;
    if (why && !/ERR_ABORTED/.test(why)) result.failed_requests.push({ url: r.url(), failed: why });
  });

  if (opt.player === 'segue') {
    await page.goto(`${opt.src}/`, { timeout: deadline - Date.now() });
    await page.click(`#tracks [data-track-id="${opt.track}"]`, { timeout: deadline - Date.now() });
  } else {
    const files = { '/player.html': ['player.html', 'text/html; charset=utf-8'] };
    for (const [url, path] of Object.entries(LIBS)) files[url] = [path, 'text/javascript'];
    pages = await startPageServer(files);
    await page.goto(`${pages.origin}/player.html?player=${encodeURIComponent(opt.player)}&src=${encodeURIComponent(opt.src)}`,
      { timeout: deadline - Date.now() });
  }

  const state = () => page.evaluate(() => {
    const m = window.__fleet.media();
    const peerErrors = window.peer ? window.peer.errors : [];
    return { ct: m ? m.currentTime : 0, ended: m ? m.ended : false, rate: m ? m.playbackRate : 1,
      events: window.__fleet.events, errors: [...window.__fleet.errors, ...peerErrors] };
  });
  /** Polls until `done(state)`, an error in the page, or the deadline; returns the last state. */
  const until = async (what, done) => {
    for (;;) {
      const s = await state();
      if (done(s) || s.errors.length) return s;
      if (Date.now() >= deadline) {
        result.failures.push(`timed out waiting for ${what} (currentTime ${s.ct.toFixed(2)} s)`);
        return s;
      }
      await sleep(50);
    }
  };

  let s = await until('the first `playing`', (s) => s.events.some((e) => e.type === 'playing'));
  if (rate !== 1) await page.evaluate((r) => { window.__fleet.media().playbackRate = r; }, rate);
  s = await until(`playback past ${killAt} s`, (s) => s.ct >= killAt);
  if (!result.failures.length && !s.errors.length) {
    process.kill(Number(opt['kill-pid']), 'SIGKILL');
    result.killed_at_ms = Date.now();
    result.killed_at_ct = s.ct;
    s = await until('`ended`', (s) => s.ended || s.events.some((e) => e.type === 'ended'));
  }
  s = await state();
  result.events = s.events;
  result.errors.push(...s.errors);
  result.final_time_s = s.ct;
  result.final_rate = s.rate;
} catch (e) {
  result.failures.push(`driver: ${e && e.message}`);
} finally {
  if (browser) await browser.close().catch(() => {});
  if (pages) pages.server.close();
  rmSync(userDataDir, { recursive: true, force: true });
}

const firstPlaying = result.events.findIndex((e) => e.type === 'playing');
if (firstPlaying < 0) result.failures.push('never `playing`');
const waits = result.events.slice(firstPlaying + 1).filter((e) => e.type === 'waiting');
if (firstPlaying >= 0 && waits.length) result.failures.push(`\`waiting\` after the first \`playing\`: ${JSON.stringify(waits)}`);
if (!result.events.some((e) => e.type === 'ended')) result.failures.push('no `ended`');
if (result.errors.length) result.failures.push(`${result.errors.length} player/page error(s)`);
if (result.failed_requests.length) result.failures.push(`${result.failed_requests.length} failed request(s)`);
result.ok = result.failures.length === 0;
process.stdout.write(JSON.stringify(result, null, 1) + '\n');
process.exit(0);
