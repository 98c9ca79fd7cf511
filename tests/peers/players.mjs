// Plays a segue track in real browser players (hls.js, dash.js, shaka-player) in Debian's
// headless Chromium, driven by playwright-core, and prints a JSON summary on stdout for
// tests/peer_browsers.rs to assert on.
//
// The page and the player libraries are served by a static server started here on another
// 127.0.0.1 port than segue, so every media request crosses origins and needs segue's CORS.
// For each case the driver waits for playback to pass SWITCH_AT_S, forces the lowest rendition
// through the player's API, waits until that rendition's segments have been fetched and the
// playhead has moved on, then does the same for the highest; it records every request, media
// event and player error. Each case, and the whole run, has a hard deadline.
//
// Usage: node players.mjs --hls URL --dash URL --low DIR --high DIR [--hls-low DIR] [--cases LIST] [--case-timeout-ms N]
//   --low/--high: the rendition directory names (as in the segment URLs) of the lowest and
//   highest bitrate; --hls-low: the lowest in the HLS master playlist, when it lists fewer
//   renditions than the MPD (default: --low); LIST: comma-separated of hls.js:hls,
//   dash.js:dash, shaka:hls, shaka:dash.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { launchChromium, startPageServer as servePages } from './browser.mjs';

const SWITCH_AT_S = 2; // playhead position of the first forced switch
const MIN_PROGRESS_S = 1.5; // how far the playhead must move after each switch
const MAX_STALL_MS = 1000; // longest tolerated `waiting` after a switch
const LIBS = {
  '/lib/hls.js': 'node_modules/hls.js/dist/hls.min.js',
  '/lib/dash.js': 'node_modules/dashjs/dist/modern/umd/dash.all.min.js',
  '/lib/shaka.js': 'node_modules/shaka-player/dist/shaka-player.compiled.js',
};

const { values: opt } = parseArgs({
  options: {
    hls: { type: 'string' },
    dash: { type: 'string' },
    low: { type: 'string' },
    'hls-low': { type: 'string' },
    high: { type: 'string' },
    cases: { type: 'string', default: 'hls.js:hls,dash.js:dash,shaka:hls,shaka:dash' },
    'case-timeout-ms': { type: 'string', default: '30000' },
  },
});
for (const k of ['hls', 'dash', 'low', 'high']) {
  if (!opt[k]) throw new Error(`missing --${k}`);
}
const caseTimeoutMs = Number(opt['case-timeout-ms']);
const cases = opt.cases.split(',').map((c) => {
  const [player, protocol] = c.split(':');
  return { player, protocol };
});
// The run's own deadline, in case something hangs outside a case (launch, close).
const RUN_DEADLINE_MS = caseTimeoutMs * cases.length + 30000;
setTimeout(() => {
  process.stderr.write(`players.mjs: run deadline of ${RUN_DEADLINE_MS} ms passed\n`);
  process.exit(3);
}, RUN_DEADLINE_MS).unref();

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Serves the test page and the player libraries on 127.0.0.1:0; resolves to its origin. */
function startPageServer() {
  const files = { '/player.html': ['player.html', 'text/html; charset=utf-8'] };
  for (const [url, path] of Object.entries(LIBS)) files[url] = [path, 'text/javascript'];
  return servePages(files);
}

/** Longest `waiting` (ms) that began at or after `since`: it ends at the next `playing`, or
 *  at the next `timeupdate` whose currentTime moved; one still open ends at `until`. */
function longestStallMs(events, since, until) {
  let longest = 0;
  for (let i = 0; i < events.length; i++) {
    const w = events[i];
    if (w.type !== 'waiting' || w.t < since) continue;
    const end = events.slice(i + 1).find((e) => e.type === 'playing' || (e.type === 'timeupdate' && e.ct > w.ct));
    longest = Math.max(longest, (end ? end.t : until) - w.t);
  }
  return longest;
}

const isSegmentOf = (url, dir) => url.includes(`/${dir}/`) && url.split('?')[0].endsWith('.m4s');

