// Fast start, measured in a real browser: segue's player page (GET /) in Debian's headless
// Chromium, driven by playwright-core. Prints a JSON summary on stdout for tests/peer_player.rs
// (which asserts the functional facts and prints the figures) and benches/fast_start.sh (which
// runs it several times and compares medians with the targets).
//
// Cases (each in a fresh browser context: an empty HTTP cache, no storage):
//   hlsjs   the anchor: hls.js (default configuration) plays the same track from the same server;
//           click on #start of tests/peers/hlsjs_start.html (served here, on another 127.0.0.1
//           port, so its media requests are CORS requests, answered without preflight) ->
//           `playing`. hls.js is loaded and its Hls instance made before the network is slowed
//           (as segue's page sets itself up on load); the click does loadSource, attachMedia,
//           play.
//   cold    GET /?prefetch=off, wait for the track list, slow the network, click the track ->
//           `playing`. Nothing of the track may have been requested before the click.
//   warm    GET / (load-time prefetch on), slow the network, wait for data-prefetched="true" on
//           the track, click it -> `playing`.
//   gapless GET /, slow the network, click track 1 of a two-track gapless album, seek to 4 s
//           before its end with a click on the #seek canvas (when the track is long enough; a
//           track longer than the page's buffer goal makes the page fetch and append track 2
//           while track 1 plays), then sample audio.buffered every 50 ms in the page through the
//           boundary: one buffered range at every sample, no `waiting`, the playhead moves on in
//           track 2 and the page shows track 2 as current (aria-current, or its #now-title).
//   twotab  two tabs of one context (shared localStorage) on ?session=S, loopback, no slowing:
//           tab A plays; tab B's #play-pause pauses A, again resumes A, #play-here moves playback
//           to B at A's position. Each figure is B's click -> A's (or B's) media event, on the
//           common clock performance.timeOrigin + performance.now() of the two pages.
//
// Timing is in-page: a capture-phase `click` listener on window stamps performance.now() before
// the page's own handlers run, and capture-phase media-event listeners stamp `playing`, `pause`,
// `waiting`… of the page's <audio>. Playwright's own overhead (actionability checks, CDP round
// trips) is outside the measured span. Besides these listeners, the only thing installed in the
// page is a wrapper of WebSocket.prototype.send that notes each frame's `type` and passes it on;
// the player itself is driven only by clicks (tracks, #seek, #play-pause, #play-here).
//
// Network: Chromium's network emulation (CDP Network.emulateNetworkConditions on the page's
// target), not a network namespace with netem (no sch_netem on the test machines). It adds the
// latency to each HTTP request, between sending it and its response headers, and throttles bodies
// to the given throughput; it does not model TCP handshakes (which cost next to nothing on
// loopback, so a new connection is as cheap as a reused one) or congestion. WebSocket frames are
// NOT delayed by it (only the upgrade request is): measured with Chromium 156, an echo round trip
// over a WebSocket took under 10 ms with 100 ms emulated latency. So a start that waited for a
// control-channel reply would be measured too fast by a whole round trip; each start case lists
// the frames the page sent between click and `playing` (`ws_sent_before_playing`), so that the
// reader can tell whether it waits on one.
//
// Usage: node fast_start.mjs --origin URL --track ID [--album ID1,ID2] [--cases LIST]
//          [--latency-ms 100] [--throughput-bps 10000000] [--case-timeout-ms 30000]
//   --origin: segue's http://127.0.0.1:PORT; --track: the track for cold, warm and hlsjs (one of
//   the first three of the page's list, so that the page prefetches it); --album: the two tracks
//   of the gapless album, in order; LIST: comma-separated of hlsjs, cold, warm, gapless, twotab
//   (default all; gapless needs --album).

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { randomBytes } from 'node:crypto';
import { launchChromium, startPageServer as servePages } from './browser.mjs';
import { caseKit, instrument } from './page_probe.mjs';

