//! The shape of the code, checked: no import cycle between modules of `src/`, no source file
//! over 500 lines, and `unsafe` only where segue calls C libraries (the codecs' FFI).
//!
//! A cycle is two modules that name each other, directly or through others: then neither can
//! be read, tested or moved alone, and the tree stops reading as the data flow
//! (`../shared/CONVENTIONS.md`). The module graph is read from the source text: every
//! `crate::`, `super::` and `self::` path, in `use` trees and in code, is an edge to the deepest
//! module it names. A file module is a node (`ingest/pipeline.rs` is `ingest::pipeline`).
//!
//! Hand-written because the tool that draws Rust module graphs (`cargo-modules`) builds
//! rust-analyzer, a long build on a 2-core CI machine, for what a path scan answers here: segue's
//! modules are files, and nothing imports through macros or `#[path]`.
//!
//! Two edges are not counted: a child naming its ancestor (`use super::Thing` from a submodule
//! reads the namespace its parent declares, which Rust's module tree makes mutual anyway) and
//! anything in test-only code (`#[cfg(test)]` blocks, `tests.rs` and `*_tests.rs` files).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 500;

/// Files allowed to hold `unsafe`: the FFI to C codecs and SQLite's errno, which no safe
/// binding exposes.
const UNSAFE_ALLOWED: &[&str] = &[
    "src/ingest/encode.rs",
    "src/ingest/decode/fdk_aac.rs",
    "src/ingest/decode/opus.rs",
    "src/catalog/index/mod.rs",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if path.is_dir() {
            if name.starts_with('.') || name == "node_modules" || name == "target" {
                continue;
            }
            rust_files(&path, out);
        } else if name.ends_with(".rs") || name.ends_with(".js") || name.ends_with(".mjs") {
            out.push(path);
        }
    }
}

/// `src/ingest/pipeline.rs` -> `ingest::pipeline`; `src/ingest/mod.rs` -> `ingest`; `lib.rs` -> ``.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?.with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let last = parts.last()?.clone();
    if last == "tests" || last.ends_with("_tests") {
        return None;
    }
    if ["mod", "lib", "main"].contains(&last.as_str()) {
        parts.pop();
    }
    Some(parts.join("::"))
}

/// The source without comments, string literals and `#[cfg(test)]` items.
fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let rest = &text[i..];
        if rest.starts_with("//") {
            i += rest.find('\n').unwrap_or(rest.len());
        } else if rest.starts_with("/*") {
            i += rest.find("*/").map_or(rest.len(), |e| e + 2);
        } else if rest.starts_with("r#\"") || rest.starts_with("r\"") {
            let close = if rest.starts_with("r#") { "\"#" } else { "\"" };
            let open = if rest.starts_with("r#") { 3 } else { 2 };
            out.push_str("\"\"");
            i += rest[open..]
                .find(close)
                .map_or(rest.len(), |e| open + e + close.len());
        } else if let Some(len) = char_literal(rest) {
            out.push_str("' '");
            i += len;
        } else if rest.starts_with('"') {
            let mut j = 1;
            while j < rest.len() {
                match rest.as_bytes()[j] {
                    b'\\' => j += 2,
                    b'"' => break,
                    _ => j += 1,
                }
            }
            out.push_str("\"\"");
            i += (j + 1).min(rest.len());
        } else if let Some(item) = rest.strip_prefix("#[cfg(test)]") {
            i += rest.len() - item.len() + skip_item(item);
        } else {
            let c = rest.chars().next().unwrap_or(' ');
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// The length of the char literal (`'x'`, `'\''`, `'\u{1F600}'`) that starts `text`, if one
/// does (not a lifetime such as `'a`).
fn char_literal(text: &str) -> Option<usize> {
    let rest = text.strip_prefix('\'')?;
    if rest.starts_with('\\') {
        return rest.get(2..)?.find('\'').map(|e| e + 4);
    }
    let c = rest.chars().next()?;
    rest[c.len_utf8()..]
        .starts_with('\'')
        .then(|| c.len_utf8() + 2)
}

/// Bytes up to the end of the item that starts `text`: its `;` or its balanced `{...}`.
fn skip_item(text: &str) -> usize {
    let mut depth = 0usize;
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return i + 1;
                }
            }
            ';' if depth == 0 => return i + 1,
            _ => {}
        }
    }
    text.len()
}

