// A player plays a track through nginx in front of two segue origins, and one origin dies
// (SIGKILL) mid-track: tests/fleet.rs asserts on the JSON summary this prints on stdout.
//
// Players: hls.js and dash.js on tests/peers/player.html (served here, on another 127.0.0.1
// port: every media request is a CORS request through nginx), or segue's own page (GET / through
// nginx, a click on the track in #tracks). Every media element's events are recorded in the page
// (capture-phase listeners installed before the page's scripts). Once playback has passed
// --kill-at seconds, this script sends SIGKILL to --kill-pid (an origin the test started) and
// notes when (ms since the Unix epoch, the clock of nginx's access log), then waits for `ended`.
// Playback runs at real time: at 2x, Chromium's players reported zero-length `waiting` events
// at segment boundaries with no origin killed, so a speed-up would be measured, not the fleet.
//
// A session across the fleet (--session S, segue's page only): the first page joins session S
// through nginx (`/?session=S&device=first`) and plays; the script asks both origins' /metrics
// which one holds its control channel (segue_control_connections), opens a second page on the
// OTHER origin directly (`/?session=S&device=second`, a remote control of the same session),
// and kills the first page's origin (--origins and --pids: both origins, in the same order). Each
// page records the `welcome` and `state` messages it receives, for the test to compare.
//
// Usage: node fleet_players.mjs --player hls.js|dash.js|segue --src URL --kill-pid PID
//          [--track ID] [--kill-at 3] [--timeout-ms 60000]
//        node fleet_players.mjs --player segue --src URL --track ID --session S
//          --origins URL_A,URL_B --pids PID_A,PID_B [--kill-at 3] [--timeout-ms N]
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
    session: { type: 'string' },
    origins: { type: 'string' },
    pids: { type: 'string' },
    'kill-at': { type: 'string', default: '3' },
    'timeout-ms': { type: 'string', default: '60000' },
  },
});
const required = opt.session ? ['player', 'src', 'track', 'origins', 'pids'] : ['player', 'src', 'kill-pid'];
for (const k of required) {
  if (!opt[k]) throw new Error(`missing --${k}`);
}
if (opt.player === 'segue' && !opt.track) throw new Error('--player segue needs --track');
if (opt.session && opt.player !== 'segue') throw new Error('--session needs --player segue');
const killAt = Number(opt['kill-at']);
const deadline = Date.now() + Number(opt['timeout-ms']);
setTimeout(() => {
  process.stderr.write('fleet_players.mjs: run deadline passed\n');
  process.exit(3);
}, Number(opt['timeout-ms']) + 20000).unref();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Installed before the page's scripts: every media element's events, on the epoch clock. */
function instrument() {
  const rec = (window.__fleet = { events: [], errors: [] });
  for (const type of ['playing', 'waiting', 'stalled', 'pause', 'ended', 'error']) {
    window.addEventListener(type, (e) => {
      const m = e.target;
      if (!(m instanceof HTMLMediaElement)) return;
      // Seconds buffered ahead of the playhead: a `waiting` with none is a stall for lack of
      // data (what a lost origin would cause); one with seconds ahead is the renderer's.
      let ahead = 0;
      for (let i = 0; i < m.buffered.length; i++) {
        if (m.buffered.start(i) <= m.currentTime + 0.05 && m.currentTime < m.buffered.end(i)) ahead = m.buffered.end(i) - m.currentTime;
      }
      rec.events.push({ type, at: Date.now(), ct: m.currentTime, ahead, ready: m.readyState });
      if (type === 'error') rec.errors.push({ source: 'media', detail: m.error && `${m.error.code} ${m.error.message}` });
    }, true);
  }
  rec.media = () => document.querySelector('audio, video');
  // The control channel's `welcome` and `state` messages as received (the page's own handler
  // still gets every message: this listener is added beside it).
  rec.control = [];
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', (e) => {
        try {
          const m = JSON.parse(e.data);
          if (m.type === 'welcome' || m.type === 'state') rec.control.push({ at: Date.now(), ...m });
        } catch { /* not JSON */ }
      });
    }
  };
}

