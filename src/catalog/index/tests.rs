//! Tests of the catalog index against real track directories.
use super::read_only::sqlite_uri;
use super::*;

fn record(id: &str, title: &str, artist: &str, album: &str) -> TrackRecord {
    serde_json::from_value(serde_json::json!({
        "version": 1, "id": id, "title": title, "artist": artist, "album": album,
        "track_number": 1, "year": 1999, "sample_rate": 48000, "channels": 2,
        "source": { "file_name": "a.flac", "container": "flac", "codec": "flac",
            "sample_rate": 44100, "channels": 2, "bits_per_sample": 16, "samples": 441000,
            "bytes": 1234567 },
        "gapless": { "priming_samples": 2048, "valid_samples": 480000,
            "padding_samples": 1024 },
        "loudness": { "integrated_lufs": -14.0, "true_peak_dbtp": -1.0,
            "loudness_range_lu": 6.0 },
        "cover": null, "waveform": "waveform.json", "hls_master": "master.m3u8",
        "dash_mpd": "manifest.mpd", "segment_durations": [96256, 2048], "renditions": [],
        "packaging": { "ladder": "aac-lc:128k", "segment_seconds": 2.0, "segue_version": "0" }
    }))
    .unwrap()
}

fn library(records: &[TrackRecord]) -> (tempfile::TempDir, LibraryLayout) {
    let tmp = tempfile::tempdir().unwrap();
    let layout = LibraryLayout::new(tmp.path().join("lib"));
    layout.create().unwrap();
    for r in records {
        write_dir(&layout, &r.id, &serde_json::to_vec_pretty(r).unwrap());
    }
    (tmp, layout)
}

fn write_dir(layout: &LibraryLayout, id: &str, json: &[u8]) {
    let staged = layout.stage_track(id).unwrap();
    staged.write(TRACK_RECORD_FILE, json).unwrap();
    staged.commit().unwrap();
}

/// The ids of a search page and the total, as `"id id /total"`.
fn hits(cat: &Catalog, query: &str, offset: u64, limit: u64) -> String {
    let page = cat.search(query, offset, limit).unwrap();
    let ids: Vec<String> = page.tracks.into_iter().map(|t| t.id).collect();
    format!("{} /{}", ids.join(" "), page.total)
}

#[test]
fn open_and_reconcile_follow_the_directories() {
    let (_tmp, layout) = library(&[record("a1", "One", "X", "Y"), record("b2", "Two", "X", "Y")]);
    let mut cat = Catalog::open(&layout).unwrap();
    assert_eq!(cat.len().unwrap(), 2);
    assert_eq!(cat.get("a1").unwrap(), Some(record("a1", "One", "X", "Y")));
    assert_eq!(cat.get("ff").unwrap(), None);
    let sql = "SELECT title, artist, track_number, duration_samples, sample_rate FROM tracks";
    let row = cat.run(|c| c.query_row(sql, [], |r| <(String, String, u32, i64, u32)>::try_from(r)));
    assert_eq!(row.unwrap(), ("One".into(), "X".into(), 1, 480_000, 48_000));
    fs::remove_dir_all(layout.track_dir("a1")).unwrap();
    let three = record("c3", "Three", "X", "Y");
    write_dir(&layout, "c3", &serde_json::to_vec(&three).unwrap());
    let report = cat.reconcile().unwrap();
    assert_eq!(
        (report.added, report.removed, report.unreadable.len()),
        (1, 1, 0)
    );
    assert_eq!(
        (cat.get("a1").unwrap(), hits(&cat, "thr", 0, 9)),
        (None, "c3 /1".into())
    );
    assert_eq!(cat.reconcile().unwrap(), ReconcileReport::default());
    assert_eq!(cat.rebuild().unwrap().added, 2);
    assert_eq!(
        (hits(&cat, "one", 0, 9), hits(&cat, "", 0, 9)),
        (" /0".into(), "c3 b2 /2".into())
    );
}

#[test]
fn unreadable_track_json_is_reported_and_skipped() {
    let (_tmp, layout) = library(&[
        record("a1", "One", "X", "Y"),
        record("cc", "Moved", "X", "Y"),
    ]);
    write_dir(&layout, "b2", b"{ not json");
    fs::rename(layout.track_dir("cc"), layout.track_dir("c3")).unwrap();
    let mut cat = Catalog::open(&layout).unwrap();
    assert_eq!(cat.len().unwrap(), 1);
    assert_eq!(cat.reconcile().unwrap().unreadable, ["b2", "c3"]);
    // A stored row that no longer parses fails the reads that meet it; reconcile repairs it.
    let corrupt_row = |c: &Connection| c.execute("UPDATE tracks SET record_json = '{}'", []);
    cat.run(corrupt_row).unwrap();
    assert!(matches!(cat.get("a1"), Err(CatalogError::BadRecord { id, .. }) if id == "a1"));
    assert!(matches!(
        cat.search("", 0, 9),
        Err(CatalogError::BadRecord { .. })
    ));
    assert_eq!(cat.reconcile().unwrap().added, 1);
    assert!(cat.get("a1").unwrap().is_some());
}

