//! An origin on a bucket library spares the bucket: its disk cache (`--cache-dir`) outlives a
//! restart and catches a damaged file, and concurrent misses for one object make one bucket
//! request. The bucket is moto's S3 server ([`common::s3`]); its access log counts the GETs.

mod common;
#[path = "peers/support.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Barrier};

use common::s3::S3Server;
use common::serve::{ServeCommand, ServeProcess};
use common::{TempLibrary, make_wav};
use support::{http_get, resolve};

/// Ingests a generated `seconds`-long WAV into the bucket library at `url`; returns its id.
fn ingest(s3: &S3Server, url: &str, lib: &TempLibrary, seconds: f64) -> String {
    let input = make_wav(&lib.inputs(), "song.wav", 48_000, seconds);
    let out = Command::new(env!("CARGO_BIN_EXE_segue"))
        .args(["ingest", "--json", "--library", url])
        .arg(&input)
        .envs(s3.env())
        .env("XDG_CACHE_HOME", lib.library().join("state"))
        .output()
        .expect("run segue ingest");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "ingest failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    line["id"].as_str().unwrap().to_string()
}

/// An origin on the bucket library at `url`, its state (catalog index) under `lib`.
fn origin(s3: &S3Server, url: &str, lib: &TempLibrary, args: &[&str]) -> ServeProcess {
    let state = lib.library().join("state").to_string_lossy().into_owned();
    ServeCommand::of(url)
        .envs(s3.env())
        .envs([("XDG_CACHE_HOME", state)])
        .args(args)
        .start()
}

/// The URLs of the top rendition's init segment and media segments, from the playlists.
fn media_urls(server: &ServeProcess, id: &str) -> Vec<String> {
    let master_url = server.url(&format!("/media/{id}/master.m3u8"));
    let master = http_get(&master_url, &[]);
    assert_eq!(master.status, 200);
    let variant = String::from_utf8_lossy(&master.body)
        .lines()
        .rfind(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| resolve(&master_url, l))
        .expect("a variant");
    let playlist = String::from_utf8_lossy(&http_get(&variant, &[]).body).into_owned();
    let mut urls = Vec::new();
    for line in playlist.lines() {
        if let Some(map) = line.strip_prefix("#EXT-X-MAP:URI=\"") {
            urls.push(resolve(&variant, map.trim_end_matches('"')));
        } else if !line.starts_with('#') && !line.is_empty() {
            urls.push(resolve(&variant, line));
        }
    }
    assert!(urls.len() > 3, "init and segments: {playlist}");
    urls
}

/// GETs of media objects (`.m4s`, `.mp4`) in the bucket's access log.
fn media_gets(s3: &S3Server) -> Vec<String> {
    s3.requests()
        .into_iter()
        .filter(|r| r.starts_with("GET ") && (r.contains(".m4s") || r.contains(".mp4")))
        .collect()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

fn metric(server: &ServeProcess, line_start: &str) -> Option<f64> {
    let text = String::from_utf8_lossy(&http_get(&server.url("/metrics"), &[]).body).into_owned();
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn the_disk_cache_outlives_a_restart_and_refetches_a_damaged_file() {
    let s3 = S3Server::start();
    let url = s3.url("lib");
    let lib = TempLibrary::new();
    let id = ingest(&s3, &url, &lib, 6.0);
    let cache = lib.library().join("origin-cache");
    let cache_arg = cache.to_str().unwrap();

    let mut first = origin(&s3, &url, &lib, &["--cache-dir", cache_arg]);
    let urls = media_urls(&first, &id);
    let bodies: Vec<Vec<u8>> = urls
        .iter()
        .map(|u| {
            let r = http_get(u, &[]);
            assert_eq!(r.status, 200, "{u}");
            r.body
        })
        .collect();
    first.stop();
    let fetched = media_gets(&s3).len();
    assert_eq!(
        fetched,
        urls.len(),
        "one bucket GET per object on the first run"
    );

    // Damage one cached object: the biggest file is a media segment.
    let objects = files_under(&cache.join("objects"));
    let damaged = objects
        .iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let len = std::fs::metadata(damaged).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(damaged)
        .unwrap()
        .set_len(len / 2)
        .unwrap();

    // No memory cache: every answer comes from the disk cache or the bucket.
    let second = origin(
        &s3,
        &url,
        &lib,
        &["--cache-dir", cache_arg, "--cache-mib", "0"],
    );
    let again: Vec<Vec<u8>> = urls
        .iter()
        .map(|u| {
            let r = http_get(&u.replace(&first.url(""), &second.url("")), &[]);
            assert_eq!(r.status, 200, "{u}");
            r.body
        })
        .collect();
    assert!(again == bodies, "the same bytes after the restart");
    let refetched = media_gets(&s3).len() - fetched;
    assert_eq!(
        refetched,
        1,
        "only the damaged object is fetched again: {:?}",
        &media_gets(&s3)[fetched..]
    );
    let corrupt = metric(&second, "segue_disk_cache_events_total{event=\"corrupt\"}");
    assert_eq!(corrupt, Some(1.0), "the damage is counted");
}

#[test]
fn concurrent_misses_for_one_object_make_one_bucket_request() {
    let s3 = S3Server::start();
    let url = s3.url("lib");
    let lib = TempLibrary::new();
    let id = ingest(&s3, &url, &lib, 6.0);
    let server = origin(&s3, &url, &lib, &[]);
    let urls = media_urls(&server, &id);
    let target = urls.last().unwrap().clone();
    let before = media_gets(&s3).len();
    const CLIENTS: usize = 16;
    let start = Arc::new(Barrier::new(CLIENTS));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (start, target) = (Arc::clone(&start), target.clone());
            std::thread::spawn(move || {
                start.wait();
                http_get(&target, &[])
            })
        })
        .collect();
    let responses: Vec<_> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    assert!(responses.iter().all(|r| r.status == 200));
    assert!(responses.iter().all(|r| r.body == responses[0].body));
    let gets = media_gets(&s3)[before..].to_vec();
    assert_eq!(
        gets.len(),
        1,
        "{CLIENTS} concurrent misses, one GET: {gets:?}"
    );
}