// The page's library list: a track is clicked there (the queue may hold the same ids).
const LIST = '#tracks';
const PROGRESS_AFTER_START_S = 0.5; // playback "started" = `playing`, then this much playhead movement
const GAPLESS_SAMPLE_MS = 50;
const GAPLESS_PLAY_INTO_TWO_S = 1.5; // how far into track 2 the playhead must get
const GAPLESS_SEEK_BEFORE_END_S = 4; // where in track 1 sampling starts (by a seek, when it is long)
const TRANSFER_POSITION_TOLERANCE_S = 1;
const TRANSFER_QUIET_MS = 1000;
const DEVICES_LISTED_MS = 5000; // how long a tab may take to list a device that joined // after a transfer, the old tab must stay paused this long
// How the page marks the track it is playing (its contract names none yet): the first of these
// that matches an element with data-track-id.
const CURRENT_TRACK_SELECTORS = [
  '[data-track-id][aria-current="true"]', '[data-track-id][data-current="true"]',
  '[data-track-id][data-playing="true"]', '[data-track-id][aria-current="page"]',
  '[data-track-id].current', '[data-track-id].playing',
];

const { values: opt } = parseArgs({
  options: {
    origin: { type: 'string' },
    track: { type: 'string' },
    album: { type: 'string' },
    cases: { type: 'string', default: 'hlsjs,cold,warm,gapless,twotab' },
    'latency-ms': { type: 'string', default: '100' },
    'throughput-bps': { type: 'string', default: '10000000' },
    'case-timeout-ms': { type: 'string', default: '30000' },
  },
});
for (const k of ['origin', 'track']) {
  if (!opt[k]) throw new Error(`missing --${k}`);
}
const origin = opt.origin.replace(/\/$/, '');
const album = opt.album ? opt.album.split(',') : null;
const caseNames = opt.cases.split(',').filter(Boolean);
if (caseNames.includes('gapless') && (!album || album.length !== 2)) throw new Error('gapless needs --album ID1,ID2');
const caseTimeoutMs = Number(opt['case-timeout-ms']);
const EMULATION = {
  offline: false,
  latency: Number(opt['latency-ms']),
  downloadThroughput: Number(opt['throughput-bps']) / 8, // bytes/s
  uploadThroughput: Number(opt['throughput-bps']) / 8,
};
// The run's own deadline, in case something hangs outside a case (launch, close).
const RUN_DEADLINE_MS = (caseTimeoutMs + 5000) * caseNames.length + 30000;
setTimeout(() => {
  process.stderr.write(`fast_start.mjs: run deadline of ${RUN_DEADLINE_MS} ms passed\n`);
  process.exit(3);
}, RUN_DEADLINE_MS).unref();

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const round = (x) => (x == null ? null : Math.round(x * 10) / 10);

/** Serves hlsjs_start.html and hls.js on 127.0.0.1:0; resolves to { server, origin }. */
function startPageServer() {
  const files = {
    '/hlsjs_start.html': ['hlsjs_start.html', 'text/html; charset=utf-8'],
    '/lib/hls.js': ['node_modules/hls.js/dist/hls.min.js', 'text/javascript'],
  };
  return servePages(files);
}

async function slowNetwork(context, page) {
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions', EMULATION);
}

/** The first `type` media event at or after in-page time `t` (ms), or undefined. */
const eventAfter = (media, type, t) => media.find((m) => m.type === type && m.t >= t);

/** Clicks `selector`, then waits for `playing` after that click and for the playhead to move
 *  PROGRESS_AFTER_START_S further. Returns the click, the `playing` event, the ms between them
 *  and what the start cost, or null (a failure recorded) when playback did not start. */
