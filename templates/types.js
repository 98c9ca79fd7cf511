// @ts-check
// The shapes of the data the player handles, as JSDoc types for `tsc --noEmit`
// (tests/player/check.sh): the server's JSON (src/server/api.rs, src/server/prefetch.rs,
// src/server/control/protocol.rs; docs/control-protocol.md), the page's config, and the
// engine's placements. Only types: the modules name them in JSDoc (`import('./types.js').Track`),
// which the browser never loads, so this file is not served.

/**
 * One rendition of a track (an `api::Rendition`).
 * @typedef {object} Rendition
 * @property {string} id rendition id, e.g. `aac-128k`
 * @property {string} codec RFC 6381 codec string, e.g. `mp4a.40.2`
 * @property {number} bitrate nominal bitrate in bit/s
 * @property {string} init URL of the init segment
 * @property {string} playlist URL of the HLS media playlist
 * @property {string} segment_template URL of segment `$Number$` (1-based)
 * @property {number[]} [segment_sizes] byte size of each segment
 */

/**
 * A track of the catalog (an `api::Track`).
 * @typedef {object} Track
 * @property {string} id track id
 * @property {string} title title
 * @property {string | null} [artist] artist
 * @property {string | null} [album] album
 * @property {number | null} [track_number] number within the album
 * @property {number | null} [year] year
 * @property {number} duration duration in seconds
 * @property {number} sample_rate output sample rate in Hz
 * @property {number} channels channel count
 * @property {string} hls URL of the HLS master playlist
 * @property {string} dash URL of the DASH MPD
 * @property {string | null} [cover] URL of the cover art
 * @property {string} waveform URL of the waveform peaks
 * @property {{ integrated_lufs: number, true_peak_dbtp: number } | null} [loudness] loudness
 * @property {{ priming_samples: number, valid_samples: number }} gapless priming and real length, in samples
 * @property {number[]} segment_durations each segment's duration in samples (priming included)
 * @property {Rendition[]} renditions the ladder, lowest bitrate first
 */

/**
 * A page of the catalog (`GET /api/tracks`).
 * @typedef {object} TrackList
 * @property {Track[]} tracks the tracks of the page
 * @property {number} total how many match in all
 */

/**
 * A file named by a prefetch hint.
 * @typedef {object} HintedFile
 * @property {string} url its URL
 * @property {number} bytes its size
 * @property {number} [number] segment number (1-based; segments only)
 * @property {number} [start] segment start in track seconds (segments only)
 * @property {number} [duration] segment duration in seconds (segments only)
 */

/**
 * What to fetch ahead for a track (a `prefetch::PrefetchHint`).
 * @typedef {object} PrefetchHint
 * @property {string} track track id
 * @property {string} rendition rendition id
 * @property {string} codec its codec
 * @property {number} from track seconds the segments start at
 * @property {HintedFile} init the init segment
 * @property {HintedFile[]} segments the media segments
 */

/**
 * A device of a session.
 * @typedef {object} DeviceInfo
 * @property {string} id device id
 * @property {string} name display name
 */

/**
 * The session's state (the `state` message).
 * @typedef {object} SessionState
 * @property {'state'} [type] the message type
 * @property {string} session session name
 * @property {number} revision increases with each change
 * @property {string[]} queue track ids
 * @property {number} index the queue entry playing
 * @property {string | null} track its track id (null with an empty queue)
 * @property {number} position track seconds, as of the message
 * @property {boolean} playing whether it plays
 * @property {number} volume from 0 to 1
 * @property {string | null} active_device the device that plays, if any
 * @property {DeviceInfo[]} devices the devices joined
 */

/**
 * A message from the server (docs/control-protocol.md).
 * @typedef {{ type: 'welcome', protocol: string, session: string, device: string, heartbeat: number,
 *     limits: { max_message_bytes: number, commands_per_second: number } }
 *   | ({ type: 'state' } & SessionState)
 *   | { type: 'prefetch', track: string, index: number, reason: string, hint: PrefetchHint }
 *   | { type: 'library', added?: Track[] }
 *   | { type: 'error', code: string, message: string, in_reply_to?: number | string }} ServerMessage
 */

/**
 * A message to the server (docs/control-protocol.md); `id` is set when it is sent.
 * @typedef {({ type: 'hello', device: { name: string | null }, session: string | null }
 *   | { type: 'load', tracks: string[], index: number, position?: number, play?: boolean }
 *   | { type: 'play' } | { type: 'pause' } | { type: 'next' } | { type: 'previous' }
 *   | { type: 'seek', position: number }
 *   | { type: 'jump', index: number }
 *   | { type: 'volume', level: number }
 *   | { type: 'transfer', device?: string, play?: boolean }
 *   | { type: 'report', index: number, position: number, playing: boolean, buffered?: number, bandwidth?: number })
 *   & { id?: number }} ClientMessage
 */

/**
 * The server's constants that the page uses (rendered into index.html by src/server/player.rs).
 * @typedef {object} PageConfig
 * @property {string} protocol the control channel's WebSocket subprotocol
 * @property {number} abr_share the share of the throughput a rendition's peak bitrate may use
 */

/**
 * A queue entry laid on the engine's timeline (seconds of the media element's clock).
 * @typedef {object} Placement
 * @property {Track} track the track
 * @property {number} qi its queue index
 * @property {number} start where its real audio starts on the timeline
 * @property {number} end where it ends (its last good sample)
 * @property {number} offset the SourceBuffer's timestampOffset (start less the priming)
 * @property {number} first the first segment appended (0-based)
 * @property {number} next the next segment to append (0-based)
 * @property {Rendition} rend the rendition of the last segment appended
 * @property {Rendition[]} segRend the rendition of each segment appended
 * @property {{ pos: number } | null} pendingStart a start under way, to `pos` track seconds
 * @property {number} gain linear loudness gain
 */

export {};
