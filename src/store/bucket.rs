//! A library in an S3-compatible bucket, through object_store's S3 client (no hand-written
//! S3): the "bytes at keys" operations the library needs, with bounded time for each.
//!
//! Configuration comes from the standard AWS variables, read the way
//! `AmazonS3Builder::from_env` reads them (`AWS_ENDPOINT_URL`, `AWS_REGION`,
//! `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_ALLOW_HTTP`...),
//! plus: plain `http://` is allowed by itself when the endpoint is on loopback.
//!
//! Every request is bounded: connecting takes at most [`CONNECT_TIMEOUT`], a request
//! [`REQUEST_TIMEOUT`], and retries (connection errors, timeouts, 5xx: object_store's policy)
//! stop after [`MAX_RETRIES`] or [`RETRY_TIMEOUT`], so a slow or vanished bucket is an error
//! within seconds, never a hang. Objects are small (segments of tens of kilobytes), so one
//! request timeout fits them all.
//!
//! The library code is synchronous (ingest threads, the catalog) and asynchronous (the
//! server): the bucket owns a small runtime for the first ([`Bucket::block_on`]); the async
//! methods run on whichever runtime polls them.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures_util::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as ObjectPath;
use object_store::{
    Attribute, AttributeValue, Attributes, BackoffConfig, ClientOptions, ObjectStore,
    ObjectStoreExt, PutMode, PutOptions, PutPayload, RetryConfig,
};

pub use super::bucket_types::{BucketError, BucketObserver, Fetched, Head, Listed, Outcome};
use super::layout::{CONTENT_TAG_METADATA, content_tag};
use super::location::BucketUrl;

/// Longest wait to connect to the endpoint.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest time for one request, start to end of the body.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Retries after a failed attempt.
pub const MAX_RETRIES: usize = 2;
/// No retry starts later than this after the first attempt.
pub const RETRY_TIMEOUT: Duration = Duration::from_secs(8);

/// A library's bucket: the client, the prefix, and a runtime for synchronous callers.
#[derive(Debug, Clone)]
pub struct Bucket {
    store: Arc<AmazonS3>,
    url: BucketUrl,
    endpoint: String,
    runtime: Arc<tokio::runtime::Runtime>,
    observer: Option<Arc<dyn BucketObserver>>,
}

impl Bucket {
    /// A client for `url` configured from the environment (nothing is sent yet).
    pub fn from_env(url: &BucketUrl) -> Result<Self, BucketError> {
        Self::from_vars(url, std::env::vars())
    }