#[test]
fn search_matches_word_prefixes_with_fts_and_like_fallback() {
    let (_tmp, layout) = library(&[
        record("a1", "Hey Jude", "The Beatles", "Past Masters"),
        record("a2", "Help!", "the beatles", "Help!"),
        record(
            "b1",
            "Jumpin' Jack Flash",
            "The Rolling Stones",
            "Hot Rocks",
        ),
        record("c1", "Judas", "Lady Gaga", "Born This Way"),
    ]);
    for fts in [true, false] {
        let cat = Catalog::open_with(&layout, fts).unwrap();
        assert_eq!(cat.fts, fts);
        assert_eq!(hits(&cat, "", 0, 100), "c1 a2 a1 b1 /4");
        assert_eq!(hits(&cat, "ju", 0, 9), "c1 a1 b1 /3");
        assert_eq!(hits(&cat, "BEAT he", 0, 9), "a2 a1 /2");
        assert_eq!(hits(&cat, "rocks", 0, 9), "b1 /1");
        assert_eq!(hits(&cat, "eatles", 0, 9), " /0");
        assert_eq!(hits(&cat, "  the  ", 1, 2), "a1 b1 /3");
        assert_eq!(hits(&cat, "the", 5, 2), " /3");
        let hostile = r#"" AND( * NOT OR title:x ^ ' % _ \ NEAR(a -x ( ) "ju"* {a} : a"b ""#;
        for q in hostile.split(' ').chain([hostile]) {
            cat.search(q, 0, 10).unwrap();
        }
        assert_eq!(hits(&cat, "a\"b", 0, 9), " /0");
    }
}

#[test]
fn corrupt_database_is_moved_aside_and_rebuilt() {
    let (_tmp, layout) = library(&[record("a1", "One", "X", "Y")]);
    fs::write(layout.catalog_path(), vec![0x5a; 8192]).unwrap();
    assert_eq!(Catalog::open(&layout).unwrap().len().unwrap(), 1);
    let names = fs::read_dir(layout.root())
        .unwrap()
        .map(|e| e.unwrap().file_name());
    let aside = names.filter(|n| n.to_string_lossy().starts_with("catalog.sqlite.corrupt-"));
    assert_eq!(aside.count(), 1);
}

#[test]
fn reader_sees_writer_upsert() {
    let (_tmp, layout) = library(&[]);
    let reader = Catalog::open(&layout).unwrap();
    let mut writer = Catalog::open(&layout).unwrap();
    assert_eq!(reader.len().unwrap(), 0);
    let mut r = record("a1", "Fresh", "New", "Album");
    writer.upsert(&r).unwrap();
    assert_eq!(reader.get("a1").unwrap(), Some(r.clone()));
    assert_eq!(hits(&reader, "fre", 0, 9), "a1 /1");
    r.title = "Renamed".into();
    writer.upsert(&r).unwrap();
    assert_eq!(
        (hits(&reader, "fre", 0, 9), hits(&reader, "ren", 0, 9)),
        (" /0".into(), "a1 /1".into())
    );
    assert_eq!(reader.len().unwrap(), 1);
}

#[test]
fn read_only_open_finds_a_database_whatever_its_path() {
    let tmp = tempfile::tempdir().unwrap();
    // Characters that SQLite's URI parser gives a meaning to, or that need escaping.
    let layout = LibraryLayout::new(tmp.path().join("we?ird #lib%20 ü"));
    layout.create().unwrap();
    write_dir(
        &layout,
        "a1",
        &serde_json::to_vec(&record("a1", "One", "X", "Y")).unwrap(),
    );
    drop(Catalog::open(&layout).unwrap());
    let read = Catalog::connect_read_only(&layout).unwrap().unwrap();
    assert_eq!(hits(&read, "one", 0, 9), "a1 /1");
    assert!(read.lists_exactly(&["a1".to_string()]).unwrap());
    assert!(!read.lists_exactly(&[]).unwrap());
    let uri = sqlite_uri(Path::new("rel/a b?#%.sqlite")).unwrap();
    assert!(uri.starts_with("file:///") && uri.ends_with("/rel/a%20b%3F%23%25.sqlite"));
}
