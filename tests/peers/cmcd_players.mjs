// Plays a segue track in hls.js (HLS), dash.js (DASH) and shaka-player (DASH) with their CMCD
// (CTA-5004) reporting on, in Debian's headless Chromium, and prints a JSON summary on stdout
// for tests/peer_cmcd.rs: per player, how far playback got, the errors, and every request to
// segue with its status, how it carried CMCD (`query` or `header`) and the CMCD data (the
// decoded `CMCD` query argument, or the four `CMCD-*` headers joined by commas).
//
// The players are configured as an application would turn CMCD on: hls.js with `cmcd: {}`
// (its own session id, query mode), dash.js with `streaming.cmcd.enabled` (query mode, its
// default), shaka with `cmcd: {enabled: true, useHeaders: true}` (header mode: each request is
// a CORS request with custom headers, so it needs segue's preflight answer). The page and the
// libraries come from a static server on another 127.0.0.1 port, so every request to segue is
// a CORS request, as in players.mjs.
//
// Usage: node cmcd_players.mjs --hls URL --dash URL [--play-s N] [--case-timeout-ms N]

const CMCD_HEADERS = ['cmcd-request', 'cmcd-object', 'cmcd-status', 'cmcd-session'];

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { launchChromium } from './browser.mjs';

const { values: opt } = parseArgs({
  options: {
    hls: { type: 'string' },
    dash: { type: 'string' },
    'play-s': { type: 'string', default: '2' },
    'case-timeout-ms': { type: 'string', default: '20000' },
  },
});
for (const k of ['hls', 'dash']) if (!opt[k]) throw new Error(`missing --${k}`);
const playS = Number(opt['play-s']);
const caseTimeoutMs = Number(opt['case-timeout-ms']);
setTimeout(() => {
  process.stderr.write('cmcd_players.mjs: run deadline passed\n');
  process.exit(3);
}, caseTimeoutMs * 3 + 30000).unref();

