//! The fleet under test: one moto bucket holding the library, two `segue serve` origins on it
//! (each a machine of its own, [`BucketLibrary::serve`]), and nginx in front of both with
//! `tests/peers/nginx-fleet.conf`, the config docs/deploy.md describes.

use crate::bucket::BucketLibrary;
use crate::common::{ServeCommand, ServeProcess};

/// The fleet's nginx (tests/peers/nginx-fleet.conf).
pub use crate::peers::nginx::{Nginx, require_nginx};

/// Starts nginx with the fleet config in front of `origins` (`127.0.0.1:PORT` each).
pub fn start_nginx(origins: [&str; 2]) -> Nginx {
    Nginx::start(
        "nginx-fleet.conf",
        &[("@ORIGIN_A@", origins[0]), ("@ORIGIN_B@", origins[1])],
    )
}

/// nginx's access log so far (the `fleet` format), one entry per request.
pub fn access_log(nginx: &Nginx) -> Vec<Access> {
    nginx
        .access_log_text()
        .lines()
        .filter_map(Access::parse)
        .collect()
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
        let nginx = start_nginx([&origin_addr(&origins[0]), &origin_addr(&origins[1])]);
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