async function runCase(browser, pageOrigin, { player, protocol }, deadline) {
  const src = protocol === 'hls' ? opt.hls : opt.dash;
  const result = { player, protocol, src, ok: false, failures: [], switches: [], errors: [], requests: [] };
  const context = await browser.newContext();
  const page = await context.newPage();
  // Every request must reach segue, so that the request log shows what the server served
  // (a forced switch back to a rendition would otherwise be answered from the HTTP cache).
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.setCacheDisabled', { cacheDisabled: true });
  const requests = result.requests;
  page.on('request', async (r) => {
    const entry = { t: Date.now(), method: r.method(), url: r.url() };
    requests.push(entry);
    entry.origin = (await r.allHeaders()).origin || null; // set by the network stack
  });
  page.on('response', async (resp) => {
    const entry = requests.findLast((q) => q.url === resp.url() && q.status === undefined);
    if (!entry) return;
    entry.status = resp.status();
    entry.acao = (await resp.allHeaders())['access-control-allow-origin'] || null;
  });
  page.on('requestfailed', (r) => {
    const entry = requests.findLast((q) => q.url === r.url());
    if (entry) entry.failed = r.failure() && r.failure().errorText;
  });
  page.on('pageerror', (e) => result.errors.push({ source: 'pageerror', detail: String(e) }));
  page.on('console', (m) => { if (m.type() === 'error') result.errors.push({ source: 'console', detail: m.text() }); });

  const remaining = () => Math.max(0, deadline - Date.now());
  const state = () => page.evaluate(() => ({
    ready: peer.ready, errors: peer.errors, events: peer.events,
    currentTime: document.getElementById('media').currentTime, renditions: peer.renditions && peer.renditions(),
  }));
  /** Polls the page until `done(state)` or the case deadline; returns the last state. */
  const until = async (what, done) => {
    for (;;) {
      const s = await state();
      if (done(s) || s.errors.length) return s;
      if (remaining() === 0) {
        result.failures.push(`timed out waiting for ${what} (currentTime ${s.currentTime.toFixed(2)} s)`);
        return s;
      }
      await sleep(100);
    }
  };

  try {
    const url = `${pageOrigin}/player.html?player=${encodeURIComponent(player)}&src=${encodeURIComponent(src)}`;
    await page.goto(url, { timeout: remaining() });
    let s = await until(`playback past ${SWITCH_AT_S} s`, (s) => s.currentTime >= SWITCH_AT_S);
    result.renditions = s.renditions;
    const low = protocol === 'hls' && opt['hls-low'] ? opt['hls-low'] : opt.low;
    for (const [which, dir] of [['lowest', low], ['highest', opt.high]]) {
      if (result.failures.length || s.errors.length) break;
      const at = Date.now();
      const ct = s.currentTime;
      const chosen = await page.evaluate((w) => peer.select(w), which);
      s = await until(`${which} rendition (${dir}) segments and ${MIN_PROGRESS_S} s of play after the switch`, (s) =>
        s.currentTime >= ct + MIN_PROGRESS_S &&
        requests.some((q) => q.t >= at && isSegmentOf(q.url, dir) && q.status === 200));
      const fetched = requests.filter((q) => q.t >= at && isSegmentOf(q.url, dir)).map((q) => q.url.split('/').slice(-2).join('/'));
      const sw = { which, dir, chosen, at_s: ct, after_s: s.currentTime, segments_fetched: fetched, longest_stall_ms: longestStallMs(s.events, at, Date.now()) };
      result.switches.push(sw);
      if (fetched.length === 0) result.failures.push(`no ${which} segment (${dir}) requested after the switch`);
      if (sw.longest_stall_ms > MAX_STALL_MS) result.failures.push(`stalled ${sw.longest_stall_ms} ms after switching to the ${which} rendition`);
      if (s.currentTime < ct + MIN_PROGRESS_S) result.failures.push(`playhead moved only ${(s.currentTime - ct).toFixed(2)} s after switching to the ${which} rendition`);
    }
    s = await state();
    result.errors.push(...s.errors);
    result.final_time_s = s.currentTime;
    if (s.currentTime < 3) result.failures.push(`currentTime only reached ${s.currentTime.toFixed(2)} s`);
  } catch (e) {
    result.failures.push(`driver: ${e && e.message}`);
  } finally {
    await context.close().catch(() => {});
  }

  const segueOrigin = new URL(src).origin;
  const media = requests.filter((q) => q.url.startsWith(segueOrigin + '/'));
  const answered = media.filter((q) => q.status !== undefined);
  result.cors = {
    responses: answered.length,
    with_origin_header: answered.filter((q) => q.origin === pageOrigin).length,
    with_acao: answered.filter((q) => q.acao).length,
  };
  if (answered.length === 0) result.failures.push('no response from segue');
  if (result.cors.with_origin_header < answered.length) result.failures.push('some media requests were not cross-origin (no Origin header)');
  if (result.cors.with_acao < answered.length) result.failures.push('some media responses had no Access-Control-Allow-Origin');
  for (const q of media) {
    if (q.failed || (q.status !== undefined && q.status >= 400)) result.failures.push(`request ${q.url}: ${q.failed || q.status}`);
  }
  if (result.errors.length) result.failures.push(`${result.errors.length} player/page error(s)`);
  result.requests = media.map((q) => ({ t: q.t, url: q.url, origin: q.origin ?? null, status: q.status ?? null, failed: q.failed ?? null, acao: q.acao ?? null }));
  result.ok = result.failures.length === 0;
  return result;
}

const { server, origin: pageOrigin } = await startPageServer();
const userDataDir = mkdtempSync(join(tmpdir(), 'segue-chromium-'));
const summary = { chromium: null, page_origin: pageOrigin, cases: [] };
let browser;
try {
  browser = await launchChromium(userDataDir);
  summary.chromium = browser.version();
  for (const c of cases) {
    const started = Date.now();
    const deadline = started + caseTimeoutMs;
    const r = await Promise.race([
      runCase(browser, pageOrigin, c, deadline),
      sleep(caseTimeoutMs + 5000).then(() => ({ ...c, ok: false, failures: [`case hung past ${caseTimeoutMs + 5000} ms`] })),
    ]);
    r.seconds = (Date.now() - started) / 1000;
    summary.cases.push(r);
  }
} finally {
  if (browser) await browser.close().catch(() => {});
  server.close();
  rmSync(userDataDir, { recursive: true, force: true });
}
process.stdout.write(JSON.stringify(summary, null, 1) + '\n');
process.exit(0);
