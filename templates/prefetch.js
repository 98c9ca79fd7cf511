// @ts-check
// Prefetch: the server's hints (GET /api/prefetch, `prefetch` messages) fetched into memory, and
// the element warmed up with the start of the track a click is likeliest to start.

import { hooks, sleep, fetchJson, bandwidth, getBytes, prefetched, trackById } from './media.js';
import { engine, bufferedAhead, appendSegment } from './engine.js';
import { place, UPSWITCH_MIN_BUFFER_S } from './logic.js';

/** @typedef {import('./types.js').PrefetchHint} PrefetchHint */

const PREFETCH_TRACKS = 3;

/** Whether the hinted track is on the timeline already. @param {PrefetchHint | undefined} hint */
const placed = (hint) => engine.placements.some((p) => p.track.id === hint?.track);

/** Resolves once the track playing has enough buffered that other requests (the next track's
 *  bytes, a waveform, covers) cannot starve it: a track's start is when its buffer is thinnest. */
export async function whenHealthy() {
  await engine.started;
  for (let i = 0; i < 60; i++) {
    const pl = engine.placements.at(-1);
    if (!pl || !engine.playing || bufferedAhead() >= UPSWITCH_MIN_BUFFER_S || pl.next >= pl.track.segment_durations.length) return;
    await sleep(500);
  }
}

/** Fetches the files of `hints` into memory (kept even if no start wants them yet). @param {PrefetchHint[] | undefined} hints */
function prefetchHints(hints) {
  for (const h of hints ?? []) {
    if (!h?.init) continue;
    Promise.all([h.init, ...h.segments].map((f) => getBytes(f.url, { keep: true }))).then(() => {
      prefetched.add(h.track);
      hooks.prefetched(h.track);
    }, (e) => console.warn('segue: prefetch failed', h.track, e));
  }
}

/** Prepares the element with the start of the track a click is likeliest to start (the first of
 *  the list): its init and first segment, appended as its start would (a preroll). Chromium
 *  builds its demuxer and decoder as the first media comes in, tens of milliseconds that would
 *  otherwise come after the click; a start of another track removes the preroll.
 *  @param {PrefetchHint} hint */
async function warmUp(hint) {
  const gen = engine.gen;
  try {
    const track = await trackById(hint.track);
    const rend = track.renditions.find((r) => r.init === hint.init.url);
    if (gen !== engine.gen || engine.sb || !rend || hint.segments[0]?.number !== 1) return;
    const pl = place(track, 0, 0, rend, 0);
    await appendSegment(gen, pl, 0, rend);
    if (gen === engine.gen && pl.next === 1) engine.preroll = pl;
  } catch (e) {
    console.warn('segue: could not prepare the player', e);
  }
}

/** Load-time prefetch of the first tracks of the list (`ids`), and the pipeline warmed up with the
 *  first. @param {string[]} ids */
export async function prefetchFirst(ids) {
  ids = ids.slice(0, PREFETCH_TRACKS).filter((id) => !prefetched.has(id));
  if (!ids.length) return;
  const est = bandwidth.estimate();
  try {
    /** @type {{ hints?: PrefetchHint[] }} */
    const { hints } = await fetchJson(`/api/prefetch?tracks=${ids.join(',')}${est ? `&bandwidth=${Math.round(est)}` : ''}`);
    prefetchHints(hints);
    if (hints?.[0]?.track === ids[0]) warmUp(hints[0]);
  } catch (e) {
    console.warn('segue: no prefetch hints', e);
  }
}

// What the session uses.
export { placed, prefetchHints };
