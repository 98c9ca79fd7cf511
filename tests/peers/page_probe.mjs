// In-page probes for tests/peers/fast_start.mjs: the instrumentation installed in every page
// before its own scripts (clicks, media events and WebSocket frames, stamped on the page's clock
// and on the common clock), what a page shows for a failure message, and a case's bookkeeping
// (failures, page errors, a deadline, waiting on a condition in the page).

/** Installed in every page before its own scripts: the clicks, media events and WebSocket
 *  frames sent, stamped with performance.now() (`t`) and the common clock (`at`). */
export function instrument(currentSelectors) {
  const at = () => performance.timeOrigin + performance.now();
  const fs = (window.__fs = { clicks: [], media: [], ws: [], samples: null, longTasks: [] });
  if (performance.setResourceTimingBufferSize) performance.setResourceTimingBufferSize(5000);
  // Main-thread tasks over 50 ms (the page's own work, or the renderer starved of CPU).
  try {
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) fs.longTasks.push({ t: e.startTime, ms: e.duration });
    }).observe({ type: 'longtask', buffered: true });
  } catch { /* no Long Tasks API */ }
  window.addEventListener('click', (e) => {
    const el = e.target instanceof Element ? e.target : null;
    const track = el && el.closest('[data-track-id]');
    fs.clicks.push({ t: performance.now(), at: at(), id: (el && el.id) || null, track: track ? track.dataset.trackId : null });
  }, true);
  // Media events do not bubble, but they do pass window and document in the capture phase.
  for (const type of ['loadstart', 'loadedmetadata', 'canplay', 'play', 'playing', 'pause', 'waiting', 'stalled', 'seeking', 'seeked', 'ended', 'emptied', 'error']) {
    window.addEventListener(type, (e) => {
      const m = e.target;
      if (!(m instanceof HTMLMediaElement)) return;
      fs.media.push({ type, t: performance.now(), at: at(), el: m.id || m.tagName, ct: m.currentTime, paused: m.paused });
    }, true);
  }
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    let type = null;
    try { type = JSON.parse(data).type; } catch { /* not JSON */ }
    fs.ws.push({ t: performance.now(), type });
    return send.call(this, data);
  };
  // The track the page shows as playing: an element marked current, else the title shown in
  // #now-title (returned as "title:<text>").
  fs.current = () => {
    for (const s of currentSelectors) {
      const el = document.querySelector(s);
      if (el) return el.dataset.trackId;
    }
    const title = document.querySelector('#now-title');
    return title ? `title:${title.textContent.trim()}` : null;
  };
  fs.audio = () => {
    const a = document.querySelector('#audio');
    if (!a) return null;
    const ranges = [];
    for (let i = 0; i < a.buffered.length; i++) ranges.push([a.buffered.start(i), a.buffered.end(i)]);
    return { ct: a.currentTime, paused: a.paused, ended: a.ended, rs: a.readyState, buffered: ranges, error: a.error && a.error.code };
  };
  // Resource timing entries (every fetch, XHR and media request) relative to `since` (ms).
  fs.requests = (since) => performance.getEntriesByType('resource')
    .filter((e) => e.startTime >= since - 0.5)
    .map((e) => ({ path: new URL(e.name).pathname + new URL(e.name).search, start: e.startTime - since, end: e.responseEnd - since, bytes: e.encodedBodySize, type: e.initiatorType }));
}

/** A case's bookkeeping: failures, page errors, a deadline, and helpers bound to them. */
export function caseKit(name, deadline) {
  const result = { case: name, ok: false, failures: [], errors: [], console_errors: [] };
  const remaining = () => Math.max(1, deadline - Date.now());
  const watch = (page, tab) => {
    page.on('pageerror', (e) => result.errors.push({ tab, source: 'pageerror', detail: String(e) }));
    page.on('console', (m) => { if (m.type() === 'error') result.console_errors.push({ tab, detail: m.text() }); });
  };
  /** Waits (at most `limitMs`, and within the case's deadline) until `fn(arg)` is truthy in
   *  the page; returns its value, or null after recording a failure "timed out waiting for
   *  <what>" with what the page showed then. */
  const until = async (page, what, fn, arg, limitMs = Infinity) => {
    try {
      const h = await page.waitForFunction(fn, arg, { timeout: Math.min(limitMs, remaining()), polling: 25 });
      return await h.jsonValue();
    } catch (e) {
      const seen = await page.evaluate(snapshot).catch(() => null);
      result.failures.push(`timed out waiting for ${what}${/Timeout/.test(e.message) ? '' : ` (${e.message})`}; the page showed ${JSON.stringify(seen)}`);
      return null;
    }
  };
  return { result, remaining, watch, until };
}

/** What a page shows, for failure messages. */
export function snapshot() {
  const text = (s) => { const e = document.querySelector(s); return e ? e.textContent.trim().slice(0, 200) : null; };
  return {
    ws: document.body.dataset.ws || null,
    device: document.body.dataset.deviceId || null,
    devices: [...document.querySelectorAll('#devices [data-device-id]')].map((e) => `${e.dataset.deviceId}${e.dataset.active === 'true' ? '*' : ''}`),
    now: text('#now-title'),
    messages: text('#messages'),
    audio: window.__fs && window.__fs.audio(),
    last_media_events: window.__fs && window.__fs.media.slice(-5).map((m) => `${m.type}@${m.ct.toFixed(2)}`),
  };
}
