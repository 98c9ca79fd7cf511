// What players.mjs and fast_start.mjs share: Debian's Chromium launched the way the tests run
// it, and a static server for test pages on another origin than segue.

import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = dirname(fileURLToPath(import.meta.url));
const CHROMIUM = '/usr/bin/chromium';
// Debian's Chromium as the tests run it: as root (no sandbox), without a GPU, and with its
// background and Google connections off (the test machines reach no other host, and refused
// connections would slow and clutter every start); autoplay allowed, so a remote command can
// start a tab's audio without a gesture in that tab.
const CHROMIUM_FLAGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--autoplay-policy=no-user-gesture-required',
];

/** Launches Chromium with exactly our flags (ignoreDefaultArgs: playwright's own defaults would
 *  add --mute-audio and others), the profile in `userDataDir` and the pipe playwright talks over. */
export function launchChromium(userDataDir) {
  return chromium.launch({
    executablePath: CHROMIUM,
    ignoreDefaultArgs: true,
    args: [...CHROMIUM_FLAGS, `--user-data-dir=${userDataDir}`, '--remote-debugging-pipe'],
    timeout: 30000,
  });
}

/** Serves `files` ({url path: [file under tests/peers, content type]}) on 127.0.0.1:0;
 *  resolves to { server, origin }. */
export function startPageServer(files) {
  const server = createServer((req, res) => {
    const file = files[new URL(req.url, 'http://x').pathname];
    if (!file) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': file[1], 'cache-control': 'no-store' });
    res.end(readFileSync(join(HERE, file[0])));
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => resolve({ server, origin: `http://127.0.0.1:${server.address().port}` }));
  });
}
