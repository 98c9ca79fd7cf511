use super::*;
use crate::catalog::test_record;

const BASE: &str = "/media/00112233445566778899aabb";

fn request(from: f64, seconds: f64) -> HintRequest {
    HintRequest {
        from,
        seconds,
        ..HintRequest::default()
    }
}

fn numbers(hint: &PrefetchHint) -> Vec<u64> {
    hint.segments.iter().map(|s| s.number).collect()
}

#[test]
fn rendition_is_chosen_by_id_then_bandwidth_then_lowest() {
    let r = test_record();
    assert_eq!(choose_rendition(&r, None, None).unwrap().id, "he-aac-64k");
    assert_eq!(
        choose_rendition(&r, Some("aac-lc-128k"), Some(10))
            .unwrap()
            .id,
        "aac-lc-128k"
    );
    // Half of 600 kbit/s fits the 280 kbit/s peak of the top rung; half of 500k does not.
    assert_eq!(
        choose_rendition(&r, None, Some(600_000)).unwrap().id,
        "aac-lc-256k"
    );
    assert_eq!(
        choose_rendition(&r, None, Some(500_000)).unwrap().id,
        "aac-lc-128k"
    );
    assert_eq!(
        choose_rendition(&r, None, Some(1_000)).unwrap().id,
        "he-aac-64k"
    );
    assert!(matches!(
        choose_rendition(&r, Some("opus"), None),
        Err(HintError::NoSuchRendition { .. })
    ));
}

#[test]
fn hint_covers_the_window_from_the_start_position() {
    let r = test_record();
    // The first segment is 0.98 s: three seconds need the second one too.
    let hint = make_hint(&r, BASE, &request(0.0, 3.0)).unwrap();
    assert_eq!(numbers(&hint), [1, 2]);
    assert_eq!(hint.init.bytes, 700);
    assert_eq!(
        hint.init.url,
        "/media/00112233445566778899aabb/he-aac-64k.0123456789ab/init.mp4"
    );
    assert_eq!(hint.segments[1].bytes, 2000);
    assert!((hint.segments[1].start - 47_104.0 / 48_000.0).abs() < 1e-9);
    // Half a second covers only the first.
    assert_eq!(
        numbers(&make_hint(&r, BASE, &request(0.0, 0.5)).unwrap()),
        [1]
    );
    // From 5 s (media 5.067 s): segment 3 starts at 4.949 s and lasts to 8.917 s.
    assert_eq!(
        numbers(&make_hint(&r, BASE, &request(5.0, 3.0)).unwrap()),
        [3]
    );
    assert_eq!(
        numbers(&make_hint(&r, BASE, &request(5.0, 4.0)).unwrap()),
        [3, 4]
    );
}

#[test]
fn positions_past_the_end_still_hint_the_last_segment() {
    let r = test_record();
    for from in [10.0, 99.0] {
        let hint = make_hint(&r, BASE, &request(from, 3.0)).unwrap();
        assert_eq!(numbers(&hint), [4], "from {from}");
        assert_eq!(hint.from, 10.0);
    }
}
