//! nginx as a test peer: a foreground nginx rendered from one of the templates in tests/peers
//! (`nginx-cache.conf`, `nginx-fleet.conf`) on a free 127.0.0.1 port, with its config, logs
//! and cache in a temp dir, stopped on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, peers_dir, require_program};

/// Longest wait for nginx to listen.
const START_LIMIT: Duration = Duration::from_secs(10);

/// A foreground nginx, stopped on drop.
pub struct Nginx {
    child: Child,
    /// Holds the config, logs and cache.
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
    require_program(
        "nginx",
        &nginx_program().to_string_lossy(),
        &["-v"],
        "apt-get install nginx",
    );
}

impl Nginx {
    /// Renders `template` (a file of tests/peers) with `@DIR@`, `@USER@`, `@LISTEN@` and each
    /// of `values` (placeholder, value) filled in, and starts nginx with an empty cache, on
    /// another port if the one picked was taken in the meantime.
    pub fn start(template: &str, values: &[(&str, &str)]) -> Nginx {
        let text = std::fs::read_to_string(peers_dir().join(template))
            .unwrap_or_else(|e| panic!("tests/peers/{template}: {e}"));
        let root = rustix::process::geteuid().is_root();
        let mut last_error = String::new();
        for _ in 0..3 {
            let dir = tempfile::tempdir().expect("temp dir");
            let port = free_port();
            let mut conf = text
                .replace("@DIR@", &dir.path().to_string_lossy())
                // As root the workers would otherwise run as nobody, who cannot enter the
                // temp dir (mode 0700) to write the cache.
                .replace("@USER@", if root { "user root;" } else { "" })
                .replace("@LISTEN@", &format!("127.0.0.1:{port}"));
            for (placeholder, value) in values {
                conf = conf.replace(placeholder, value);
            }
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
            let deadline = Instant::now() + START_LIMIT;
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
                        "nginx did not listen on {origin} within {START_LIMIT:?}:\n{}",
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

    /// nginx's access log so far.
    pub fn access_log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
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
