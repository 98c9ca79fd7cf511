// A track as GET /api/tracks/ID gives it, for the player's unit tests: 48 kHz, 2048 samples of
// encoder priming, segments of 2 s, 2 s and 0.4 s (96 000 + 96 000 + 19 200 samples), 4.3 s of
// real audio (206 400 samples; the rest is priming and padding), a 64k/128k/256k ladder.

/** A rendition of `bitrate` bit/s (segment sizes when given). */
export function rendition(bitrate, segmentSizes) {
  const id = `${bitrate / 1000}k`;
  return {
    id, codec: 'mp4a.40.2', bitrate, init: `/media/t/${id}/init.mp4`, playlist: `/media/t/${id}/index.m3u8`,
    segment_template: `/media/t/${id}/$Number$.m4s`, ...(segmentSizes ? { segment_sizes: segmentSizes } : {}),
  };
}

/** The track, with `overrides` for its fields. */
export function makeTrack(overrides = {}) {
  return {
    id: 't', title: 'Test', artist: 'Segue', album: 'Unit', duration: 4.3, sample_rate: 48000, channels: 2,
    hls: '/media/t/master.m3u8', dash: '/media/t/manifest.mpd', cover: null, waveform: '/media/t/waveform.json',
    loudness: { integrated_lufs: -14, true_peak_dbtp: -1 },
    gapless: { priming_samples: 2048, valid_samples: 206400 },
    segment_durations: [96000, 96000, 19200],
    renditions: [rendition(64000), rendition(128000), rendition(256000)],
    ...overrides,
  };
}