async function clickToPlaying(kit, page, selector, what) {
  const before = await page.evaluate(() => window.__fs.clicks.length);
  await page.click(selector, { timeout: kit.remaining() });
  const playing = await kit.until(page, `\`playing\` after the click on ${what}`, (n) => {
    const c = window.__fs.clicks[n];
    return c && window.__fs.media.find((m) => m.type === 'playing' && m.t >= c.t) ? true : null;
  }, before);
  const fs = await page.evaluate((n) => ({ click: window.__fs.clicks[n], media: window.__fs.media, ws: window.__fs.ws }), before);
  if (!playing || !fs.click) return null;
  const ev = eventAfter(fs.media, 'playing', fs.click.t);
  const requests = await page.evaluate((t) => window.__fs.requests(t), fs.click.t);
  const moved = await kit.until(page, `the playhead to move ${PROGRESS_AFTER_START_S} s after \`playing\` (${what})`,
    (ct) => { const a = window.__fs.audio(); return a && a.ct >= ct ? a : null; }, ev.ct + PROGRESS_AFTER_START_S);
  return {
    click: fs.click,
    playing: ev,
    ms: ev.t - fs.click.t,
    moved: !!moved,
    // What the start cost: the requests started between the click and `playing` (the byte
    // counts of cross-origin ones are 0: segue sends no Timing-Allow-Origin).
    requests_before_playing: requests.filter((r) => r.start <= ev.t - fs.click.t).map((r) => ({ ...r, start: round(r.start), end: round(r.end) })),
    ws_sent_before_playing: fs.ws.filter((w) => w.t >= fs.click.t && w.t <= ev.t).map((w) => w.type),
    // Where the time went inside the page: each media event up to `playing`, ms after the click.
    events_before_playing: fs.media.filter((m) => m.t >= fs.click.t && m.t <= ev.t).map((m) => `${m.type}@${Math.round(m.t - fs.click.t)}`),
    media_errors: fs.media.filter((m) => m.type === 'error'),
  };
}

function recordStart(kit, start) {
  const r = kit.result;
  if (!start) return;
  r.ms = round(start.ms);
  r.requests_before_playing = start.requests_before_playing;
  r.ws_sent_before_playing = start.ws_sent_before_playing;
  r.events_before_playing = start.events_before_playing;
  if (start.media_errors.length) r.failures.push(`media error events: ${JSON.stringify(start.media_errors)}`);
}

async function caseHlsjs(browser, kit, pageOrigin, master) {
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    kit.watch(page, 'hlsjs');
    await page.addInitScript(instrument, CURRENT_TRACK_SELECTORS);
    await page.goto(`${pageOrigin}/hlsjs_start.html?src=${encodeURIComponent(master)}`, { timeout: kit.remaining() });
    if (!(await kit.until(page, 'hls.js to load', () => window.peer.ready || window.peer.errors.length > 0))) return;
    await slowNetwork(context, page);
    const start = await clickToPlaying(kit, page, '#start', 'hls.js #start');
    recordStart(kit, start);
    const peer = await page.evaluate(() => window.peer);
    kit.result.hls_levels = peer.levels;
    kit.result.hls_start_level = peer.level;
    for (const e of peer.errors) kit.result.errors.push({ tab: 'hlsjs', ...e });
    kit.result.hls_nonfatal_errors = peer.warnings.map((w) => ({ ...w, t: round(w.t - (start ? start.click.t : 0)) }));
    if (start && !start.moved) kit.result.failures.push('hls.js: the playhead did not move after `playing`');
  } finally {
    await context.close().catch(() => {});
  }
}

/** Opens segue's page (with `query`) in a fresh context, instrumented. */
async function openPlayer(browser, kit, query) {
  const context = await browser.newContext();
  const page = await context.newPage();
  kit.watch(page, 'player');
  await page.addInitScript(instrument, CURRENT_TRACK_SELECTORS);
  await page.goto(`${origin}/${query}`, { timeout: kit.remaining() });
  return { context, page };
}

