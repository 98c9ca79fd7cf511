//! Tests of the catalog index against real track directories.
use super::read_only::sqlite_uri;
use super::*;
use crate::catalog::model::test_record;
use crate::store::{LibraryLayout, TRACK_RECORD_FILE};

/// The shared fixture, as track `id(short)` with these tags.
fn record(short: &str, title: &str, artist: &str, album: &str) -> TrackRecord {
    TrackRecord {
        id: id(short),
        title: title.into(),
        artist: Some(artist.into()),
        album: Some(album.into()),
        ..test_record()
    }
}

/// A track id that ends in `short` (track ids have a fixed length).
fn id(short: &str) -> String {
    format!("{short:0>24}")
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

/// The ids of a search page (without [`id`]'s padding) and the total, as `"id id /total"`.
fn hits(cat: &Catalog, query: &str, offset: u64, limit: u64) -> String {
    let page = cat.search(query, offset, limit).unwrap();
    let ids: Vec<&str> = page
        .tracks
        .iter()
        .map(|t| t.id.trim_start_matches('0'))
        .collect();
    format!("{} /{}", ids.join(" "), page.total)
}

#[test]
fn open_and_reconcile_follow_the_directories() {
    let (_tmp, layout) = library(&[record("a1", "One", "X", "Y"), record("b2", "Two", "X", "Y")]);
    let mut cat = Catalog::open(&layout).unwrap();
    assert_eq!(cat.len().unwrap(), 2);
    assert_eq!(
        cat.get(&id("a1")).unwrap(),
        Some(record("a1", "One", "X", "Y"))
    );
    assert_eq!(cat.get(&id("ff")).unwrap(), None);
    let sql = "SELECT title, artist, track_number, duration_samples, sample_rate FROM tracks";
    let row = cat.run(|c| c.query_row(sql, [], |r| <(String, String, u32, i64, u32)>::try_from(r)));
    assert_eq!(row.unwrap(), ("One".into(), "X".into(), 4, 480_000, 48_000));
    fs::remove_dir_all(layout.track_dir(&id("a1"))).unwrap();
    let three = record("c3", "Three", "X", "Y");
    write_dir(&layout, &id("c3"), &serde_json::to_vec(&three).unwrap());
    let report = cat.reconcile().unwrap();
    assert_eq!(
        (report.added, report.removed, report.unreadable.len()),
        (1, 1, 0)
    );
    assert_eq!(
        (cat.get(&id("a1")).unwrap(), hits(&cat, "thr", 0, 9)),
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
    write_dir(&layout, &id("b2"), b"{ not json");
    fs::rename(layout.track_dir(&id("cc")), layout.track_dir(&id("c3"))).unwrap();
    let mut cat = Catalog::open(&layout).unwrap();
    assert_eq!(cat.len().unwrap(), 1);
    assert_eq!(cat.reconcile().unwrap().unreadable, [id("b2"), id("c3")]);
    // A stored row that no longer parses fails the reads that meet it; reconcile repairs it.
    let corrupt_row = |c: &Connection| c.execute("UPDATE tracks SET record_json = '{}'", []);
    cat.run(corrupt_row).unwrap();
    assert!(
        matches!(cat.get(&id("a1")), Err(CatalogError::BadRecord { id: bad, .. }) if bad == id("a1"))
    );
    assert!(matches!(
        cat.search("", 0, 9),
        Err(CatalogError::BadRecord { .. })
    ));
    assert_eq!(cat.reconcile().unwrap().added, 1);
    assert!(cat.get(&id("a1")).unwrap().is_some());
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
        let cat = Catalog::open_with(&(&layout).into(), fts).unwrap();
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
    assert_eq!(reader.get(&id("a1")).unwrap(), Some(r.clone()));
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
        &id("a1"),
        &serde_json::to_vec(&record("a1", "One", "X", "Y")).unwrap(),
    );
    drop(Catalog::open(&layout).unwrap());
    let read = Catalog::connect_read_only(&(&layout).into())
        .unwrap()
        .unwrap();
    assert_eq!(hits(&read, "one", 0, 9), "a1 /1");
    assert!(read.lists_exactly(&[id("a1")]).unwrap());
    assert!(!read.lists_exactly(&[]).unwrap());
    let uri = sqlite_uri(Path::new("rel/a b?#%.sqlite")).unwrap();
    assert!(uri.starts_with("file:///") && uri.ends_with("/rel/a%20b%3F%23%25.sqlite"));
}
