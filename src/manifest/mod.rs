//! One presentation model -> HLS playlists and the DASH MPD (pure functions).
//!
//! The model is the [`TrackRecord`]: manifests are views of it,
//! never written by the muxer. Every duration comes from integer sample counts.
//!
//! # Switching sets: one AAC profile each
//!
//! A player may switch between the renditions of one switching set at any segment boundary,
//! so everything in a set must decode with the decoder the set started with. Renditions of
//! different AAC profiles (AAC-LC `mp4a.40.2`, HE-AAC `mp4a.40.5`, HE-AAC v2 `mp4a.40.29`)
//! have different AudioSpecificConfigs (ISO/IEC 14496-3 1.6.2.1: object type, and for SBR the
//! core and extension rates), and not every player can change decoders without a loss:
//!
//! - VLC 3.0 (modules/demux/adaptive) always starts on the lowest-bandwidth rendition of a set
//!   (its default "near optimal" logic has no throughput estimate yet) and moves up after the
//!   first segment. A new init segment whose AudioSpecificConfig differs cannot reuse the
//!   elementary stream (FakeESOutID::isCompatible compares the decoder config byte for byte),
//!   so the stream is deleted and a new one made; while the input is still in its initial
//!   1 s of buffering, es_out deletes the old decoder without draining it (EsOutDel), and
//!   every sample of the first segment is lost: 47,104 of 485,376 samples of a 10 s track,
//!   over HLS and DASH alike. Between renditions of one profile the config is identical, the
//!   stream is reused and nothing is lost.
//! - hls.js, dash.js, shaka-player (MSE), GStreamer's hlsdemux2/dashdemux2 and segue's own
//!   player change profile mid-track without a loss.
//!
//! So each profile is its own switching set, AAC-LC first (every AAC decoder plays it; it is
//! the rung above the throughput floor): [`switching_sets`]. In DASH each set is an
//! AdaptationSet (ISO/IEC 23009-1 5.3.3.1: Representations of one Adaptation Set are
//! alternatives a client switches between), linked to the others by the Adaptation Set
//! Switching descriptor (`urn:mpeg:dash:adaptation-set-switching:2016`, DASH-IF IOP 3.8), so
//! dash.js and shaka-player still fall back to HE-AAC on a thin link while VLC, GStreamer and
//! mpv play the first set whole. HLS has no such descriptor: every EXT-X-STREAM-INF of a
//! master playlist is one set of Variant Streams a client switches among freely (RFC 8216
//! 4.3.4.2, 6.3.1), and VLC makes them one adaptation set whatever their CODECS, so the master
//! playlist lists the first set (AAC-LC) only; the other profiles' media playlists stay in
//! place for clients that ask for them by URL, and segue's own player picks every rendition
//! from the catalog API.

pub mod dash;
pub mod hls;

pub use dash::render_mpd;
pub use hls::{render_master_playlist, render_media_playlist};

use crate::catalog::{RenditionRecord, TrackRecord};

/// RFC 6381 codec string of AAC-LC, the profile of the first switching set.
const AAC_LC_CODEC: &str = "mp4a.40.2";

/// The track's renditions grouped into switching sets, one per codec (AAC profile): the
/// AAC-LC set first, then the others in ladder order; each set keeps ladder order.
pub fn switching_sets(track: &TrackRecord) -> Vec<Vec<&RenditionRecord>> {
    let mut sets: Vec<Vec<&RenditionRecord>> = Vec::new();
    for rendition in &track.renditions {
        match sets.iter_mut().find(|s| s[0].codec == rendition.codec) {
            Some(set) => set.push(rendition),
            None => sets.push(vec![rendition]),
        }
    }
    // Stable: the sets that are not AAC-LC keep their ladder order.
    sets.sort_by_key(|set| set[0].codec != AAC_LC_CODEC);
    sets
}