async function caseStart(browser, kit, warm) {
  const { context, page } = await openPlayer(browser, kit, warm ? '' : '?prefetch=off');
  const sel = `${LIST} [data-track-id="${opt.track}"]`;
  try {
    if (!(await kit.until(page, `the track list to show ${sel}`, (s) => !!document.querySelector(s), sel))) return;
    await slowNetwork(context, page);
    if (warm) {
      const t0 = Date.now();
      if (!(await kit.until(page, `data-prefetched="true" on ${sel}`, (s) => !!document.querySelector(s), `${sel}[data-prefetched="true"]`))) {
        kit.result.prefetched = await page.evaluate(() => [...document.querySelectorAll('[data-prefetched="true"]')].map((e) => e.dataset.trackId));
        return;
      }
      kit.result.prefetch_wait_ms = Date.now() - t0;
    }
    const loadedBefore = await page.evaluate(() => window.__fs.requests(0).map((r) => r.path));
    const ofTrack = loadedBefore.filter((p) => p.startsWith(`/media/${opt.track}/`) || p.startsWith('/api/prefetch'));
    if (!warm && ofTrack.length) kit.result.failures.push(`cold start is not cold: requested before the click: ${ofTrack.join(', ')}`);
    if (warm) kit.result.prefetched_before_click = ofTrack;
    const start = await clickToPlaying(kit, page, sel, `track ${opt.track}`);
    recordStart(kit, start);
    if (start && !start.moved) kit.result.failures.push('the playhead did not move after `playing`');
  } finally {
    await context.close().catch(() => {});
  }
}

