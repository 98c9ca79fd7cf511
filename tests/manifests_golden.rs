//! Golden manifests: the exact HLS and DASH text for a fixed track record, and a re-parse of
//! the playlists with m3u8-rs's parser. Set `SEGUE_BLESS=1` to rewrite the golden files (then
//! review the diff by hand).

mod common;

use std::path::Path;

use common::test_record as record;
use segue::manifest::{render_master_playlist, render_media_playlist, render_mpd};

fn check_golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("SEGUE_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(actual, expected, "{name} differs from the golden file");
}

#[test]
fn master_playlist_matches_golden() {
    let text = render_master_playlist(&record());
    check_golden("master.m3u8", &text);
    let parsed = m3u8_rs::parse_master_playlist_res(text.as_bytes()).expect("m3u8-rs parses it");
    // One switching set per AAC profile: the master lists the AAC-LC set only (see
    // src/manifest/mod.rs), lowest bitrate first.
    let codecs: Vec<_> = parsed
        .variants
        .iter()
        .map(|v| v.codecs.as_deref().unwrap_or(""))
        .collect();
    assert_eq!(codecs, ["mp4a.40.2", "mp4a.40.2"]);
}

#[test]
fn media_playlist_matches_golden_and_is_sample_exact() {
    let r = record();
    let text = render_media_playlist(&r, &r.renditions[1]);
    check_golden("media.m3u8", &text);
    let parsed = m3u8_rs::parse_media_playlist_res(text.as_bytes()).expect("m3u8-rs parses it");
    assert!(parsed.end_list);
    assert_eq!(parsed.target_duration, 4);
    for (seg, &samples) in parsed.segments.iter().zip(&r.segment_durations) {
        assert_eq!(
            (f64::from(seg.duration) * 48_000.0).round() as u64,
            samples,
            "EXTINF is exact to the sample"
        );
        assert!(
            f64::from(seg.duration) <= parsed.target_duration as f64,
            "no segment longer than the target"
        );
    }
}

#[test]
fn mpd_matches_golden() {
    check_golden("manifest.mpd", &render_mpd(&record()));
}

#[test]
fn each_aac_profile_is_its_own_switching_set_aac_lc_first() {
    let r = record();
    let sets: Vec<Vec<&str>> = segue::manifest::switching_sets(&r)
        .iter()
        .map(|set| set.iter().map(|x| x.id.as_str()).collect())
        .collect();
    assert_eq!(
        sets,
        [vec!["aac-lc-128k", "aac-lc-256k"], vec!["he-aac-64k"]],
        "AAC-LC first, each profile apart, ladder order within"
    );
}