/// Every path the code names from `crate`, `super` or `self`, with `use` groups expanded.
fn paths_named(code: &str) -> Vec<Vec<String>> {
    let tokens = tokenize(code);
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let t = tokens[i].as_str();
        let starts = matches!(t, "crate" | "super" | "self")
            && tokens.get(i + 1).is_some_and(|n| n == "::")
            && (i == 0 || tokens[i - 1] != "::");
        if starts {
            i = use_tree(&tokens, i, Vec::new(), &mut out);
        } else {
            i += 1;
        }
    }
    out
}

/// Reads the path (or use tree) at `tokens[i]`, pushing each full path; returns the index after it.
fn use_tree(
    tokens: &[String],
    mut i: usize,
    mut prefix: Vec<String>,
    out: &mut Vec<Vec<String>>,
) -> usize {
    loop {
        match tokens.get(i).map(String::as_str) {
            Some("{") => {
                i += 1;
                loop {
                    match tokens.get(i).map(String::as_str) {
                        Some("}") => return i + 1,
                        Some(",") => i += 1,
                        None => return i,
                        _ => i = use_tree(tokens, i, prefix.clone(), out),
                    }
                }
            }
            Some(word) if is_ident(word) => {
                prefix.push(word.to_string());
                i += 1;
                if tokens.get(i).is_some_and(|t| t == "::") {
                    i += 1;
                    continue;
                }
                out.push(prefix);
                return i;
            }
            _ => {
                out.push(prefix);
                return i;
            }
        }
    }
}

fn is_ident(word: &str) -> bool {
    word.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
}

fn tokenize(code: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut chars = code.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        if c.is_alphanumeric() || c == '_' {
            let mut end = start + c.len_utf8();
            while let Some(&(j, d)) = chars.peek() {
                if !(d.is_alphanumeric() || d == '_') {
                    break;
                }
                end = j + d.len_utf8();
                chars.next();
            }
            tokens.push(code[start..end].to_string());
        } else if c == ':' && chars.peek().is_some_and(|&(_, d)| d == ':') {
            chars.next();
            tokens.push("::".into());
        } else if !c.is_whitespace() {
            tokens.push(c.to_string());
        }
    }
    tokens
}

/// The deepest module of `modules` that `path` (as written in module `from`) names.
fn resolve(modules: &BTreeSet<String>, from: &str, path: &[String]) -> Option<String> {
    let mut base: Vec<&str> = if from.is_empty() {
        Vec::new()
    } else {
        from.split("::").collect()
    };
    let mut rest = path;
    match rest.first().map(String::as_str) {
        Some("crate") => {
            base.clear();
            rest = &rest[1..];
        }
        Some("self") => rest = &rest[1..],
        Some("super") => {
            while rest.first().is_some_and(|s| s == "super") {
                base.pop();
                rest = &rest[1..];
            }
        }
        _ => return None,
    }
    let mut best = None;
    let mut candidate: Vec<&str> = base.clone();
    if modules.contains(&candidate.join("::")) {
        best = Some(candidate.join("::"));
    }
    for seg in rest {
        candidate.push(seg);
        let name = candidate.join("::");
        if modules.contains(&name) {
            best = Some(name);
        }
    }
    best
}

fn is_ancestor(ancestor: &str, of: &str) -> bool {
    ancestor.is_empty() || of.starts_with(&format!("{ancestor}::"))
}

fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = root().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let sources: BTreeMap<String, String> = files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "rs"))
        .filter_map(|f| Some((module_of(&src, f)?, fs::read_to_string(f).ok()?)))
        .collect();
    let modules: BTreeSet<String> = sources.keys().cloned().collect();
    sources
        .iter()
        .map(|(module, text)| {
            let edges = paths_named(&code_only(text))
                .iter()
                .filter_map(|p| resolve(&modules, module, p))
                .filter(|to| to != module && !is_ancestor(to, module))
                .collect();
            (module.clone(), edges)
        })
        .collect()
}