async function caseGapless(browser, kit, [oneInfo, twoInfo]) {
  const [one, two] = album;
  // Track 2 is shown: marked current, or its title in #now-title.
  const showsTwo = [two, `title:${twoInfo.title}`];
  const { context, page } = await openPlayer(browser, kit, '');
  const sel = `${LIST} [data-track-id="${one}"]`;
  const r = kit.result;
  try {
    if (!(await kit.until(page, `the track list to show ${sel}`, (s) => !!document.querySelector(s), sel))) return;
    await slowNetwork(context, page);
    const start = await clickToPlaying(kit, page, sel, `track ${one}`);
    if (!start) return;
    r.ms = round(start.ms);
    // A track longer than the page's buffer goal: seek near its end with a click on the #seek
    // canvas (as a listener would), so that track 2 is fetched and appended while track 1 plays.
    const seekTo = oneInfo.duration - GAPLESS_SEEK_BEFORE_END_S;
    let since = start.playing.t;
    if (seekTo > GAPLESS_SEEK_BEFORE_END_S) {
      const box = await page.locator('#seek').boundingBox({ timeout: kit.remaining() });
      if (!box) { r.failures.push('#seek has no box on the page'); return; }
      const n = await page.evaluate(() => window.__fs.media.length);
      await page.click('#seek', { position: { x: (box.width * seekTo) / oneInfo.duration, y: box.height / 2 }, timeout: kit.remaining() });
      // Seeked, playing, and a little way on: where the page says it is, and the element agrees.
      const at = await kit.until(page, `playback to go on from the seek to ${seekTo.toFixed(1)} s of track 1`, ([n, to]) => {
        const fs = window.__fs;
        const a = fs.audio();
        const pos = document.querySelector('#seek').getAttribute('aria-valuenow');
        const ev = fs.media.slice(n).findLast((m) => m.type === 'playing' || m.type === 'seeked');
        return ev && !a.paused && Number(pos) >= to - 1 && a.ct >= ev.ct + 0.3 ? { t: performance.now(), pos: Number(pos), ct: a.ct } : null;
      }, [n, seekTo]);
      if (!at) return;
      r.seeked = { to: round(seekTo), page_position: at.pos, ct: round(at.ct) };
      since = at.t;
    }
    // From here on, sample in the page every GAPLESS_SAMPLE_MS.
    await page.evaluate((every) => {
      const fs = window.__fs;
      fs.samples = [];
      const take = () => fs.samples.push({ t: performance.now(), current: fs.current(), ...fs.audio() });
      take();
      fs.sampler = setInterval(take, every);
    }, GAPLESS_SAMPLE_MS);
    await kit.until(page, `track ${two} to show as current and play ${GAPLESS_PLAY_INTO_TWO_S} s`, ([shows, s]) => {
      const samples = window.__fs.samples;
      const first = samples.findIndex((x) => shows.includes(x.current));
      return first >= 0 && samples[samples.length - 1].ct >= samples[first].ct + s;
    }, [showsTwo, GAPLESS_PLAY_INTO_TWO_S]);
    const fs = await page.evaluate(() => { clearInterval(window.__fs.sampler); return { samples: window.__fs.samples, media: window.__fs.media, longTasks: window.__fs.longTasks }; });
    const samples = fs.samples;
    const firstTwo = samples.findIndex((x) => showsTwo.includes(x.current));
    const bad = samples.filter((x) => x.buffered.length !== 1);
    // A seek by the page itself (jumping a gap) is as much a failure as a stall.
    const stalls = fs.media.filter((m) => m.t >= since && ['waiting', 'stalled', 'seeking', 'ended', 'emptied', 'error'].includes(m.type));
    r.samples = samples.length;
    r.sampled_s = samples.length ? round((samples[samples.length - 1].t - samples[0].t) / 1000) : 0;
    r.buffered_ranges_max = Math.max(0, ...samples.map((x) => x.buffered.length));
    r.samples_not_one_range = bad.length;
    r.stall_events = stalls.map((m) => ({ type: m.type, ct: round(m.ct), t: round(m.t - since) }));
    // The samples around each of them: [ms since sampling began, currentTime, readyState, buffered].
    r.samples_near_stalls = stalls.map((m) => samples.filter((x) => Math.abs(x.t - m.t) <= 300)
      .map((x) => [Math.round(x.t - since), Math.round(x.ct * 1000) / 1000, x.rs, x.buffered]));
    // Long main-thread tasks and gaps in the 50 ms sampling: signs of a busy or starved renderer.
    r.long_tasks = fs.longTasks.filter((l) => l.t >= since).map((l) => ({ t: round(l.t - since), ms: round(l.ms) }));
    r.longest_sample_gap_ms = Math.round(Math.max(0, ...samples.slice(1).map((x, i) => x.t - samples[i].t)));
    r.current_sequence = samples.map((x) => x.current).filter((c, i, a) => i === 0 || c !== a[i - 1]);
    // Playhead seconds per wall-clock second over the sampled span (about 1 when nothing stalls).
    r.play_rate = samples.length > 1
      ? Math.round(((samples[samples.length - 1].ct - samples[0].ct) / ((samples[samples.length - 1].t - samples[0].t) / 1000)) * 100) / 100
      : null;
    // Every 500 ms: [ms since `playing`, currentTime, buffered ranges].
    r.trace = samples.filter((_, i) => i % Math.round(500 / GAPLESS_SAMPLE_MS) === 0 || i === firstTwo)
      .map((x) => [Math.round(x.t - since), round(x.ct), x.buffered.map(([a, b]) => [round(a), round(b)])]);
    r.switch_ct = firstTwo >= 0 ? round(samples[firstTwo].ct) : null;
    r.final_ct = samples.length ? round(samples[samples.length - 1].ct) : null;
    r.buffered_at_switch = firstTwo >= 0 ? samples[firstTwo].buffered : null;
    if (bad.length) r.failures.push(`${bad.length} of ${samples.length} samples had other than one buffered range, first: ${JSON.stringify(bad[0])}`);
    if (stalls.length) r.failures.push(`media events through the boundary: ${JSON.stringify(r.stall_events)}`);
    if (firstTwo < 0) r.failures.push(`the page never showed track ${two} as current (sequence: ${JSON.stringify(r.current_sequence)})`);
    else if (firstTwo === 0) r.failures.push(`track ${two} was current from the first sample: the boundary was not sampled`);
    else if (samples[samples.length - 1].ct < samples[firstTwo].ct + GAPLESS_PLAY_INTO_TWO_S) r.failures.push('the playhead did not move on in track 2');
    if (samples.some((x, i) => i > 0 && x.ct + 0.01 < samples[i - 1].ct)) r.failures.push('the playhead went backwards (the track change reloaded the media?)');
  } finally {
    await context.close().catch(() => {});
  }
}

