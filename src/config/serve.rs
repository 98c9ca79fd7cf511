//! Validated settings of `segue serve`: the listener, caching, signing, connection limits and
//! the control channel.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::ConfigError;
use crate::store::LibraryLocation;

/// Largest accepted `--cache-mib`.
pub const MAX_CACHE_MIB: u64 = 1 << 20;
/// Largest accepted `--cache-dir-mib` (1 PiB).
pub const MAX_CACHE_DIR_MIB: u64 = 1 << 30;

/// Validated settings of `segue serve`.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The library: a directory or a bucket.
    pub library: LibraryLocation,
    /// A bucket library's disk cache and catalog directory (`None`: memory only, the catalog
    /// under the user's cache directory).
    pub cache_dir: Option<PathBuf>,
    /// Bound of the disk cache, in bytes.
    pub cache_dir_bytes: u64,
    /// Interval between listings of a bucket library for new tracks.
    pub rescan: Duration,
    /// Address to listen on (port 0: any free port).
    pub addr: SocketAddr,
    /// `Access-Control-Allow-Origin` value: `*` or one origin like `https://player.example`.
    pub cors_origin: String,
    /// Bound of the in-memory cache of hot files, in bytes (0: no cache).
    pub cache_bytes: u64,
    /// Longest time a handler may take before the request gets a 503.
    pub request_timeout: Duration,
    /// A connection with no byte moving either way for this long is closed.
    pub idle_timeout: Duration,
    /// The WebSocket control channel's settings.
    pub control: ControlConfig,
    /// Key of signed URLs; `None`: media and `/ws` are open.
    pub signing_key: Option<Vec<u8>>,
    /// Shortest life of a signed URL's token.
    pub token_ttl: Duration,
    /// Connection limits (cap, header timeout, head size).
    pub conn_limits: ConnLimits,
}

impl ServeConfig {
    /// Builds a validated config from the raw flags.
    pub fn new(
        library: LibraryLocation,
        addr: &str,
        cors_origin: &str,
        cache_mib: u64,
    ) -> Result<Self, ConfigError> {
        let range = |flag, value: &str, reason| ConfigError::Range {
            flag,
            value: value.to_string(),
            reason,
        };
        let addr = addr
            .trim()
            .parse()
            .map_err(|_| range("--addr", addr, "must be IP:PORT, e.g. 127.0.0.1:8080"))?;
        if cors_origin != "*" && !is_origin(cors_origin) {
            return Err(range(
                "--cors-origin",
                cors_origin,
                "must be * or an origin like https://player.example:8443",
            ));
        }
        if cache_mib > MAX_CACHE_MIB {
            return Err(range(
                "--cache-mib",
                &cache_mib.to_string(),
                "must be at most 1048576",
            ));
        }
        Ok(ServeConfig {
            library,
            cache_dir: None,
            cache_dir_bytes: crate::cli::DEFAULT_CACHE_DIR_MIB << 20,
            rescan: Duration::from_secs(crate::cli::DEFAULT_RESCAN_SECS),
            addr,
            cors_origin: cors_origin.to_string(),
            cache_bytes: cache_mib << 20,
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            control: ControlConfig::default(),
            signing_key: None,
            token_ttl: Duration::from_secs(6 * 3600),
            conn_limits: ConnLimits::default(),
        })
    }

    /// Keeps a bucket library's objects in `dir` too, bounded to `mib` MiB (1 or more).
    pub fn with_disk_cache(mut self, dir: Option<PathBuf>, mib: u64) -> Result<Self, ConfigError> {
        if !(1..=MAX_CACHE_DIR_MIB).contains(&mib) {
            return Err(ConfigError::Range {
                flag: "--cache-dir-mib",
                value: mib.to_string(),
                reason: "must be from 1 to 1073741824",
            });
        }
        self.cache_dir = dir;
        self.cache_dir_bytes = mib << 20;
        Ok(self)
    }

    /// Lists a bucket library for new tracks every `secs` seconds (1 to 3600).
    pub fn with_rescan_secs(mut self, secs: u64) -> Result<Self, ConfigError> {
        if !(1..=3600).contains(&secs) {
            return Err(ConfigError::Range {
                flag: "--rescan-secs",
                value: secs.to_string(),
                reason: "must be from 1 to 3600",
            });
        }
        self.rescan = Duration::from_secs(secs);
        Ok(self)
    }

