use super::*;
use crate::catalog::model::test_record;

const ID: &str = "00112233445566778899aabb";
const DEAD: &str = "ffeeddccbbaa998877665544";
const HOUR: Duration = Duration::from_secs(3600);

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn object(key: &str, age: Duration) -> Listed {
    Listed {
        key: key.to_string(),
        size: 10,
        last_modified: now() - age,
    }
}

fn committed() -> BTreeMap<String, Committed> {
    BTreeMap::from([(ID.to_string(), Committed::Record(Box::new(test_record())))])
}

fn keys(plan: &Plan) -> Vec<&str> {
    plan.delete.iter().map(|o| o.key.as_str()).collect()
}

#[test]
fn ages_have_units() {
    assert_eq!(parse_age("0s").unwrap(), Duration::ZERO);
    assert_eq!(parse_age("30s").unwrap(), Duration::from_secs(30));
    assert_eq!(parse_age("15m").unwrap(), Duration::from_secs(900));
    assert_eq!(parse_age("24h").unwrap(), Duration::from_secs(86_400));
    assert_eq!(parse_age("7d").unwrap(), Duration::from_secs(604_800));
    for bad in [
        "",
        "h",
        "24",
        "-1h",
        "1.5h",
        "1w",
        "h24",
        "99999999999999999999d",
    ] {
        assert!(parse_age(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn referenced_objects_are_never_deleted_however_old() {
    let old = 1000 * HOUR;
    let listing: Vec<Listed> = test_record()
        .files()
        .iter()
        .map(|f| object(&format!("tracks/{ID}/{f}"), old))
        .collect();
    let count = listing.len();
    let plan = plan(listing, &committed(), now(), Duration::ZERO);
    assert!(plan.delete.is_empty(), "{:?}", keys(&plan));
    assert_eq!(plan.referenced, count);
}

#[test]
fn unreferenced_objects_go_once_older_than_the_grace() {
    let record = test_record();
    let dir = &record.renditions[0].dir;
    let listing = vec![
        // A segment past the record's count, a stale rendition directory, a killed track.
        object(&format!("tracks/{ID}/{dir}/5.m4s"), 25 * HOUR),
        object(
            &format!("tracks/{ID}/aac-lc-128k.ffffffffffff/1.m4s"),
            25 * HOUR,
        ),
        object(&format!("tracks/{DEAD}/master.m3u8"), 25 * HOUR),
        object(&format!("tracks/{DEAD}/x/1.m4s"), 23 * HOUR),
        object(&format!("tracks/{ID}/{dir}/1.m4s"), 25 * HOUR),
    ];
    let plan = plan(listing, &committed(), now(), 24 * HOUR);
    assert_eq!(
        keys(&plan),
        vec![
            format!("tracks/{ID}/aac-lc-128k.ffffffffffff/1.m4s"),
            format!("tracks/{ID}/{dir}/5.m4s"),
        ]
    );
    // The killed track wrote an object 23 h ago: it may be an ingest in flight re-using older
    // leftovers, so all of it stays until its newest object is past the grace too.
    assert_eq!((plan.referenced, plan.recent, plan.foreign), (1, 2, 0));
    let later = plan_at(25 * HOUR);
    assert_eq!(
        later,
        vec![
            format!("tracks/{DEAD}/master.m3u8"),
            format!("tracks/{DEAD}/x/1.m4s")
        ]
    );
}

/// What the plan deletes of a killed track whose objects are 25 h and 23 h old, `after` later.
fn plan_at(after: Duration) -> Vec<String> {
    let listing = vec![
        object(&format!("tracks/{DEAD}/master.m3u8"), 25 * HOUR + after),
        object(&format!("tracks/{DEAD}/x/1.m4s"), 23 * HOUR + after),
    ];
    let plan = plan(listing, &committed(), now(), 24 * HOUR);
    keys(&plan).into_iter().map(str::to_string).collect()
}

#[test]
fn an_unreadable_record_protects_its_whole_track() {
    let mut committed = committed();
    committed.insert(DEAD.to_string(), Committed::Unreadable);
    let listing = vec![
        object(&format!("tracks/{DEAD}/track.json"), 100 * HOUR),
        object(&format!("tracks/{DEAD}/a.1/1.m4s"), 100 * HOUR),
    ];
    let plan = plan(listing, &committed, now(), Duration::ZERO);
    assert!(plan.delete.is_empty());
    assert_eq!(plan.referenced, 2);
}

#[test]
fn foreign_keys_and_future_times_are_kept() {
    let listing = vec![
        object("tracks/README", 100 * HOUR),
        object("tracks/not-an-id/x", 100 * HOUR),
        object(&format!("tracks/{DEAD}/"), 100 * HOUR),
        Listed {
            key: format!("tracks/{DEAD}/master.m3u8"),
            size: 1,
            last_modified: now() + HOUR,
        },
    ];
    let plan = plan(listing, &BTreeMap::new(), now(), Duration::ZERO);
    assert!(plan.delete.is_empty(), "{:?}", keys(&plan));
    assert_eq!((plan.foreign, plan.recent), (3, 1));
}

#[test]
fn a_local_library_is_collected_and_emptied_directories_go() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = crate::store::LibraryLayout::new(tmp.path());
    layout.create().unwrap();
    let record = test_record();
    let live = layout.track_dir(ID);
    for file in record.files() {
        let path = live.join(&file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"x").unwrap();
    }
    std::fs::write(
        live.join(TRACK_RECORD_FILE),
        serde_json::to_vec(&record).unwrap(),
    )
    .unwrap();
    let dead = layout.track_dir(DEAD).join("r.000000000000");
    std::fs::create_dir_all(&dead).unwrap();
    std::fs::write(dead.join("1.m4s"), b"leftover").unwrap();
    let library = Library::Local(layout.clone());
    let listing = list_objects(&library).unwrap();
    assert_eq!(listing.len(), record.files().len() + 1);
    let committed = read_committed(&library, &listing).unwrap();
    let plan = plan(
        listing,
        &committed,
        SystemTime::now() + HOUR,
        Duration::ZERO,
    );
    assert_eq!(
        keys(&plan),
        vec![format!("tracks/{DEAD}/r.000000000000/1.m4s")]
    );
    let deleted = delete(&library, plan.delete);
    assert!(deleted.iter().all(|d| d.error.is_none()));
    assert!(
        !layout.track_dir(DEAD).exists(),
        "the emptied track directory stayed"
    );
    assert!(layout.tracks_dir().is_dir());
    assert!(record.files().iter().all(|f| live.join(f).is_file()));
}