async function caseTwoTab(browser, kit) {
  const r = kit.result;
  const session = `fs${randomBytes(6).toString('hex')}`;
  const context = await browser.newContext();
  try {
    const tabs = {};
    for (const name of ['A', 'B']) {
      const page = await context.newPage();
      kit.watch(page, name);
      await page.addInitScript(instrument, CURRENT_TRACK_SELECTORS);
      await page.goto(`${origin}/?session=${session}&device=tab-${name}`, { timeout: kit.remaining() });
      tabs[name] = page;
    }
    const { A, B } = tabs;
    for (const [name, page] of Object.entries(tabs)) {
      if (!(await kit.until(page, `tab ${name}: data-ws="open"`, () => document.body.dataset.ws === 'open'))) return;
    }
    // Each tab's picker lists both devices. A failure, but the commands are still measured.
    for (const [name, page] of Object.entries(tabs)) {
      await kit.until(page, `tab ${name}: both devices in #devices`,
        () => document.querySelectorAll('#devices [data-device-id]').length === 2, undefined, DEVICES_LISTED_MS);
    }
    r.visibility = { A: await A.evaluate(() => document.visibilityState), B: await B.evaluate(() => document.visibilityState) };
    const ids = { A: await A.evaluate(() => document.body.dataset.deviceId), B: await B.evaluate(() => document.body.dataset.deviceId) };
    r.devices = ids;
    const sel = `${LIST} [data-track-id="${opt.track}"]`;
    if (!(await kit.until(A, `tab A: ${sel}`, (s) => !!document.querySelector(s), sel))) return;
    const start = await clickToPlaying(kit, A, sel, `tab A: track ${opt.track}`);
    if (!start) return;

    /** Once B's #play-pause offers `offer` (its aria-label: B shows the session's state), B
     *  clicks `selector`; waits for each [tab, event] after it; returns ms from the click
     *  (common clock) to each, and the events. */
    const command = async (label, offer, selector, waits) => {
      if (!(await kit.until(B, `tab B: #play-pause to offer ${offer}`, (o) => document.querySelector('#play-pause').getAttribute('aria-label') === o, offer))) return null;
      const n = await B.evaluate(() => window.__fs.clicks.length);
      await B.click(selector, { timeout: kit.remaining() });
      const click = await kit.until(B, `tab B: the click on ${selector}`, (i) => window.__fs.clicks[i] || null, n);
      if (!click) return null;
      const out = { label };
      for (const [tab, type] of waits) {
        const page = tabs[tab];
        const ev = await kit.until(page, `tab ${tab}: \`${type}\` after tab B's ${label}`,
          ([type, at]) => window.__fs.media.find((m) => m.type === type && m.at >= at) || null, [type, click.at]);
        if (!ev) return null;
        out[`${tab}_${type}_ms`] = round(ev.at - click.at);
        out[`${tab}_${type}_ct`] = round(ev.ct);
      }
      return out;
    };
    const steps = [];
    const pause = await command('pause', 'Pause', '#play-pause', [['A', 'pause']]);
    if (!pause) return;
    steps.push(pause);
    const resume = await command('play', 'Play', '#play-pause', [['A', 'play'], ['A', 'playing']]);
    if (!resume) return;
    steps.push(resume);
    // Let A play on a little, so that the transfer happens mid-track.
    const ctA = (await A.evaluate(() => window.__fs.audio())).ct;
    await kit.until(A, 'tab A: playback to move on after the resume', (ct) => window.__fs.audio().ct >= ct, ctA + 1);
    const transfer = await command('play-here', 'Pause', '#play-here', [['B', 'playing'], ['A', 'pause']]);
    if (!transfer) return;
    steps.push(transfer);
    r.steps = steps;
    r.pause_ms = pause.A_pause_ms;
    r.resume_ms = resume.A_playing_ms;
    r.resume_play_ms = resume.A_play_ms;
    r.transfer_ms = transfer.B_playing_ms;
    r.transfer_a_pause_ms = transfer.A_pause_ms;
    r.transfer_position_gap_s = round(Math.abs(transfer.B_playing_ct - transfer.A_pause_ct));
    if (r.transfer_position_gap_s > TRANSFER_POSITION_TOLERANCE_S) {
      r.failures.push(`after the transfer B plays at ${transfer.B_playing_ct} s but A paused at ${transfer.A_pause_ct} s`);
    }
    // A stays stopped and B plays on.
    const ctB = (await B.evaluate(() => window.__fs.audio())).ct;
    await sleep(Math.min(TRANSFER_QUIET_MS, kit.remaining()));
    const after = { A: await A.evaluate(() => window.__fs.audio()), B: await B.evaluate(() => window.__fs.audio()) };
    r.after_transfer = { A_paused: after.A.paused, B_paused: after.B.paused, B_moved_s: round(after.B.ct - ctB) };
    if (!after.A.paused) r.failures.push('tab A is playing again after the transfer to B');
    if (after.B.paused || after.B.ct <= ctB) r.failures.push('tab B does not play on after the transfer');
    const active = async (page) => page.evaluate(() => [...document.querySelectorAll('#devices [data-active="true"]')].map((e) => e.dataset.deviceId));
    r.active_device_shown = { A: await active(A), B: await active(B) };
    for (const tab of ['A', 'B']) {
      const shown = r.active_device_shown[tab];
      if (shown.length !== 1 || shown[0] !== ids.B) r.failures.push(`tab ${tab}'s #devices shows ${JSON.stringify(shown)} active, not B (${ids.B})`);
    }
  } finally {
    await context.close().catch(() => {});
  }
}

