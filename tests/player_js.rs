//! The player's JavaScript, checked by `cargo nextest run`: `tests/player/check.sh` type-checks
//! `templates/*.js` with `tsc --noEmit` (`// @ts-check`, JSDoc types, strict) and runs the
//! node:test unit tests of its pure modules (`templates/logic.js`, `templates/format.js`). A type
//! error or a failed JS unit test fails this test, with the checker's output.
//! Needs node and `npm ci` in tests/peers (`.ci/run`), as the browser peer tests do.

use std::path::Path;
use std::process::Command;

#[test]
fn player_javascript_type_checks_and_its_unit_tests_pass() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("bash")
        .arg(root.join("tests/player/check.sh"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run tests/player/check.sh: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "tests/player/check.sh failed ({}); it needs node and `npm ci` in tests/peers (.ci/run):\n{stdout}\n{stderr}",
        out.status
    );
}