const PAGE = `<!doctype html><html><head><meta charset="utf-8"><link rel="icon" href="data:,"></head>
<body><audio id="media" preload="auto"></audio><script>
  const params = new URLSearchParams(location.search);
  const media = document.getElementById('media');
  window.peer = { errors: [] };
  const fail = (source, detail) => peer.errors.push(source + ': ' + String(detail));
  media.addEventListener('error', () => fail('media', media.error && media.error.code));
  const starters = {
    'hls.js': () => {
      const hls = new Hls({ cmcd: {}, maxBufferLength: 8, maxMaxBufferLength: 8 });
      hls.on(Hls.Events.ERROR, (_e, d) => { if (d.fatal) fail('hls.js', d.details); });
      hls.on(Hls.Events.MANIFEST_PARSED, () => media.play().catch((e) => fail('play', e)));
      hls.loadSource(params.get('src'));
      hls.attachMedia(media);
    },
    'dash.js': () => {
      const p = dashjs.MediaPlayer().create();
      p.updateSettings({
        debug: { logLevel: dashjs.Debug.LOG_LEVEL_WARNING },
        // The buffer goals of player.html: with a 4 s goal (one segment) and CMCD on, dash.js
        // 5.2.1 requested nothing after the first segment in our runs, against a plain static
        // server too; with these it plays.
        streaming: {
          cmcd: { enabled: true },
          buffer: { bufferTimeDefault: 8, bufferTimeAtTopQuality: 8, bufferTimeAtTopQualityLongForm: 8 },
        },
      });
      p.on(dashjs.MediaPlayer.events.ERROR, (e) => fail('dash.js', JSON.stringify(e.error || e)));
      p.initialize(media, params.get('src'), true);
    },
    shaka: async () => {
      shaka.polyfill.installAll();
      const p = new shaka.Player();
      p.addEventListener('error', (e) => fail('shaka', JSON.stringify(e.detail)));
      p.configure({ cmcd: { enabled: true, useHeaders: true }, streaming: { bufferingGoal: 8 } });
      await p.attach(media);
      await p.load(params.get('src'));
      media.play().catch((e) => fail('play', e));
    },
  };
  const player = params.get('player');
  const script = document.createElement('script');
  script.src = { 'hls.js': '/lib/hls.js', 'dash.js': '/lib/dash.js', shaka: '/lib/shaka.js' }[player];
  script.onload = () => Promise.resolve().then(() => starters[player]()).catch((e) => fail('start', e));
  script.onerror = () => fail('page', 'cannot load ' + script.src);
  document.head.appendChild(script);
</script></body></html>`;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function runCase(browser, origin, player, src) {
  const result = { player, src, currentTime: 0, errors: [], requests: [] };
  const context = await browser.newContext();
  const page = await context.newPage();
  // Every request reaches segue (no HTTP cache), so the server saw each CMCD the page sent.
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.setCacheDisabled', { cacheDisabled: true });
  const segue = new URL(src).origin;
  page.on('request', (r) => {
    const url = new URL(r.url());
    if (url.origin !== segue || r.method() === 'OPTIONS') return;
    const headers = r.headers();
    const sent = CMCD_HEADERS.map((h) => headers[h]).filter((v) => v);
    const query = url.searchParams.get('CMCD');
    const [transmission, cmcd] =
      query !== null ? ['query', query] : sent.length ? ['header', sent.join(',')] : [null, null];
    result.requests.push({ url: r.url(), transmission, cmcd, status: null });
  });
  page.on('response', (resp) => {
    const entry = result.requests.findLast((q) => q.url === resp.url() && q.status === null);
    if (entry) entry.status = resp.status();
  });
  page.on('requestfailed', (r) => {
    const entry = result.requests.findLast((q) => q.url === r.url() && q.status === null);
    if (entry) entry.failed = r.failure() && r.failure().errorText;
  });
  page.on('pageerror', (e) => result.errors.push(`pageerror: ${e}`));
  const deadline = Date.now() + caseTimeoutMs;
  await page.goto(`${origin}/cmcd.html?player=${encodeURIComponent(player)}&src=${encodeURIComponent(src)}`);
  for (;;) {
    const s = await page.evaluate(() => ({ ct: document.getElementById('media').currentTime, errors: peer.errors }));
    result.currentTime = s.ct;
    result.errors.push(...s.errors.filter((e) => !result.errors.includes(e)));
    if (s.ct >= playS || result.errors.length > 0 || Date.now() > deadline) break;
    await sleep(100);
  }
  await context.close();
  return result;
}

/** Serves the page (from memory) and the player libraries on 127.0.0.1:0. */
function startPageServer() {
  const here = dirname(fileURLToPath(import.meta.url));
  const files = {
    '/cmcd.html': [() => PAGE, 'text/html; charset=utf-8'],
    '/lib/hls.js': [() => readFileSync(join(here, 'node_modules/hls.js/dist/hls.min.js')), 'text/javascript'],
    '/lib/dash.js': [() => readFileSync(join(here, 'node_modules/dashjs/dist/modern/umd/dash.all.min.js')), 'text/javascript'],
    '/lib/shaka.js': [() => readFileSync(join(here, 'node_modules/shaka-player/dist/shaka-player.compiled.js')), 'text/javascript'],
  };
  const server = createServer((req, res) => {
    const file = files[new URL(req.url, 'http://x').pathname];
    if (!file) return void res.writeHead(404).end();
    res.writeHead(200, { 'content-type': file[1], 'cache-control': 'no-store' });
    res.end(file[0]());
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => resolve({ server, origin: `http://127.0.0.1:${server.address().port}` }));
  });
}

const { server, origin } = await startPageServer();
const profile = mkdtempSync(join(tmpdir(), 'segue-cmcd-'));
const browser = await launchChromium(profile);
const cases = [];
try {
  cases.push(await runCase(browser, origin, 'hls.js', opt.hls));
  cases.push(await runCase(browser, origin, 'dash.js', opt.dash));
  cases.push(await runCase(browser, origin, 'shaka', opt.dash));
} finally {
  await browser.close();
  server.close();
  rmSync(profile, { recursive: true, force: true });
}
process.stdout.write(JSON.stringify({ cases }));