    /// A client for `url` configured from `vars` (the `AWS_*` ones are read).
    pub fn from_vars(
        url: &BucketUrl,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, BucketError> {
        let config_error = |source| BucketError::Config {
            url: url.to_string(),
            source,
        };
        // Client options first: `with_client_options` replaces them all, `AWS_ALLOW_HTTP`
        // among them, which the variables below may then set.
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&url.bucket)
            .with_client_options(
                ClientOptions::new()
                    .with_connect_timeout(CONNECT_TIMEOUT)
                    .with_timeout(REQUEST_TIMEOUT),
            )
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(100),
                    max_backoff: Duration::from_secs(1),
                    base: 2.0,
                },
                max_retries: MAX_RETRIES,
                retry_timeout: RETRY_TIMEOUT,
            });
        let mut endpoint = None;
        for (name, value) in vars {
            if !name.starts_with("AWS_") {
                continue;
            }
            // Unknown AWS_* variables (AWS_PROFILE...) are other tools' business.
            let Ok(key) = name.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() else {
                continue;
            };
            if key == AmazonS3ConfigKey::Endpoint {
                endpoint = Some(value.clone());
            }
            builder = builder.with_config(key, value);
        }
        if endpoint.as_deref().is_some_and(is_loopback_http) {
            builder = builder.with_allow_http(true);
        }
        let store = builder.build().map_err(config_error)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("segue-bucket")
            .enable_all()
            .build()
            .map_err(BucketError::Runtime)?;
        Ok(Bucket {
            store: Arc::new(store),
            url: url.clone(),
            endpoint: endpoint.unwrap_or_else(|| "AWS S3".to_string()),
            runtime: Arc::new(runtime),
            observer: None,
        })
    }

    /// Tells `observer` of every request from now on (this handle and its clones).
    pub fn observed_by(&mut self, observer: Arc<dyn BucketObserver>) {
        self.observer = Some(observer);
    }

    fn observe<T>(
        &self,
        op: &'static str,
        started: Instant,
        result: &Result<T, object_store::Error>,
        bytes: u64,
    ) {
        if let Some(observer) = &self.observer {
            let outcome = match result {
                Ok(_) => Outcome::Ok,
                Err(object_store::Error::NotFound { .. }) => Outcome::NotFound,
                Err(
                    object_store::Error::AlreadyExists { .. }
                    | object_store::Error::Precondition { .. },
                ) => Outcome::Exists,
                Err(_) => Outcome::Error,
            };
            observer.request(op, outcome, bytes, started.elapsed());
        }
    }

    /// The library location, `s3://BUCKET/PREFIX`.
    pub fn url(&self) -> &BucketUrl {
        &self.url
    }

    /// Where requests go (the endpoint variable, or AWS S3).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Runs `future` to completion on the bucket's runtime (for synchronous callers; not from
    /// inside an async task).
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// The runtime of synchronous callers, for tasks they start.
    pub fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.runtime
    }

    /// The full object key of `key` (relative to the library prefix).
    pub fn full_key(&self, key: &str) -> String {
        if self.url.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.url.prefix)
        }
    }

    fn path(&self, key: &str) -> ObjectPath {
        ObjectPath::from(self.full_key(key))
    }

    fn error(
        &self,
        op: &'static str,
        key: &str,
    ) -> impl FnOnce(object_store::Error) -> BucketError {
        let key = self.full_key(key);
        move |source| BucketError::Request { op, key, source }
    }

    /// Fails unless the bucket answers a listing of the library prefix: it is reachable, the
    /// credentials are accepted and the bucket exists. The error names endpoint and bucket.
    pub async fn check(&self) -> Result<(), BucketError> {
        let prefix =
            (!self.url.prefix.is_empty()).then(|| ObjectPath::from(self.url.prefix.as_str()));
        let started = Instant::now();
        let listed = self.store.list_with_delimiter(prefix.as_ref()).await;
        self.observe("list", started, &listed, 0);
        match listed {
            Ok(_) => Ok(()),
            Err(e) => Err(BucketError::Unusable {
                url: self.url.to_string(),
                endpoint: self.endpoint.clone(),
                reason: short_reason(&e),
            }),
        }
    }

    /// Writes `body` at `key` unless an object is there already: `Ok(true)` when this call
    /// created it, `Ok(false)` when it existed (S3 `If-None-Match: *`).
    pub async fn put_new(&self, key: &str, body: Bytes) -> Result<bool, BucketError> {
        let tag: (Attribute, AttributeValue) = (
            Attribute::Metadata(CONTENT_TAG_METADATA.into()),
            content_tag(&body).into(),
        );
        let options = PutOptions {
            mode: PutMode::Create,
            attributes: Attributes::from_iter([tag]),
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(&self.path(key), PutPayload::from(body), options)
            .await
        {
            Ok(_) => Ok(true),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => Ok(false),
            Err(e) => Err(self.error("put", key)(e)),
        }
    }

    /// The object at `key` read whole; `Ok(None)` if there is none.
    pub async fn get(&self, key: &str) -> Result<Option<Fetched>, BucketError> {
        let started = Instant::now();
        let got = match self.store.get(&self.path(key)).await {
            Ok(result) => {
                let e_tag = result.meta.e_tag.clone();
                let last_modified = SystemTime::from(result.meta.last_modified);
                result
                    .bytes()
                    .await
                    .map(|body| (body, e_tag, last_modified))
            }
            Err(e) => Err(e),
        };
        let len = got.as_ref().map_or(0, |(body, ..)| body.len() as u64);
        self.observe("get", started, &got, len);
        let (body, e_tag, last_modified) = match got {
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            got => got.map_err(self.error("get", key))?,
        };
        Ok(Some(Fetched {
            body,
            e_tag,
            last_modified,
        }))
    }

    /// The object at `key` as its response head and a stream of its body (`Ok(None)` if there
    /// is none). The caller reports the end of the body with [`Bucket::observe_body`].
    pub async fn get_stream(&self, key: &str) -> Result<Option<(Head, BodyStream)>, BucketError> {
        let started = Instant::now();
        let got = self.store.get(&self.path(key)).await;
        if got.is_err() {
            // A success is observed when its body has been read (`observe_body`).
            self.observe("get", started, &got, 0);
        }
        let result = match got {
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.error("get", key)(e)),
            Ok(result) => result,
        };
        let content_tag = result
            .attributes
            .get(&Attribute::Metadata(CONTENT_TAG_METADATA.into()))
            .map(|v| v.to_string());
        let head = Head {
            size: result.meta.size,
            last_modified: SystemTime::from(result.meta.last_modified),
            content_tag,
        };
        let full_key = self.full_key(key);
        let body = result
            .into_stream()
            .map_err(move |source| BucketError::Request {
                op: "read",
                key: full_key.clone(),
                source,
            });
        Ok(Some((head, Box::pin(body))))
    }

    /// Reports a body of [`Bucket::get_stream`] read to its end (`ok`) or failed, after
    /// `bytes`, started at `started`.
    pub fn observe_body(&self, started: Instant, ok: bool, bytes: u64) {
        if let Some(observer) = &self.observer {
            let outcome = if ok { Outcome::Ok } else { Outcome::Error };
            observer.request("get", outcome, bytes, started.elapsed());
        }
    }

    /// Whether an object exists at `key`.
    pub async fn exists(&self, key: &str) -> Result<bool, BucketError> {
        let started = Instant::now();
        let head = self.store.head(&self.path(key)).await;
        self.observe("head", started, &head, 0);
        match head {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.error("head", key)(e)),
        }
    }

    /// The names directly under directory `dir` (relative, no trailing `/`): the "common
    /// prefixes" of a delimited listing, e.g. the track ids under `tracks`.
    pub async fn list_dirs(&self, dir: &str) -> Result<Vec<String>, BucketError> {
        let started = Instant::now();
        let listed = self.store.list_with_delimiter(Some(&self.path(dir))).await;
        self.observe("list", started, &listed, 0);
        let listed = listed.map_err(self.error("list", dir))?;
        Ok(listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect())
    }

    /// Every object under directory `dir`, keys relative to the library prefix.
    pub async fn list_all(&self, dir: &str) -> Result<Vec<Listed>, BucketError> {
        let base = self.full_key("");
        let started = Instant::now();
        let objects: Result<Vec<_>, _> = self.store.list(Some(&self.path(dir))).try_collect().await;
        self.observe("list", started, &objects, 0);
        let objects = objects.map_err(self.error("list", dir))?;
        Ok(objects
            .into_iter()
            .map(|meta| Listed {
                key: meta
                    .location
                    .as_ref()
                    .strip_prefix(base.as_str())
                    .unwrap_or(meta.location.as_ref())
                    .to_string(),
                size: meta.size,
                last_modified: SystemTime::from(meta.last_modified),
            })
            .collect())
    }

    /// Deletes the object at `key` (no error if it is gone already).
    pub async fn delete(&self, key: &str) -> Result<(), BucketError> {
        let started = Instant::now();
        let deleted = self.store.delete(&self.path(key)).await;
        self.observe("delete", started, &deleted, 0);
        match deleted {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error("delete", key)(e)),
        }
    }
}

