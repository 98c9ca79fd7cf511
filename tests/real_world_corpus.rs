//! The real-world corpus: audio that Debian packages ship (sound themes, game sound effects,
//! sample sets, tag-library test data; `tests/corpus/packages.txt`), written by other people's
//! tools, goes through `segue ingest` (the real binary), and every track's length is compared,
//! to the sample, with what ffmpeg decodes from the same file (issue 11, "The rule").
//!
//! The corpus is fetched by `tests/corpus/fetch.sh` (CI runs it before the tests); without it
//! this test fails rather than pass on nothing.
//!
//! What is compared: ffmpeg decodes each file to raw PCM at the file's own rate, with its
//! gapless handling (LAME/Xing delay and padding, Ogg granule positions and pre-skip, MP4 edit
//! lists), and the bytes are counted: `n` samples per channel. segue keeps the source's samples
//! (`source.samples`, at the source rate) and, when it resamples, records
//! `gapless.valid_samples = ceil(n * output_rate / source_rate)` at the output rate (the rounding
//! of `tests/ingest_e2e.rs`). Both must hold. Every mismatch is collected, the whole table is
//! printed, and the test fails if any row is not covered by a rule of [`Rule`].

mod common;
#[path = "corpus/compare.rs"]
mod compare;

use std::path::{Path, PathBuf};

use compare::*;

/// Where `fetch.sh` unpacks the corpus, relative to the crate root.
const CACHE: &str = "tests/corpus/.cache";

/// Reads the corpus list that `fetch.sh` wrote, checking that it is there and current.
fn corpus_files(root: &Path) -> Vec<PathBuf> {
    let cache = root.join(CACHE);
    let list = std::fs::read_to_string(cache.join("corpus.list")).unwrap_or_else(|e| {
        panic!(
            "the real-world corpus is missing ({}: {e}): run `bash tests/corpus/fetch.sh` first \
             (.ci/run does)",
            cache.join("corpus.list").display()
        )
    });
    // Every package line of packages.txt must have been fetched as written (a changed version
    // or glob not yet fetched would test a stale corpus).
    let packages = std::fs::read_to_string(root.join("tests/corpus/packages.txt")).unwrap();
    for line in packages.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name = line.split('=').next().unwrap();
        let spec = std::fs::read_to_string(cache.join("files").join(name).join(".spec"))
            .unwrap_or_default();
        let normalized = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        assert_eq!(
            normalized(&spec),
            normalized(line),
            "the corpus is stale for {name}: run `bash tests/corpus/fetch.sh`"
        );
    }
    let files: Vec<PathBuf> = list.lines().map(|l| cache.join(l)).collect();
    for f in &files {
        assert!(
            f.is_file(),
            "{} is listed but missing: run fetch.sh",
            f.display()
        );
    }
    assert!(
        files.len() >= 50,
        "the corpus has {} files, fewer than 50",
        files.len()
    );
    files
}

#[test]
fn every_corpus_file_ingests_to_ffmpegs_sample_count() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let files = corpus_files(root);

    // One ingest of the whole corpus, two files at a time. One AAC-LC rung: the sample counts
    // under test come from the decoder, not from the ladder, and one rung keeps the test short.
    let cache = root.join(CACHE);
    let rows = ingest_and_compare(
        &files,
        |file| {
            let rel = file.strip_prefix(&cache).unwrap().to_string_lossy();
            rel.trim_start_matches("files/").to_owned()
        },
        |_| None,
    );
    assert_all_explained("real-world corpus", &rows);
}
