//! The library's layout: every file and directory name segue writes, and the formats of track
//! ids and rendition directory names. This is the one source for them: the ingest writes with
//! these names, the manifests link with them, and the server's URL checks accept exactly the
//! shapes written here (so a name is accepted only if the ingest could have written it).
//!
//! ```text
//! <library>/
//!   catalog.sqlite                  the index, rebuildable from the records
//!   .staging/<id>.<pid>.<n>/        a track being written, locked by its writer
//!   tracks/<id>/                    id: 24 lowercase hex digits of a hash of the source
//!     track.json                    the record: the truth, never served
//!     master.m3u8  manifest.mpd  waveform.json  cover.<jpg|png|gif|webp>
//!     <rendition id>.<hash>/        hash: 12 lowercase hex digits of a hash of its inputs
//!       init.mp4  media.m3u8  1.m4s  2.m4s ...
//! ```

/// The extension of media segment files, as a macro so the template and the names share it.
macro_rules! segment_extension {
    () => {
        ".m4s"
    };
}

/// File name of the SQLite catalog index at the library root.
pub const CATALOG_FILE: &str = "catalog.sqlite";
/// Directory (at the library root) holding one subdirectory per complete track.
pub const TRACKS_DIR: &str = "tracks";
/// Directory (at the library root) holding tracks being written.
pub const STAGING_DIR: &str = ".staging";
/// File name of the track record inside a track directory.
pub const TRACK_RECORD_FILE: &str = "track.json";
/// File name of the HLS master playlist inside a track directory.
pub const HLS_MASTER_FILE: &str = "master.m3u8";
/// File name of the DASH MPD inside a track directory.
pub const DASH_MPD_FILE: &str = "manifest.mpd";
/// File name of the waveform peaks JSON inside a track directory.
pub const WAVEFORM_FILE: &str = "waveform.json";
/// File name of the CMAF init segment inside a rendition directory.
pub const INIT_SEGMENT_FILE: &str = "init.mp4";
/// File name of the HLS media playlist inside a rendition directory.
pub const MEDIA_PLAYLIST_FILE: &str = "media.m3u8";
/// Media segment file names as a DASH template (ISO/IEC 23009-1 5.3.9.4.4): `$Number$` is
/// the 1-based segment number.
pub const SEGMENT_TEMPLATE: &str = concat!("$Number$", segment_extension!());

/// The generation of the packaging code: part of every rendition directory's name (with
/// segue's version), so a change of code that changes output bytes changes every URL under it.
/// Bump it with any such change; `tests/determinism.rs` fails until then.
pub const PACKAGING_GENERATION: u32 = 1;

/// Name of the object metadata (S3 `x-amz-meta-segue-etag`) that carries an object's
/// [`content_tag`] in a bucket, so a server knows the entity tag of an object from the head of
/// its GET, before the body: it can stream the body as it arrives.
pub const CONTENT_TAG_METADATA: &str = "segue-etag";

/// The content tag of `bytes`: hex of the first 128 bits of their BLAKE3 hash. It depends on
/// nothing but the content, so it is the same after a restart, on every origin and for a
/// bucket and a local library: the server's entity tags.
pub fn content_tag(bytes: &[u8]) -> String {
    let hash = blake3::hash(bytes);
    hash.as_bytes()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Hex digits of a track id (96 bits of the source's hash: no collision in any real library).
pub const TRACK_ID_DIGITS: usize = 24;
/// Hex digits of the hash in a rendition directory name (48 bits: the name only has to change
/// when the bytes do, among the few renditions of one track).
pub const RENDITION_HASH_DIGITS: usize = 12;

/// File name of media segment `index` (0-based) within its rendition directory.
pub fn segment_name(index: usize) -> String {
    format!(concat!("{}", segment_extension!()), index + 1)
}

/// File name of the cover art of media type `media_type` inside a track directory (JPEG
/// unless the type names another image format we serve).
pub fn cover_file(media_type: &str) -> String {
    let extension = match media_type {
        "image/png" => "png",
        "image/gif" => "gif",
        "image/webp" => "webp",
        _ => "jpg",
    };
    format!("cover.{extension}")
}

/// The track id of a source whose bytes hash to `hash`.
pub fn track_id(hash: &blake3::Hash) -> String {
    hash.to_hex()[..TRACK_ID_DIGITS].to_string()
}

/// Whether `name` has the shape of a track id as [`track_id`] writes it, so stray files are
/// ignored and an id from a URL can never name a path outside the tracks directory.
pub fn is_track_id(name: &str) -> bool {
    name.len() == TRACK_ID_DIGITS && is_lower_hex(name)
}

/// Name of the directory of rendition `rendition_id` whose inputs (everything that decides its
/// bytes: the source, the ladder, the segment plan, the software versions) hash to `hash`.
pub fn rendition_dir(rendition_id: &str, hash: &blake3::Hash) -> String {
    format!("{rendition_id}.{}", &hash.to_hex()[..RENDITION_HASH_DIGITS])
}

/// Whether `name` has the shape of a rendition directory as [`rendition_dir`] writes it:
/// `<rendition id>.<hash>`, e.g. `aac-lc-128k.3f9c2e1d07aa`.
pub fn is_rendition_dir(name: &str) -> bool {
    let Some((id, hash)) = name.rsplit_once('.') else {
        return false;
    };
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && hash.len() == RENDITION_HASH_DIGITS
        && is_lower_hex(hash)
}

/// Name (inside [`STAGING_DIR`]) of staging directory `sequence` of process `pid` for track
/// `id`. The pid and sequence only make the name unique; liveness is its lock's business.
pub(super) fn staging_name(id: &str, pid: u32, sequence: u32) -> String {
    format!("{id}.{pid}.{sequence:x}")
}

fn is_lower_hex(text: &str) -> bool {
    text.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_names_are_the_accepted_shapes() {
        let hash = blake3::hash(b"some bytes");
        let id = track_id(&hash);
        assert_eq!(id.len(), TRACK_ID_DIGITS);
        assert!(is_track_id(&id));
        let dir = rendition_dir("aac-lc-128k", &hash);
        assert!(is_rendition_dir(&dir), "{dir}");
        assert!(!is_rendition_dir("aac-lc-128k.partial"));
    }

    #[test]
    fn segment_names_follow_the_template() {
        assert_eq!(SEGMENT_TEMPLATE, "$Number$.m4s");
        assert_eq!(segment_name(0), SEGMENT_TEMPLATE.replace("$Number$", "1"));
        assert_eq!(segment_name(11), "12.m4s");
    }

    #[test]
    fn other_shapes_are_refused() {
        let id = "0123456789abcdef01234567";
        assert!(is_track_id(id));
        for bad in [
            "",
            "../etc",
            "ABC",
            "0123abcdef",
            &id[1..],
            &format!("{id}0"),
        ] {
            assert!(!is_track_id(bad), "{bad:?}");
        }
        for bad in [
            "aac-lc-128k",
            "aac-lc-128k.B75947318374",
            "aac-lc-128k.b7594731837",
            "aac-lc-128k.b759473183740",
            ".b75947318374",
            "AAC.b75947318374",
        ] {
            assert!(!is_rendition_dir(bad), "{bad:?}");
        }
    }

    #[test]
    fn cover_names_carry_the_image_type() {
        assert_eq!(cover_file("image/png"), "cover.png");
        assert_eq!(cover_file("image/jpeg"), "cover.jpg");
        assert_eq!(cover_file("application/octet-stream"), "cover.jpg");
    }
}