    /// Requires signed URLs with `key` (at least 16 bytes) whose tokens live `ttl_secs` (60
    /// to 30 days) or more.
    pub fn with_signing(mut self, key: &str, ttl_secs: u64) -> Result<Self, ConfigError> {
        if key.len() < 16 {
            return Err(ConfigError::Range {
                flag: "--signing-key",
                value: "(hidden)".into(),
                reason: "must be at least 16 bytes",
            });
        }
        if !(60..=30 * 86_400).contains(&ttl_secs) {
            return Err(ConfigError::Range {
                flag: "--token-ttl-secs",
                value: ttl_secs.to_string(),
                reason: "must be from 60 to 2592000",
            });
        }
        self.signing_key = Some(key.as_bytes().to_vec());
        self.token_ttl = Duration::from_secs(ttl_secs);
        Ok(self)
    }

    /// Sets the control channel's flags: extra allowed origins (`*`: any), heartbeat seconds
    /// and commands per second.
    pub fn with_control(
        mut self,
        origins: &[String],
        heartbeat_secs: u64,
        commands_per_second: u32,
    ) -> Result<Self, ConfigError> {
        let range = ConfigError::range;
        if let Some(bad) = origins.iter().find(|o| *o != "*" && !is_origin(o)) {
            return Err(range(
                "--ws-origin",
                bad.clone(),
                "must be * or an origin like https://player.example:8443",
            ));
        }
        if !(1..=300).contains(&heartbeat_secs) {
            return Err(range(
                "--ws-heartbeat-secs",
                heartbeat_secs.to_string(),
                "must be from 1 to 300",
            ));
        }
        if !(1..=1000).contains(&commands_per_second) {
            return Err(range(
                "--ws-rate",
                commands_per_second.to_string(),
                "must be from 1 to 1000",
            ));
        }
        self.control = ControlConfig {
            allowed_origins: origins.to_vec(),
            heartbeat: Duration::from_secs(heartbeat_secs),
            commands_per_second,
            ..ControlConfig::default()
        };
        Ok(self)
    }

    /// Sets the bus (`--bus`, a `redis://` URL), its key (`SEGUE_BUS_KEY`, 16 bytes or more)
    /// and the session TTL (`--session-ttl-secs`). The key prefix is derived from the library
    /// location, so fleets of two libraries can share one Redis.
    pub fn with_bus(
        mut self,
        url: Option<&str>,
        key: Option<&str>,
        session_ttl_secs: u64,
    ) -> Result<Self, ConfigError> {
        let range = ConfigError::range;
        if let Some(url) = url
            && !(url.starts_with("redis://") || url.starts_with("redis+unix://"))
        {
            return Err(range(
                "--bus",
                url.to_string(),
                "must be a redis:// URL (redis://HOST:PORT[/DB])",
            ));
        }
        if let Some(key) = key
            && key.len() < 16
        {
            return Err(range(
                "SEGUE_BUS_KEY",
                "(hidden)".into(),
                "must be 16 bytes or more",
            ));
        }
        if !(60..=30 * 24 * 3600).contains(&session_ttl_secs) {
            return Err(range(
                "--session-ttl-secs",
                session_ttl_secs.to_string(),
                "must be from 60 to 2592000 (30 days)",
            ));
        }
        let library = self.library.to_string();
        let hash = blake3::hash(library.as_bytes()).to_hex();
        self.control.bus = url.map(str::to_string);
        self.control.bus_key = key.map(|k| k.as_bytes().to_vec());
        self.control.bus_prefix = format!("segue:{}", &hash[..12]);
        self.control.session_ttl = Duration::from_secs(session_ttl_secs);
        Ok(self)
    }
}

/// The limits of `server::conn::serve_connections`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnLimits {
    /// Connections served at once; more are refused with 503.
    pub max_connections: usize,
    /// Longest time to receive a request head.
    pub header_timeout: Duration,
    /// Largest request head, in bytes (at least 8192, hyper's minimum).
    pub max_head_bytes: usize,
    /// A connection with no byte moving either way for this long is closed.
    pub idle_timeout: Duration,
    /// Longest wait for requests in flight at shutdown.
    pub drain_timeout: Duration,
    /// Threads serving connections, each with its own runtime (`server::workers`); 0 for one
    /// per core this process may use.
    pub threads: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            max_connections: 4096,
            header_timeout: Duration::from_secs(10),
            max_head_bytes: 16 * 1024,
            idle_timeout: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(30),
            threads: 0,
        }
    }
}