/// Strongly connected components with more than one module (Tarjan's algorithm).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Walk<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'a>(w: &mut Walk<'a>, v: &'a str) {
        let n = w.index.len();
        w.index.insert(v, n);
        w.low.insert(v, n);
        w.stack.push(v);
        for to in w.graph.get(v).into_iter().flatten() {
            let to = to.as_str();
            if !w.graph.contains_key(to) {
                continue;
            }
            if !w.index.contains_key(to) {
                visit(w, to);
                let low = w.low[v].min(w.low[to]);
                w.low.insert(v, low);
            } else if w.stack.contains(&to) {
                let low = w.low[v].min(w.index[to]);
                w.low.insert(v, low);
            }
        }
        if w.low[v] == w.index[v] {
            let mut component = Vec::new();
            while let Some(top) = w.stack.pop() {
                component.push(top.to_string());
                if top == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                w.found.push(component);
            }
        }
    }
    let mut walk = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !walk.index.contains_key(v.as_str()) {
            visit(&mut walk, v);
        }
    }
    walk.found
}

#[test]
fn modules_import_one_way() {
    let graph = module_graph();
    assert!(
        graph.len() > 20,
        "the scan found only {} modules",
        graph.len()
    );
    let found = cycles(&graph);
    let report: Vec<String> = found
        .iter()
        .map(|component| {
            let arrows: Vec<String> = component
                .iter()
                .flat_map(|a| {
                    graph[a]
                        .iter()
                        .filter(|b| component.contains(b))
                        .map(move |b| format!("{a} -> {b}"))
                })
                .collect();
            format!("cycle among {component:?}: {}", arrows.join(", "))
        })
        .collect();
    assert!(report.is_empty(), "import cycles:\n{}", report.join("\n"));
}

#[test]
fn the_cycle_check_sees_a_cycle() {
    let modules: BTreeSet<String> = ["a", "a::b", "c"].iter().map(|s| s.to_string()).collect();
    let scan = |module: &str, code: &str| -> BTreeSet<String> {
        paths_named(&code_only(code))
            .iter()
            .filter_map(|p| resolve(&modules, module, p))
            .filter(|to| to != module && !is_ancestor(to, module))
            .collect()
    };
    let set = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    let a = "use crate::c::{Thing, other::{X}};\nconst Q: char = '\"';\n\
             #[cfg(test)]\nmod tests { use crate::a::b; }";
    assert_eq!(
        scan("a", a),
        set(&["c"]),
        "test code, strings and comments are not counted"
    );
    let c = "fn f() { let _ = crate::a::b::make(); } // crate::c";
    assert_eq!(scan("c", c), set(&["a::b"]));
    assert_eq!(
        scan("a::b", "use super::Thing;"),
        set(&[]),
        "a child naming its parent"
    );
    let mut graph = BTreeMap::from([
        ("a".to_string(), scan("a", a)),
        ("c".to_string(), scan("c", c)),
        (
            "a::b".to_string(),
            scan("a::b", "use super::super::a::Thing;"),
        ),
    ]);
    assert!(cycles(&graph).is_empty(), "a -> c -> a::b is no cycle");
    graph.insert(
        "a::b".to_string(),
        scan("a::b", "use crate::c::{self, Thing};"),
    );
    assert_eq!(
        cycles(&graph),
        vec![vec!["a::b".to_string(), "c".to_string()]]
    );
}

#[test]
fn no_source_file_is_over_500_lines() {
    let mut files = Vec::new();
    for dir in ["src", "tests", "benches", "fuzz", "templates"] {
        rust_files(&root().join(dir), &mut files);
    }
    assert!(
        files.len() > 50,
        "the scan found only {} files",
        files.len()
    );
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let lines = fs::read_to_string(f).ok()?.lines().count();
            let rel = f.strip_prefix(root()).unwrap_or(f).display().to_string();
            (lines > MAX_LINES).then(|| format!("{rel}: {lines} lines"))
        })
        .collect();
    assert!(
        long.is_empty(),
        "split these by responsibility:\n{}",
        long.join("\n")
    );
}

#[test]
fn unsafe_only_in_the_ffi_modules() {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    let offenders: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let rel = f.strip_prefix(root()).ok()?.display().to_string();
            let code = code_only(&fs::read_to_string(f).ok()?);
            let uses = tokenize(&code).iter().any(|t| t == "unsafe");
            (uses && !UNSAFE_ALLOWED.contains(&rel.as_str())).then_some(rel)
        })
        .collect();
    assert!(
        offenders.is_empty(),
        "unsafe outside the FFI modules (use rustix): {offenders:?}"
    );
}
