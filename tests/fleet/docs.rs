//! docs/deploy.md explains the tested nginx config by quoting it: every line of its ```nginx
//! blocks must be a line of `tests/peers/nginx-fleet.conf` (whitespace aside), so the document
//! cannot describe a setting the test does not run.

use std::path::Path;

use crate::peers::peers_dir;

/// Lines of `text` with their runs of whitespace made one space.
fn normalized(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
        .collect()
}

/// The lines of every fenced ```nginx block of `markdown`.
fn nginx_blocks(markdown: &str) -> Vec<String> {
    let mut inside = false;
    let mut lines = Vec::new();
    for line in markdown.lines() {
        let fence = line.trim_start();
        if fence.starts_with("```") {
            inside = !inside && fence.trim_start_matches('`') == "nginx";
        } else if inside {
            lines.push(line.to_string());
        }
    }
    normalized(&lines.join("\n"))
}

#[test]
fn deploy_doc_quotes_the_tested_nginx_config() {
    let doc_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/deploy.md");
    let doc = std::fs::read_to_string(&doc_path).expect("docs/deploy.md");
    let conf = std::fs::read_to_string(peers_dir().join("nginx-fleet.conf"))
        .expect("tests/peers/nginx-fleet.conf");
    let conf_lines = normalized(&conf);
    let quoted = nginx_blocks(&doc);
    assert!(
        quoted.len() >= 20,
        "docs/deploy.md quotes only {} lines of the nginx config",
        quoted.len()
    );
    let missing: Vec<&String> = quoted
        .iter()
        .filter(|q| !conf_lines.iter().any(|c| c == *q))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/deploy.md quotes lines that tests/peers/nginx-fleet.conf does not have \
         (update the document, or the config and its tests):\n{missing:#?}"
    );
}
