use std::time::Duration;

use super::*;

fn member(id: &str) -> Member {
    Member {
        info: DeviceInfo {
            id: id.into(),
            name: format!("device {id}"),
        },
        origin: "o1".into(),
    }
}

fn queue(n: usize) -> Vec<QueueEntry> {
    (0..n)
        .map(|i| QueueEntry {
            track: format!("t{i}"),
            duration: 100.0,
        })
        .collect()
}

fn session(now: Stamp) -> Session {
    let mut s = Session::new("s".into(), now);
    s.join(member("a")).unwrap();
    s.join(member("b")).unwrap();
    s
}

fn load(n: usize) -> Command {
    Command::Load {
        queue: queue(n),
        index: 0,
        position: 0.0,
        play: true,
    }
}

#[test]
fn load_makes_the_sender_active_only_when_nobody_is() {
    let t0 = Stamp::now();
    let mut s = session(t0);
    assert!(s.apply("b", load(3), t0).unwrap());
    assert_eq!(s.snapshot(t0).active_device.as_deref(), Some("b"));
    s.apply("a", load(2), t0).unwrap();
    let state = s.snapshot(t0);
    assert_eq!(state.active_device.as_deref(), Some("b"));
    assert_eq!(state.queue, ["t0", "t1"]);
    assert!(state.playing);
}

#[test]
fn the_position_runs_while_playing_and_stops_on_pause() {
    let t0 = Stamp::now();
    let mut s = session(t0);
    s.apply("a", load(2), t0).unwrap();
    let t1 = t0 + Duration::from_secs(10);
    assert!((s.snapshot(t1).position - 10.0).abs() < 1e-6);
    s.apply("b", Command::Pause, t1).unwrap();
    let t2 = t1 + Duration::from_secs(30);
    assert!((s.snapshot(t2).position - 10.0).abs() < 1e-6);
    // Never past the end of the track.
    s.apply("b", Command::Play, t2).unwrap();
    assert_eq!(s.snapshot(t2 + Duration::from_secs(500)).position, 100.0);
}

#[test]
fn previous_restarts_a_track_after_three_seconds() {
    let t0 = Stamp::now();
    let mut s = session(t0);
    s.apply("a", load(3), t0).unwrap();
    s.apply("a", Command::Next, t0).unwrap();
    s.apply("a", Command::Seek(50.0), t0).unwrap();
    s.apply("a", Command::Previous, t0).unwrap();
    assert_eq!((s.snapshot(t0).index, s.snapshot(t0).position), (1, 0.0));
    s.apply("a", Command::Previous, t0).unwrap();
    assert_eq!(s.snapshot(t0).index, 0);
    // Next past the end stops at the start of the queue.
    for _ in 0..3 {
        s.apply("a", Command::Next, t0).unwrap();
    }
    let state = s.snapshot(t0);
    assert_eq!((state.index, state.playing), (0, false));
}

#[test]
fn commands_on_an_empty_queue_are_refused() {
    let t0 = Stamp::now();
    let mut s = session(t0);
    for command in [
        Command::Play,
        Command::Next,
        Command::Seek(1.0),
        Command::Jump(0),
    ] {
        assert_eq!(s.apply("a", command, t0).unwrap_err().code, "queue_empty");
    }
}

#[test]
fn transfer_moves_playback_at_the_same_position() {
    let t0 = Stamp::now();
    let mut s = session(t0);
    s.apply("a", load(2), t0).unwrap();
    let t1 = t0 + Duration::from_secs(7);
    s.apply(
        "b",
        Command::Transfer {
            device: None,
            play: None,
        },
        t1,
    )
    .unwrap();
    let state = s.snapshot(t1);
    assert_eq!(state.active_device.as_deref(), Some("b"));
    assert!((state.position - 7.0).abs() < 1e-6 && state.playing);
    let e = s
        .apply(
            "a",
            Command::Transfer {
                device: Some("zz".into()),
                play: None,
            },
            t1,
        )
        .unwrap_err();
    assert_eq!(e.code, "unknown_device");
}

#[test]
fn only_the_active_device_reports_and_small_drift_is_not_broadcast() {
    let t0 = Stamp::now();
    let mut s = session(t0);
    s.apply("a", load(2), t0).unwrap();
    let report = |index, position| Command::Report {
        index,
        position,
        playing: true,
        bandwidth: Some(5e6),
    };
    assert_eq!(
        s.apply("b", report(0, 1.0), t0).unwrap_err().code,
        "not_active"
    );
    let t1 = t0 + Duration::from_secs(2);
    assert!(!s.apply("a", report(0, 2.3), t1).unwrap());
    assert!(s.apply("a", report(0, 9.0), t1).unwrap());
    // A gapless advance moves the session on.
    assert!(s.apply("a", report(1, 0.1), t1).unwrap());
    assert_eq!(s.snapshot(t1).track.as_deref(), Some("t1"));
}

