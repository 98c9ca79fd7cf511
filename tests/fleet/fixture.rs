//! The fleet under test: one moto bucket holding the library, two `segue serve` origins on it
//! (each a machine of its own, [`BucketLibrary::serve`]), and nginx in front of both with
//! `tests/peers/nginx-fleet.conf`, the config docs/deploy.md describes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::bucket::BucketLibrary;
use crate::common::{ServeCommand, ServeProcess};
use crate::peers::{free_port, peers_dir, require_program};

/// Longest wait for nginx to listen.
const NGINX_START_LIMIT: Duration = Duration::from_secs(10);

/// A foreground nginx on a free 127.0.0.1 port with the fleet config, stopped on drop.
pub struct Nginx {
    child: Child,
    /// Holds the config, logs and caches.
    dir: tempfile::TempDir,
    /// `http://127.0.0.1:PORT`.
    pub origin: String,
}

/// Debian puts nginx in /usr/sbin, which is not on every user's PATH.
fn nginx_program() -> PathBuf {
    let sbin = Path::new("/usr/sbin/nginx");
    if sbin.exists() {
        sbin.to_path_buf()
    } else {
        PathBuf::from("nginx")
    }
}

/// Fails the test unless nginx is installed.
pub fn require_nginx() {
    let program = nginx_program();
    require_program(
        "nginx",
        &program.to_string_lossy(),
        &["-v"],
        "apt-get install nginx",
    );
}

