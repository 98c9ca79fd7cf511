//! Which URL paths name a servable file, before any filesystem access.
//!
//! A media URL is `/media/{track_id}/{path}` and names `tracks/{track_id}/{path}` inside the
//! library. The router has already percent-decoded both parts once. Only the shapes the ingest
//! writes ([`crate::store::layout`]) are accepted: a track id ([`is_track_id`]), then either a
//! file of the track directory (`master.m3u8`, `manifest.mpd`, `waveform.json`, `cover.jpg`)
//! or a file of a rendition directory ([`is_rendition_dir`], `aac-lc-128k.3f9c2e1d07aa/3.m4s`).
//! Every segment must be `[A-Za-z0-9._-]+`, not start with a dot and carry a known extension, which rules out empty, `.`, `..`, absolute,
//! backslash, NUL and still-encoded (`%2e%2e`, i.e. double-encoded) segments at once, and
//! `track.json` (the internal record) is never served. The file store (`files.rs`, which
//! depends on this module, not the other way) then canonicalizes the path to refuse symlinks
//! that point out of the track directory.

use crate::store::layout::{TRACK_RECORD_FILE, is_rendition_dir, is_track_id};

/// What kind of file a name is, from its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    /// HLS playlist (`.m3u8`).
    Playlist,
    /// DASH MPD (`.mpd`).
    Mpd,
    /// CMAF init or media segment (`.mp4`, `.m4s`).
    Segment,
    /// JSON (`.json`, the waveform).
    Json,
    /// Cover art image, with its media type.
    Image(&'static str),
}

impl MediaKind {
    /// The kind of the file `name`, `None` if it is not a kind we serve.
    pub fn of(name: &str) -> Option<MediaKind> {
        let (_, ext) = name.rsplit_once('.')?;
        let is = |known: &str| ext.eq_ignore_ascii_case(known);
        Some(if is("m3u8") {
            MediaKind::Playlist
        } else if is("mpd") {
            MediaKind::Mpd
        } else if is("mp4") || is("m4s") {
            MediaKind::Segment
        } else if is("json") {
            MediaKind::Json
        } else if is("jpg") || is("jpeg") {
            MediaKind::Image("image/jpeg")
        } else if is("png") {
            MediaKind::Image("image/png")
        } else if is("webp") {
            MediaKind::Image("image/webp")
        } else if is("gif") {
            MediaKind::Image("image/gif")
        } else {
            return None;
        })
    }

    /// The Content-Type to send.
    pub fn content_type(self) -> &'static str {
        match self {
            MediaKind::Playlist => "application/vnd.apple.mpegurl",
            MediaKind::Mpd => "application/dash+xml",
            MediaKind::Segment => "audio/mp4",
            MediaKind::Json => "application/json",
            MediaKind::Image(t) => t,
        }
    }

    /// Whether gzip/br are offered: text only, never segments or images.
    pub fn compressible(self) -> bool {
        matches!(self, MediaKind::Playlist | MediaKind::Mpd | MediaKind::Json)
    }
}

/// A validated media path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaPath {
    /// The track id.
    pub track_id: String,
    /// Path relative to the track directory, `/`-separated, one or two segments.
    pub relative: String,
    /// Whether the file is inside a rendition directory, whose name carries a hash of its
    /// bytes: such a file never changes.
    pub immutable: bool,
    /// Its kind.
    pub kind: MediaKind,
}

impl MediaPath {
    /// Validates the two parts of a media URL (after one percent-decoding by the router).
    pub fn parse(track_id: &str, path: &str) -> Option<MediaPath> {
        let (immutable, kind) = shape(track_id, path)?;
        Some(MediaPath {
            track_id: track_id.to_string(),
            relative: path.to_string(),
            immutable,
            kind,
        })
    }

    /// Whether the two parts of a media URL name a file of a rendition directory (which never
    /// changes), with the checks of [`MediaPath::parse`] and no allocation.
    pub fn names_immutable_file(track_id: &str, path: &str) -> bool {
        shape(track_id, path).is_some_and(|(immutable, _)| immutable)
    }

    /// A key unique to this file within the library.
    pub fn key(&self) -> String {
        format!("{}/{}", self.track_id, self.relative)
    }
}

/// Whether the file is immutable, and its kind, if `track_id` and `path` name a file the
/// ingest could have written (see the module doc).
fn shape(track_id: &str, path: &str) -> Option<(bool, MediaKind)> {
    if !is_track_id(track_id) {
        return None;
    }
    let mut segments = path.split('/');
    let (first, second) = (segments.next()?, segments.next());
    if segments.next().is_some()
        || !is_safe_segment(first)
        || second.is_some_and(|s| !is_safe_segment(s))
    {
        return None;
    }
    let (immutable, name) = match second {
        None if first != TRACK_RECORD_FILE => (false, first),
        Some(name) if is_rendition_dir(first) => (true, name),
        _ => return None,
    };
    Some((immutable, MediaKind::of(name)?))
}

/// One path segment of a name the ingest could have written.
fn is_safe_segment(segment: &str) -> bool {
    !segment.is_empty()
        && segment.len() <= 255
        && !segment.starts_with('.')
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "7dea392de05ff128da4c3c57";
    const DIR: &str = "aac-lc-128k.b75947318374";

    #[test]
    fn ingest_shapes_are_accepted() {
        let m = MediaPath::parse(ID, "master.m3u8").unwrap();
        assert!(!m.immutable && m.kind == MediaKind::Playlist);
        let m = MediaPath::parse(ID, &format!("{DIR}/12.m4s")).unwrap();
        assert!(m.immutable && m.kind.content_type() == "audio/mp4");
        assert_eq!(m.key(), format!("{ID}/{DIR}/12.m4s"));
        assert!(MediaPath::names_immutable_file(
            ID,
            &format!("{DIR}/12.m4s")
        ));
        assert!(!MediaPath::names_immutable_file(ID, "master.m3u8"));
        for name in ["manifest.mpd", "waveform.json", "cover.jpg", "cover.PNG"] {
            assert!(MediaPath::parse(ID, name).is_some(), "{name}");
        }
        for name in ["init.mp4", "media.m3u8"] {
            assert!(
                MediaPath::parse(ID, &format!("{DIR}/{name}"))
                    .unwrap()
                    .immutable
            );
        }
    }

    #[test]
    fn traversal_and_odd_names_are_refused() {
        for path in [
            "track.json",
            "../x.m3u8",
            "..",
            ".",
            "",
            "/etc/passwd",
            "a/../master.m3u8",
            "%2e%2e/master.m3u8",
            "..%2fmaster.m3u8",
            "a\\b.m3u8",
            "a\0.m3u8",
            ".hidden.json",
            "master.m3u8/",
            "//master.m3u8",
            "master.m3u8.tmp.123",
            "notes.txt",
            "noext",
            "aac-lc-128k/1.m4s",
            "aac-lc-128k.B75947318374/1.m4s",
            "aac-lc-128k.b759473183/1.m4s",
            "sub.dir/x/1.m4s",
            "aac-lc-128k.b75947318374/../../x.m4s",
            "aac-lc-128k.b75947318374/track.json.bak",
            "ma ster.m3u8",
            "master.m3u8%00",
        ] {
            assert_eq!(MediaPath::parse(ID, path), None, "{path:?}");
            assert!(!MediaPath::names_immutable_file(ID, path), "{path:?}");
        }
        for id in ["..", "ABC", "", "7dea/..", "7dea392de05f", &"a".repeat(25)] {
            assert_eq!(MediaPath::parse(id, "master.m3u8"), None, "{id:?}");
        }
    }
}
