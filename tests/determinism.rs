//! Deterministic, immutable output: the same input and settings give byte-identical trees,
//! and re-ingesting the same bytes is a no-op that reports the existing id.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;
use segue::store::layout::PACKAGING_GENERATION;

fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

#[test]
fn same_input_gives_byte_identical_tracks_and_reingest_is_a_noop() {
    let a = TempLibrary::new();
    let b = TempLibrary::new();
    let input = make_input(&a.inputs(), "song.flac", 44_100, 5.0, 2, &["-c:a", "flac"]);
    let (code, first) = ingest_json(&a.library(), &[], &[&input]);
    assert_eq!(code, 0, "{first:?}");
    let (code, second) = ingest_json(&b.library(), &["--jobs", "2"], &[&input]);
    assert_eq!(code, 0);
    let id = first[0]["id"].as_str().unwrap();
    assert_eq!(second[0]["id"], id);
    let ta = tree(&a.layout().track_dir(id));
    let tb = tree(&b.layout().track_dir(id));
    assert!(ta.len() > 10, "a whole track: {:?}", ta.keys());
    assert_eq!(ta.keys().collect::<Vec<_>>(), tb.keys().collect::<Vec<_>>());
    for (name, bytes) in &ta {
        assert!(tb[name] == *bytes, "{name} differs between two ingests");
    }

    // Same bytes under another name: no-op, same id.
    let copy = a.inputs().join("copy of song.flac");
    std::fs::copy(&input, &copy).unwrap();
    let (code, again) = ingest_json(&a.library(), &[], &[&copy]);
    assert_eq!(code, 0);
    assert_eq!(again[0]["id"], id);
    assert_eq!(again[0]["existing"], true);
    assert_eq!(tree(&a.layout().track_dir(id)), ta, "nothing rewritten");
}

/// The bytes a fixed input packages to, at this [`PACKAGING_GENERATION`]. Rendition
/// directories are named after the inputs and the software, not the bytes (so segments go to
/// their final keys while they are encoded): a change of code that changes output bytes must
/// change the names too, or a CDN would keep old bytes under a new meaning. This test fails
/// on such a change until the generation is bumped (and the hash below updated).
const PACKAGED_AT_GENERATION: (u32, &str) = (
    1,
    "d880a94a76ebd8d0d988935e9192906a66ef5a0a6d5730cd23193689cb46e586",
);

#[test]
fn changed_output_bytes_need_a_new_packaging_generation() {
    let (a, _, id, record) = ingest_generated_wav(48_000, 2.0);
    let id = id.as_str();
    let mut hasher = blake3::Hasher::new();
    for r in &record.renditions {
        let dir = a.layout().track_dir(id).join(&r.dir);
        for i in 0..record.segment_durations.len() {
            hasher.update(&std::fs::read(dir.join(segue::store::layout::segment_name(i))).unwrap());
        }
        hasher.update(&std::fs::read(dir.join(&r.init)).unwrap());
    }
    let hash = hasher.finalize().to_hex().to_string();
    assert_eq!(
        (PACKAGING_GENERATION, hash.as_str()),
        PACKAGED_AT_GENERATION,
        "the packaged bytes changed: bump segue::store::layout::PACKAGING_GENERATION and \
         set PACKAGED_AT_GENERATION to the new generation and this hash"
    );
}