#[test]
fn the_next_track_is_prefetched_once_for_the_active_device() {
    let t0 = Stamp::now();
    let mut s = session(t0);
    s.apply("a", load(3), t0).unwrap();
    let need = s.prefetch_need().unwrap();
    assert_eq!(
        (need.device.as_str(), need.index, need.track.as_str()),
        ("a", 1, "t1")
    );
    assert_eq!(s.prefetch_need(), None);
    // The first bandwidth report brings the hint again, now with a bandwidth.
    let report = Command::Report {
        index: 0,
        position: 0.5,
        playing: true,
        bandwidth: Some(2e6),
    };
    s.apply("a", report.clone(), t0).unwrap();
    assert_eq!(s.prefetch_need().unwrap().bandwidth, Some(2_000_000));
    s.apply("a", report, t0).unwrap();
    assert_eq!(s.prefetch_need(), None);
    s.apply("a", Command::Next, t0).unwrap();
    assert_eq!(s.prefetch_need().unwrap().track, "t2");
    s.apply("a", Command::Next, t0).unwrap();
    assert_eq!(s.prefetch_need(), None, "no track after the last");
}

#[test]
fn the_active_device_leaving_pauses_playback() {
    let t0 = Stamp::now();
    let mut s = session(t0);
    s.apply("a", load(2), t0).unwrap();
    assert!(s.leave("a", t0 + Duration::from_secs(4)));
    let state = s.snapshot(t0 + Duration::from_secs(60));
    assert_eq!(state.active_device, None);
    assert!(!state.playing);
    assert!((state.position - 4.0).abs() < 1e-6);
    assert!(!s.leave("a", t0));
}

#[test]
fn a_session_holds_at_most_max_devices() {
    let t0 = Stamp::now();
    let mut s = Session::new("s".into(), t0);
    for i in 0..MAX_DEVICES {
        s.join(member(&format!("d{i}"))).unwrap();
    }
    let refused = s.join(member("one-more")).unwrap_err();
    assert_eq!(refused.code, "session_full");
    assert_eq!(s.members().len(), MAX_DEVICES);
}

#[test]
fn an_origin_leaving_takes_its_devices_and_pauses_if_one_played() {
    let t0 = Stamp::now();
    let mut s = session(t0);
    let mut other = member("c");
    other.origin = "o2".into();
    s.join(other).unwrap();
    s.apply("c", load(2), t0).unwrap();
    assert!(s.leave_origin("o2", t0 + Duration::from_secs(5)));
    let state = s.snapshot(t0 + Duration::from_secs(5));
    assert_eq!(state.devices.len(), 2);
    assert_eq!(state.active_device, None);
    assert!(!state.playing);
    assert!((state.position - 5.0).abs() < 1e-6);
    assert!(!s.leave_origin("o2", t0));
}

#[test]
fn a_stored_session_round_trips_and_bad_ones_fail_the_check() {
    let t0 = Stamp::now();
    let mut s = session(t0);
    s.apply("a", load(3), t0).unwrap();
    let json = serde_json::to_string(&s).unwrap();
    let back: Session = serde_json::from_str(&json).unwrap();
    assert_eq!(back, s);
    assert!(back.check("s").is_ok());
    assert!(back.check("other").is_err());
    let mut bad = s.clone();
    bad.index = 7;
    assert!(bad.check("s").is_err());
    let mut bad = s.clone();
    bad.volume = 2.0;
    assert!(bad.check("s").is_err());
    let mut bad = s;
    bad.position = f64::NAN;
    assert!(bad.check("s").is_err());
}

#[test]
fn a_winning_copy_takes_other_origins_devices_from_the_stored_one() {
    let now = Stamp(1_000);
    let on = |id: &str, origin: &str| Member {
        origin: origin.into(),
        ..member(id)
    };
    // Ours (o1) missed o2's join of "c" and still lists "x", which left o2 meanwhile.
    let mut mine = Session::new("s".into(), now);
    mine.join(on("a", "o1")).unwrap();
    mine.join(on("x", "o2")).unwrap();
    let mut stored = Session::new("s".into(), now);
    stored.join(on("b", "o1")).unwrap();
    stored.join(on("c", "o2")).unwrap();
    mine.take_devices_of_others(&stored, "o1", now);
    let ids: Vec<&str> = mine.members().iter().map(|m| m.info.id.as_str()).collect();
    assert_eq!(
        ids,
        ["a", "c"],
        "o1's own devices kept, o2's taken from the stored copy"
    );
}

#[test]
fn changed_moves_forward_even_when_this_clock_is_behind() {
    let mut s = session(Stamp(10_000));
    s.apply("a", load(2), Stamp(10_000)).unwrap();
    // A command from an origin whose clock is 5 s behind still comes later in the history.
    s.apply("a", Command::Pause, Stamp(5_000)).unwrap();
    assert!(s.changed() > Stamp(10_000));
}