/// Settings of the control channel.
#[derive(Debug, Clone, PartialEq)]
pub struct ControlConfig {
    /// Origins allowed besides the server's own; `*` allows any.
    pub allowed_origins: Vec<String>,
    /// Time between pings; a peer silent for three of them is dropped.
    pub heartbeat: Duration,
    /// Sustained commands per second per connection (twice that as a burst).
    pub commands_per_second: u32,
    /// Bytes a connection may have waiting to be sent before it counts as not reading.
    pub send_queue_bytes: usize,
    /// Whether `/ws/echo` (a WebSocket echo for the Autobahn conformance cases) is served.
    pub conformance_echo: bool,
    /// Redis URL of the bus that shares sessions between origins (`None`: in-process).
    pub bus: Option<String>,
    /// The fleet's shared key that seals bus messages (`SEGUE_BUS_KEY`).
    pub bus_key: Option<Vec<u8>>,
    /// Prefix of every Redis key and channel (one per library, so two fleets can share a Redis).
    pub bus_prefix: String,
    /// How long a session with no device is kept.
    pub session_ttl: Duration,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            allowed_origins: Vec::new(),
            heartbeat: Duration::from_secs(15),
            commands_per_second: 20,
            send_queue_bytes: 1 << 20,
            conformance_echo: false,
            bus: None,
            bus_key: None,
            bus_prefix: "segue".into(),
            session_ttl: Duration::from_secs(6 * 3600),
        }
    }
}

/// Whether `text` is a serialized origin (`scheme://host[:port]`, no path), as browsers send it.
fn is_origin(text: &str) -> bool {
    let Some((scheme, authority)) = text.split_once("://") else {
        return false;
    };
    matches!(scheme, "http" | "https")
        && !authority.is_empty()
        && authority
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_flags_are_validated() {
        let ok = ServeConfig::new(
            PathBuf::from("lib").into(),
            "127.0.0.1:0",
            "https://a.example:8443",
            0,
        );
        assert_eq!(ok.unwrap().addr.port(), 0);
        assert_eq!(
            ServeConfig::new(PathBuf::from("lib").into(), "[::1]:80", "*", 256)
                .unwrap()
                .cache_bytes,
            256 << 20
        );
        for (addr, origin, mib) in [
            ("localhost", "*", 1),
            ("127.0.0.1:8080", "https://a.example/path", 1),
            ("127.0.0.1:8080", "a.example", 1),
            ("127.0.0.1:8080", "https://a.example\r\nX: y", 1),
            ("127.0.0.1:8080", "*", MAX_CACHE_MIB + 1),
        ] {
            assert!(
                ServeConfig::new(PathBuf::from("lib").into(), addr, origin, mib).is_err(),
                "{addr} {origin}"
            );
        }
    }

    #[test]
    fn the_bus_flags_are_validated_and_the_prefix_follows_the_library() {
        let base = |lib: &str| ServeConfig::new(PathBuf::from(lib).into(), "127.0.0.1:0", "*", 0);
        let ok = base("lib")
            .unwrap()
            .with_bus(
                Some("redis://127.0.0.1:6379"),
                Some("0123456789abcdef"),
                3600,
            )
            .unwrap();
        assert_eq!(ok.control.bus.as_deref(), Some("redis://127.0.0.1:6379"));
        assert_eq!(ok.control.session_ttl, Duration::from_secs(3600));
        let other = base("other").unwrap().with_bus(None, None, 3600).unwrap();
        assert_ne!(ok.control.bus_prefix, other.control.bus_prefix);
        assert!(other.control.bus.is_none());
        for (url, key, ttl) in [
            (Some("http://127.0.0.1:6379"), None, 3600),
            (Some("rediss://redis.example"), None, 3600),
            (Some("redis://127.0.0.1:6379"), Some("short"), 3600),
            (None, None, 10),
            (None, None, 31 * 24 * 3600),
        ] {
            let refused = base("lib").unwrap().with_bus(url, key, ttl);
            assert!(refused.is_err(), "{url:?} {key:?} {ttl}");
        }
    }
}
