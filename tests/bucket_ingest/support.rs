//! What the bucket ingest tests share: `segue` as a child process pointed at a test bucket
//! (bounded waits, killed on drop), and a view of the bucket through segue's own client.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use segue::store::{Bucket, BucketUrl};

use crate::common::s3::{BUCKET, S3Server};

/// Longest any `segue` run of these tests may take (ingests of short files on a loaded
/// 2-core machine take seconds).
pub const RUN_LIMIT: Duration = Duration::from_secs(120);

/// The environment of a `segue` child: `vars` (the AWS ones), and the catalog's state dir
/// under `cache` (not the user's cache).
pub fn segue_command(vars: &[(String, String)], cache: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_segue"));
    command
        .args(args)
        .env_remove("SEGUE_LIBRARY")
        .env("XDG_CACHE_HOME", cache)
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// The AWS variables of `s3`, owned.
pub fn vars(s3: &S3Server) -> Vec<(String, String)> {
    s3.env()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

/// A finished run: exit code (-1 if killed by a signal), stdout, stderr.
#[derive(Debug)]
pub struct Finished {
    /// The exit code.
    pub code: i32,
    /// Everything on stdout.
    pub stdout: String,
    /// Everything on stderr.
    pub stderr: String,
    /// How long the run took after [`Running::spawn`].
    pub elapsed: Duration,
}

impl Finished {
    /// stdout's lines parsed as JSON.
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}\n{self:?}")))
            .collect()
    }
}

/// A running `segue`, killed (SIGKILL) on drop.
pub struct Running {
    child: Option<Child>,
    started: Instant,
    readers: Vec<JoinHandle<String>>,
}

impl Running {
    /// Starts `command`; its output is collected by two threads.
    pub fn spawn(mut command: Command) -> Running {
        let mut child = command.spawn().expect("run segue");
        let mut readers = Vec::new();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        readers.push(thread::spawn(move || read_all(stdout)));
        readers.push(thread::spawn(move || read_all(stderr)));
        Running {
            child: Some(child),
            started: Instant::now(),
            readers,
        }
    }

    /// Whether it has exited.
    pub fn has_exited(&mut self) -> bool {
        let child = self.child.as_mut().expect("running");
        matches!(child.try_wait(), Ok(Some(_)))
    }

    /// Sends SIGKILL (the process cannot react: what a crash or the OOM killer does).
    pub fn kill9(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
        }
    }

    /// Waits for the exit, at most `limit` (then kills it and panics).
    pub fn wait(mut self, limit: Duration) -> Finished {
        let mut child = self.child.take().expect("running");
        let status = loop {
            match child.try_wait().expect("wait for segue") {
                Some(status) => break status,
                None if self.started.elapsed() > limit => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("segue still running after {limit:?}");
                }
                None => thread::sleep(Duration::from_millis(20)),
            }
        };
        let elapsed = self.started.elapsed();
        let mut texts = self.readers.drain(..).map(|r| r.join().unwrap_or_default());
        Finished {
            code: status.code().unwrap_or(-1),
            stdout: texts.next().unwrap_or_default(),
            stderr: texts.next().unwrap_or_default(),
            elapsed,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn read_all(mut from: impl Read) -> String {
    let mut bytes = Vec::new();
    let _ = from.read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A test bucket and a private state dir: runs `segue` against library prefix `prefix`.
pub struct Lab {
    /// The S3 server.
    pub s3: S3Server,
    /// Inputs and the catalog's state dir.
    pub tmp: tempfile::TempDir,
}

impl Lab {
    /// A fresh server and temp dir.
    pub fn start() -> Lab {
        Lab {
            s3: S3Server::start(),
            tmp: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// Where inputs go.
    pub fn inputs(&self) -> std::path::PathBuf {
        let dir = self.tmp.path().join("inputs");
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// `segue ARGS` against this server, not started.
    pub fn command(&self, args: &[&str]) -> Command {
        segue_command(&vars(&self.s3), &self.tmp.path().join("cache"), args)
    }

    /// Runs `segue ARGS` to its end (at most [`RUN_LIMIT`]).
    pub fn run(&self, args: &[&str]) -> Finished {
        Running::spawn(self.command(args)).wait(RUN_LIMIT)
    }

    /// Starts `segue ingest --json --library s3://…/prefix INPUTS`.
    pub fn start_ingest(&self, prefix: &str, inputs: &[&Path]) -> Running {
        let url = self.s3.url(prefix);
        let mut args = vec!["ingest", "--json", "--library", &url];
        let inputs: Vec<String> = inputs.iter().map(|p| p.display().to_string()).collect();
        args.extend(inputs.iter().map(String::as_str));
        Running::spawn(self.command(&args))
    }

    /// Ingests `input` into `prefix`, which must work; returns its JSON line.
    pub fn ingest_ok(&self, prefix: &str, input: &Path) -> serde_json::Value {
        let done = self.start_ingest(prefix, &[input]).wait(RUN_LIMIT);
        assert_eq!(done.code, 0, "{done:?}");
        done.json_lines().remove(0)
    }

    /// The ids `segue list --json` shows for `prefix`.
    pub fn list_ids(&self, prefix: &str) -> Vec<String> {
        let done = self.run(&["list", "--json", "--library", &self.s3.url(prefix)]);
        assert_eq!(done.code, 0, "{done:?}");
        let tracks: Vec<serde_json::Value> = serde_json::from_str(&done.stdout).unwrap();
        tracks
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_string())
            .collect()
    }

    /// `segue gc --json --library s3://…/prefix EXTRA`, which must exit 0; its report.
    pub fn gc(&self, prefix: &str, extra: &[&str]) -> serde_json::Value {
        let url = self.s3.url(prefix);
        let mut args = vec!["gc", "--json", "--library", &url];
        args.extend(extra);
        let done = self.run(&args);
        assert_eq!(done.code, 0, "{done:?}");
        serde_json::from_str(done.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {done:?}"))
    }

    /// segue's client for library prefix `prefix` of the test bucket.
    pub fn bucket(&self, prefix: &str) -> Bucket {
        let url = BucketUrl {
            bucket: BUCKET.to_string(),
            prefix: prefix.to_string(),
        };
        Bucket::from_vars(&url, vars(&self.s3)).expect("a client for the test bucket")
    }

    /// Every object under `tracks/` of `prefix`: key -> bytes.
    pub fn objects(&self, prefix: &str) -> BTreeMap<String, Vec<u8>> {
        let bucket = self.bucket(prefix);
        bucket.block_on(async {
            let mut objects = BTreeMap::new();
            for listed in bucket.list_all("tracks").await.expect("list the bucket") {
                let fetched = bucket.get(&listed.key).await.expect("get").expect("listed");
                objects.insert(listed.key, fetched.body.to_vec());
            }
            objects
        })
    }

    /// The keys under `tracks/` of `prefix`.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let bucket = self.bucket(prefix);
        let listed = bucket.block_on(bucket.list_all("tracks")).expect("list");
        listed.into_iter().map(|l| l.key).collect()
    }
}

/// Every file under `dir/tracks`, as keys relative to `dir`: key -> bytes.
pub fn local_objects(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let key = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.insert(key, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, &dir.join("tracks"), &mut out);
    out
}

/// The PUT requests among `requests` (`METHOD /bucket/key STATUS` lines).
pub fn puts(requests: &[String]) -> Vec<&String> {
    requests.iter().filter(|r| r.starts_with("PUT ")).collect()
}