/** The value of segue_control_connections in `origin`'s /metrics, or null. */
async function controlConnections(origin) {
  const text = await (await fetch(`${origin}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('segue_control_connections'));
  return line ? Number(line.trim().split(/\s+/).pop()) : null;
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
    const query = opt.session ? `?session=${encodeURIComponent(opt.session)}&device=first` : '';
    await page.goto(`${opt.src}/${query}`, { timeout: deadline - Date.now() });
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
    return { ct: m ? m.currentTime : 0, ended: m ? m.ended : false,
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
  let killPid = opt['kill-pid'];
  let second;
  if (opt.session) {
    // Which origin holds the first page's control channel: the one with a connection open.
    await page.waitForFunction(() => document.body.dataset.ws === 'open', null, { timeout: deadline - Date.now() });
    const origins = opt.origins.split(',');
    const counts = await Promise.all(origins.map(controlConnections));
    result.control_connections = counts;
    const held = counts.findIndex((n) => n === 1);
    if (held < 0 || counts.filter((n) => n === 1).length !== 1) {
      throw new Error(`cannot tell which origin holds the control channel: ${JSON.stringify(counts)}`);
    }
    killPid = opt.pids.split(',')[held];
    result.killed_origin = origins[held];
    result.second_origin = origins[1 - held];
    second = await context.newPage();
    second.on('pageerror', (e) => result.errors.push({ source: 'pageerror (second)', detail: String(e) }));
    await second.goto(`${origins[1 - held]}/?session=${encodeURIComponent(opt.session)}&device=second`, { timeout: deadline - Date.now() });
    // It follows the session before the kill: it shows the track playing (bounded; the test
    // asserts on what it received).
    await second.waitForFunction((track) => window.__fleet.control.some((m) => m.type === 'state' && m.track === track && m.playing),
      opt.track, { timeout: Math.min(10000, deadline - Date.now()) }).catch(() => {});
  }
  s = await until(`playback past ${killAt} s`, (s) => s.ct >= killAt);
  if (!result.failures.length && !s.errors.length) {
    process.kill(Number(killPid), 'SIGKILL');
    result.killed_at_ms = Date.now();
    result.killed_at_ct = s.ct;
    if (opt.session) {
      // The first page rejoins through nginx (a second `welcome`), before the track ends.
      await page.waitForFunction(() => window.__fleet.control.filter((m) => m.type === 'welcome').length >= 2,
        null, { timeout: deadline - Date.now() }).catch(() => result.failures.push('the first page did not rejoin'));
    }
    s = await until('`ended`', (s) => s.ended || s.events.some((e) => e.type === 'ended'));
  }
  result.control = { first: await page.evaluate(() => window.__fleet.control) };
  if (second) result.control.second = await second.evaluate(() => window.__fleet.control);
  s = await state();
  result.events = s.events;
  result.errors.push(...s.errors);
  result.final_time_s = s.ct;
} catch (e) {
  result.failures.push(`driver: ${e && e.message}`);
} finally {
  if (browser) await browser.close().catch(() => {});
  if (pages) pages.server.close();
  rmSync(userDataDir, { recursive: true, force: true });
}

const firstPlaying = result.events.findIndex((e) => e.type === 'playing');
if (firstPlaying < 0) result.failures.push('never `playing`');
// A `waiting` after the first `playing` with less than STARVED_AHEAD_S buffered is a stall: the
// player ran out of data. One with more buffered is recorded (`waiting_with_data`) but not
// failed: on the loaded 2-core test machines Chromium's audio renderer underruns now and then
// with seconds of data in the buffer (a zero-length `waiting`/`playing` pair), kill or no kill.
const STARVED_AHEAD_S = 0.5;
const waits = firstPlaying < 0 ? [] : result.events.slice(firstPlaying + 1).filter((e) => e.type === 'waiting');
const stalls = waits.filter((e) => e.ahead < STARVED_AHEAD_S);
result.waiting_with_data = waits.filter((e) => e.ahead >= STARVED_AHEAD_S);
if (stalls.length) result.failures.push(`\`waiting\` with no data ahead after the first \`playing\`: ${JSON.stringify(stalls)}`);
if (!result.events.some((e) => e.type === 'ended')) result.failures.push('no `ended`');
if (result.errors.length) result.failures.push(`${result.errors.length} player/page error(s)`);
if (result.failed_requests.length) result.failures.push(`${result.failed_requests.length} failed request(s)`);
result.ok = result.failures.length === 0;
process.stdout.write(JSON.stringify(result, null, 1) + '\n');
process.exit(0);
