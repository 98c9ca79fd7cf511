//! The Autobahn WebSocket test cases against a real `segue serve --ws-conformance-echo`: the
//! echo endpoint `/ws/echo` runs on the control channel's WebSocket stack, so this checks the
//! server's framing, fragmentation, UTF-8 validation, ping/pong and close handshake.
//!
//! kosoku (PyPI, pinned in tests/peers/requirements-autobahn.txt) runs the cases on Python 3,
//! driven by `tests/peers/autobahn.py`, which writes the Autobahn report and prints a summary.
//! Cases 12.* and 13.* (permessage-deflate) are left out: the server does not offer it. No case
//! may fail, on the message exchange or the closing handshake, and every case of 1.* to 10.*
//! must be OK, NON-STRICT or INFORMATIONAL (not UNIMPLEMENTED). On failure the report (with
//! `index.html`) is kept and its path printed.

mod common;
#[path = "peers/support.rs"]
mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use common::TempLibrary;
use support::*;

/// The driver's own deadline for the whole run (about 15 s on an idle 2-core machine, debug
/// build; 9.* takes about 5 s of it).
const CASES_DEADLINE_SECS: u64 = 300;
/// The driver process, Python start and report writing included.
const RUN_LIMIT: Duration = Duration::from_secs(CASES_DEADLINE_SECS + 30);
/// permessage-deflate cases, not offered by the server.
const EXCLUDED: [&str; 2] = ["12.*", "13.*"];
/// Case groups that must all run (Autobahn has no group 8).
const GROUPS: [&str; 9] = ["1", "2", "3", "4", "5", "6", "7", "9", "10"];
/// Verdicts on the message exchange accepted for 1.* to 10.*.
const ACCEPTED: [&str; 3] = ["OK", "NON-STRICT", "INFORMATIONAL"];
/// Failed cases shown in full in the failure message; the rest by id (the report has them all).
const DETAILED_FAILURES: usize = 10;

#[test]
fn websocket_echo_passes_the_autobahn_cases() {
    require_program(
        "kosoku (the Autobahn test cases on Python 3)",
        "python3",
        &["-c", "import kosoku"],
        "`python3 -m pip install -r tests/peers/requirements-autobahn.txt`",
    );
    let library = TempLibrary::new();
    let server = Server::start(&library.library(), &["--ws-conformance-echo"]);
    let url = server.url("/ws/echo").replacen("http://", "ws://", 1);
    let report = tempfile::tempdir().expect("report dir");

    let mut driver = Command::new("python3");
    driver
        .arg(peers_dir().join("autobahn.py"))
        .args(["--url", &url])
        .arg("--report-dir")
        .arg(report.path())
        .args(["--deadline-secs", &CASES_DEADLINE_SECS.to_string()]);
    for case in EXCLUDED {
        driver.args(["--exclude", case]);
    }
    let out = run_bounded(driver, RUN_LIMIT);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let summary: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "autobahn.py printed no JSON summary ({e}, {}):\n{stdout}\n{stderr}",
            out.status
        )
    });
    if let Some(error) = summary["error"].as_str() {
        panic!(
            "autobahn.py could not run the cases: {error}\n{stderr}\nserver log:\n{}",
            server.log_tail(20)
        );
    }

    println!(
        "kosoku {}: {} cases in {} s; behavior {}; close {}; seconds by group {}",
        summary["kosoku"],
        summary["cases"],
        summary["wall_seconds"],
        summary["behavior"],
        summary["behavior_close"],
        summary["case_seconds_by_group"],
    );
    for case in summary["non_strict"].as_array().into_iter().flatten() {
        println!(
            "NON-STRICT {}: {} ({})",
            case["id"], case["expectation"], case["result"]
        );
    }

    let mut problems = Vec::new();
    let failed = summary["failed"].as_array().map_or(&[][..], Vec::as_slice);
    for case in failed.iter().take(DETAILED_FAILURES) {
        problems.push(format!("FAILED {case:#}"));
    }
    if failed.len() > DETAILED_FAILURES {
        let rest: Vec<String> = failed[DETAILED_FAILURES..]
            .iter()
            .map(|c| format!("{} ({}/{})", c["id"], c["behavior"], c["behavior_close"]))
            .collect();
        problems.push(format!("FAILED too: {}", rest.join(", ")));
    }
    let results = summary["results"].as_array().expect("results in summary");
    for group in GROUPS {
        if !results.iter().any(|r| group_of(r) == group) {
            problems.push(format!("no case of {group}.* ran"));
        }
    }
    for result in results {
        let group = group_of(result);
        if EXCLUDED.iter().any(|e| e.strip_suffix(".*") == Some(group)) {
            problems.push(format!("excluded case {} ran", result["id"]));
        } else if GROUPS.contains(&group)
            && !failed.iter().any(|f| f["id"] == result["id"])
            && !ACCEPTED.iter().any(|&b| result["behavior"] == b)
        {
            problems.push(format!(
                "{} is {} (close: {})",
                result["id"], result["behavior"], result["behavior_close"]
            ));
        }
    }
    if !problems.is_empty() || !out.status.success() {
        let kept = report.keep();
        panic!(
            "the Autobahn cases did not all pass ({} failed; driver {}); report kept in {}:\n{}\n\
             server log:\n{}",
            failed.len(),
            out.status,
            kept.join("index.html").display(),
            problems.join("\n"),
            server.log_tail(20)
        );
    }
}

/// The case's group: "9" for 9.4.2.
fn group_of(result: &Value) -> &str {
    let id = result["id"].as_str().unwrap_or_default();
    id.split('.').next().unwrap_or_default()
}