async function trackInfo(id) {
  const res = await fetch(`${origin}/api/tracks/${id}`);
  if (!res.ok) throw new Error(`GET /api/tracks/${id}: ${res.status}`);
  return res.json();
}

const track = await trackInfo(opt.track);
const master = new URL(track.hls, origin).href;
const albumInfo = album ? await Promise.all(album.map(trackInfo)) : [];
const { server, origin: pageOrigin } = await startPageServer();
const userDataDir = mkdtempSync(join(tmpdir(), 'segue-chromium-'));
const summary = {
  chromium: null, origin, page_origin: pageOrigin, track: opt.track, album,
  network: { emulation: 'chromium (CDP Network.emulateNetworkConditions)', latency_ms: EMULATION.latency, throughput_bps: EMULATION.downloadThroughput * 8, cases: ['hlsjs', 'cold', 'warm', 'gapless'], websocket_frames_delayed: false },
  cases: [],
};
let browser;
try {
  browser = await launchChromium(userDataDir);
  summary.chromium = browser.version();
  const run = {
    hlsjs: (kit) => caseHlsjs(browser, kit, pageOrigin, master),
    cold: (kit) => caseStart(browser, kit, false),
    warm: (kit) => caseStart(browser, kit, true),
    gapless: (kit) => caseGapless(browser, kit, albumInfo),
    twotab: (kit) => caseTwoTab(browser, kit),
  };
  for (const name of caseNames) {
    if (!run[name]) throw new Error(`unknown case ${name}`);
    const started = Date.now();
    const kit = caseKit(name, started + caseTimeoutMs);
    let finished = false;
    await Promise.race([
      run[name](kit).catch((e) => kit.result.failures.push(`driver: ${e && e.message}`)),
      sleep(caseTimeoutMs + 5000).then(() => { if (!finished) kit.result.failures.push(`case hung past ${caseTimeoutMs + 5000} ms`); }),
    ]);
    finished = true;
    const r = kit.result;
    if (r.errors.length) r.failures.push(`${r.errors.length} page/player error(s): ${JSON.stringify(r.errors)}`);
    r.ok = r.failures.length === 0;
    r.seconds = (Date.now() - started) / 1000;
    summary.cases.push(r);
  }
} finally {
  if (browser) await browser.close().catch(() => {});
  server.close();
  rmSync(userDataDir, { recursive: true, force: true });
}
const pick = (name, key) => { const c = summary.cases.find((x) => x.case === name); return c && c[key] != null ? c[key] : null; };
summary.figures = {
  cold_ms: pick('cold', 'ms'),
  warm_ms: pick('warm', 'ms'),
  hlsjs_ms: pick('hlsjs', 'ms'),
  gapless_first_start_ms: pick('gapless', 'ms'),
  two_tab_pause_ms: pick('twotab', 'pause_ms'),
  two_tab_resume_ms: pick('twotab', 'resume_ms'),
  two_tab_transfer_ms: pick('twotab', 'transfer_ms'),
};
process.stdout.write(JSON.stringify(summary, null, 1) + '\n');
process.exit(0);