/// The body of an object being read.
pub type BodyStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<Bytes, BucketError>> + Send>>;

/// Whether `endpoint` is a plain-http URL of a loopback host.
fn is_loopback_http(endpoint: &str) -> bool {
    let Some(rest) = endpoint.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or("");
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The innermost cause of an object_store error, which says what happened (connection
/// refused, 403 with S3's code) without the chain of wrappers.
fn short_reason(error: &object_store::Error) -> String {
    let mut reason = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        reason = cause.to_string();
        source = cause.source();
    }
    // S3 puts its XML error body in the message, over several lines: keep the report on one.
    reason.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_endpoints_may_be_plain_http() {
        for yes in [
            "http://127.0.0.1:9000",
            "http://localhost:9000/",
            "http://[::1]:9000",
        ] {
            assert!(is_loopback_http(yes), "{yes}");
        }
        for no in [
            "https://127.0.0.1:9000",
            "http://10.0.0.1:9000",
            "http://s3.example.com",
        ] {
            assert!(!is_loopback_http(no), "{no}");
        }
    }

    #[test]
    fn keys_live_under_the_prefix() {
        let url = |prefix: &str| BucketUrl {
            bucket: "music".into(),
            prefix: prefix.into(),
        };
        let vars = [("AWS_REGION".to_string(), "us-east-1".to_string())];
        let bucket = Bucket::from_vars(&url("prod"), vars.clone()).unwrap();
        assert_eq!(
            bucket.full_key("tracks/a/track.json"),
            "prod/tracks/a/track.json"
        );
        let root = Bucket::from_vars(&url(""), vars).unwrap();
        assert_eq!(root.full_key("tracks"), "tracks");
    }
}