impl Nginx {
    /// Renders the fleet config for `origins` (`127.0.0.1:PORT` each) with an empty cache and
    /// starts nginx, on another port if the one picked was taken in the meantime.
    pub fn start(origins: [&str; 2]) -> Nginx {
        let template = std::fs::read_to_string(peers_dir().join("nginx-fleet.conf"))
            .expect("tests/peers/nginx-fleet.conf");
        let root = rustix::process::geteuid().is_root();
        let mut last_error = String::new();
        for _ in 0..3 {
            let dir = tempfile::tempdir().expect("temp dir");
            let port = free_port();
            let conf = template
                .replace("@DIR@", &dir.path().to_string_lossy())
                // As root the workers would otherwise run as nobody, who cannot enter the
                // temp dir (mode 0700) to write the cache.
                .replace("@USER@", if root { "user root;" } else { "" })
                .replace("@LISTEN@", &format!("127.0.0.1:{port}"))
                .replace("@ORIGIN_A@", origins[0])
                .replace("@ORIGIN_B@", origins[1]);
            let conf_path = dir.path().join("nginx.conf");
            std::fs::write(&conf_path, conf).expect("write nginx.conf");
            let error_log = dir.path().join("error.log");
            let mut child = Command::new(nginx_program())
                .arg("-p")
                .arg(dir.path())
                .arg("-e")
                .arg(&error_log)
                .arg("-c")
                .arg(&conf_path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn nginx");
            let origin = format!("http://127.0.0.1:{port}");
            let deadline = Instant::now() + NGINX_START_LIMIT;
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    last_error = format!(
                        "nginx exited ({status}):\n{}",
                        std::fs::read_to_string(&error_log).unwrap_or_default()
                    );
                    break;
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Nginx { child, dir, origin };
                }
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "nginx did not listen on {origin} within {NGINX_START_LIMIT:?}:\n{}",
                        std::fs::read_to_string(&error_log).unwrap_or_default()
                    );
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if !last_error.contains("Address already in use") {
                break;
            }
        }
        panic!("{last_error}");
    }

    /// `origin` joined with a server-relative path.
    pub fn url(&self, path: &str) -> String {
        format!("{}/{}", self.origin, path.trim_start_matches('/'))
    }

    /// nginx's error log so far, for failure messages.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    /// nginx's access log so far (the `fleet` format), one entry per request.
    pub fn access_log(&self) -> Vec<Access> {
        std::fs::read_to_string(self.dir.path().join("access.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(Access::parse)
            .collect()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: fast shutdown; the master stops its workers before exiting.
        let pid = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One line of nginx's `fleet` access log.
#[derive(Debug, Clone)]
pub struct Access {
    /// When nginx logged it (`$msec`), in ms since the Unix epoch.
    pub at_ms: u64,
    /// The status sent to the client.
    pub status: u16,
    /// The request URI as the client sent it.
    pub uri: String,
    /// `$upstream_cache_status` (`-` when the cache was not used).
    pub cache: String,
    /// Every origin tried, in order (`$upstream_addr` split on `, `), empty on a HIT.
    pub upstreams: Vec<String>,
    /// Their answers (`$upstream_status`), in the same order.
    pub upstream_statuses: Vec<String>,
}

impl Access {
    /// Parses `MSEC STATUS "URI" cache=C upstream="A, B" upstream_status="S, T"`.
    fn parse(line: &str) -> Option<Access> {
        let (msec, rest) = line.split_once(' ')?;
        let (status, rest) = rest.split_once(" \"")?;
        let (uri, rest) = rest.split_once("\" cache=")?;
        let (cache, rest) = rest.split_once(" upstream=\"")?;
        let (upstream, rest) = rest.split_once("\" upstream_status=\"")?;
        let upstream_status = rest.strip_suffix('"')?;
        // `$upstream_addr` and `$upstream_status` list each try, separated by `, `.
        let list = |s: &str| -> Vec<String> {
            s.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty() && *p != "-")
                .map(str::to_string)
                .collect()
        };
        let seconds: f64 = msec.parse().ok()?;
        Some(Access {
            at_ms: (seconds * 1000.0) as u64,
            status: status.parse().ok()?,
            uri: uri.to_string(),
            cache: cache.to_string(),
            upstreams: list(upstream),
            upstream_statuses: list(upstream_status),
        })
    }

    /// Whether it asked for a media segment (`.m4s`).
    pub fn is_segment(&self) -> bool {
        self.uri
            .split('?')
            .next()
            .is_some_and(|p| p.ends_with(".m4s"))
    }
}

/// A bucket with a track in it, two origins serving it and nginx in front.
pub struct Fleet {
    /// nginx; dropped (stopped) first.
    pub nginx: Nginx,
    /// The two origins, `a` and `b`.
    pub origins: [ServeProcess; 2],
    /// The bucket library; dropped last.
    pub bucket: BucketLibrary,
    /// The track's id.
    pub track: String,
}

impl Fleet {
    /// A bucket holding one generated track of `seconds`, two origins started with `args`.
    pub fn start(seconds: f64, args: &[&str]) -> Fleet {
        Fleet::start_with(seconds, args, &[])
    }

    /// [`Fleet::start`] with environment variables `envs` for the origins (`SEGUE_BUS_KEY`).
    pub fn start_with(seconds: f64, args: &[&str], envs: &[(&str, &str)]) -> Fleet {
        require_nginx();
        let bucket = BucketLibrary::new();
        let track = bucket.ingest("ingester", &bucket.wav("fleet.wav", seconds));
        // Each origin a machine of its own, as BucketLibrary::serve starts them, plus `envs`.
        let serve = |machine: &str| {
            let state = bucket.temp.dir.path().join("machines").join(machine);
            ServeCommand::of(&bucket.url())
                .args(args)
                .envs(bucket.s3.machine_env(&state))
                .envs(envs.iter().copied())
                .start()
        };
        let origins = [serve("origin-a"), serve("origin-b")];
        let nginx = Nginx::start([&origin_addr(&origins[0]), &origin_addr(&origins[1])]);
        Fleet {
            nginx,
            origins,
            bucket,
            track,
        }
    }

    /// Failure context: nginx's error log, both origins' and the bucket's log tails.
    pub fn context(&self) -> String {
        format!(
            "\nnginx error.log:\n{}\norigin a (tail):\n{}\norigin b (tail):\n{}\nS3 (tail):\n{}",
            self.nginx.error_log(),
            self.origins[0].log_tail(20),
            self.origins[1].log_tail(20),
            self.bucket.s3.log_tail(10)
        )
    }
}

/// `127.0.0.1:PORT` of an origin, as nginx's upstream block and access log name it.
pub fn origin_addr(origin: &ServeProcess) -> String {
    origin.addr.to_string()
}
