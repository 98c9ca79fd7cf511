//! The origin server (`segue serve`): the library over HTTP, for CDNs and players.
//!
//! [`app`] builds the router from an [`AppState`] (so tests can drive it without a socket) and
//! [`serve`] runs it on a listener until a shutdown future completes, then drains the requests in
//! flight. Requests flow through, outermost first: the access log (tower-http TraceLayer), the
//! metrics ([`metrics`]) and CORS ([`http::cors`]) in one layer ([`edge`]), the request timeout,
//! then one of:
//!
//! - `/media/{track_id}/{*path}` ([`media`]): files of the track directory, validated by
//!   [`paths`] and read through [`files`] (hot-file cache, symlink checks);
//! - `/api/tracks`, `/api/tracks/{id}` ([`api`]): the catalog as JSON, in the shapes of [`view`];
//! - `/api/prefetch` ([`prefetch`]): what to fetch to start tracks at once;
//! - `/api/control` ([`api`]): where the control channel is; `/ws` ([`control`]): the control
//!   channel itself (and `/ws/echo`, a WebSocket echo for conformance tests, when configured);
//! - `/` and `/assets/{name}` ([`player`]): the browser player;
//! - `/metrics` ([`metrics`]), `/healthz`.
//!
//! With signed URLs ([`signing`]), the token guard runs before routing, inside the access log:
//! it checks and strips `/t/TOKEN/`, and answers a missing or invalid token itself (403).
//!
//! Media responses name the next object for CDNs ([`media::Assist`]), and the CMCD players send
//! is counted and its next-object hint warmed ([`cmcd`]).
//!
//! A GET of a segment already in memory skips the router: [`hot`] answers it with the same
//! parts (same headers, metrics and access-log line; the same token check), for speed.
//!
//! Everything a handler sends as a body goes through [`http::respond`], which applies RFC 9110:
//! validators and conditional requests, ranges, content codings. Handler errors are one
//! [`ApiError`]. [`conn`] counts connections and closes idle ones, and sends cached segments
//! from their files without a copy ([`zerocopy`]); [`workers`] serves them on one thread per
//! core.

pub mod api;
pub mod bucket_files;
pub mod cmcd;
pub mod conn;
pub mod control;
pub mod disk_cache;
pub mod edge;
pub mod error;
pub mod files;
pub mod hot;
pub mod http;
pub mod media;
pub mod metrics;
pub mod paths;
pub mod player;
pub mod prefetch;
pub mod signing;
pub mod single_flight;
pub mod storage;
pub mod view;
pub mod workers;
pub mod zerocopy;

use std::future::Future;
use std::io;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};
use tower_layer::Stack;
use tracing::Level;

use crate::catalog::{Catalog, CatalogError};
use crate::config::ServeConfig;
use crate::store::{Library, StoreError};
use bucket_files::BucketFiles;
use conn::ConnLimits;
use control::ControlHub;
use error::ApiError;
use files::{FileStore, Source};
use http::cors::Cors;
use metrics::Metrics;
use signing::Signer;
use storage::StorageHealth;
use zerocopy::FdBudget;

/// How often the catalog is checked for tracks added by a concurrent ingest.
const LIBRARY_POLL: Duration = Duration::from_secs(1);

/// Errors that stop the server from starting or running; none is recoverable by retrying.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The library cannot be created or read.
    #[error("library {location}: {source}")]
    Library {
        /// The library's directory or bucket URL.
        location: String,
        /// Why.
        #[source]
        source: StoreError,
    },
    /// The disk cache (`--cache-dir`) cannot be opened (another origin holds it, no room...).
    #[error("--cache-dir: {0}")]
    DiskCache(String),
    /// The catalog index cannot be opened.
    #[error("catalog: {0}")]
    Catalog(#[from] CatalogError),
    /// A socket or filesystem operation failed.
    #[error("{op}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The CORS origin is not a valid header value.
    #[error("invalid CORS origin {0:?}")]
    CorsOrigin(String),
}

/// What every handler shares; cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    catalog: Mutex<CatalogHandle>,
    files: Arc<FileStore>,
    metrics: Arc<Metrics>,
    cors: Cors,
    request_timeout: Duration,
    idle_timeout: Duration,
    control: Arc<ControlHub>,
    signer: Signer,
    conn_limits: ConnLimits,
    /// The library (for the rescans of a bucket).
    library: Library,
    /// How often a bucket library is listed for new tracks.
    rescan: Duration,
    /// Whether a bucket library's storage answers (`None`: a local directory).
    storage: Option<Arc<StorageHealth>>,
    /// The CMCD of media requests ([`cmcd`]).
    cmcd: Arc<cmcd::CmcdObserver>,
    /// Segment counts, for the CDN prefetch headers ([`media::Assist`]).
    segment_counts: Arc<media::SegmentCounts>,
}

/// The catalog connection (its type has no Debug).
struct CatalogHandle(Catalog);

impl std::fmt::Debug for CatalogHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Catalog")
    }
}

/// Result of a closure run on the catalog.
type CatalogResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

impl AppState {
    /// Opens the library of `config` (creating it if needed) and its catalog (which reconciles
    /// the index with the track directories: blocking work, done once at startup).
    pub fn new(config: &ServeConfig) -> Result<Self, ServerError> {
        let library_error = |source| ServerError::Library {
            location: config.library.to_string(),
            source,
        };
        let mut library =
            Library::new(&config.library, config.cache_dir.as_deref()).map_err(library_error)?;
        let metrics = Arc::new(Metrics::new());
        let storage = library.bucket().is_some().then(|| {
            let health = Arc::new(StorageHealth::new(Arc::clone(&metrics)));
            library.observed_by(Arc::clone(&health) as _);
            health
        });
        library.open_for_reading().map_err(library_error)?;
        let catalog = Catalog::open_readable(&library)?;
        let source = match &library {
            Library::Local(layout) => {
                if let Some(dir) = &config.cache_dir {
                    tracing::warn!(dir = %dir.display(),
                        "--cache-dir is for a bucket library; a directory library is read as is");
                }
                Source::Dir(layout.tracks_dir())
            }
            Library::Bucket { bucket, .. } => Source::Bucket(
                BucketFiles::new(
                    bucket.clone(),
                    config.cache_dir.as_deref(),
                    config.cache_dir_bytes,
                    Arc::clone(&metrics),
                )
                .map_err(|e| ServerError::DiskCache(e.to_string()))?,
            ),
        };
        let files = FileStore::new(source, config.cache_bytes, Arc::clone(&metrics))
            .map_err(|source| ServerError::Io {
                op: "open the tracks directory",
                source,
            })?
            // Beyond the connections: the catalog, files being read, ingest children, log files.
            .sending_files(Arc::new(FdBudget::for_server(
                config.conn_limits.max_connections + 1024,
            )));
        let origin = HeaderValue::from_str(&config.cors_origin)
            .map_err(|_| ServerError::CorsOrigin(config.cors_origin.clone()))?;
        let control = Arc::new(ControlHub::new(
            config.control.clone(),
            Arc::clone(&metrics),
        ));
        let files = Arc::new(files);
        let cmcd = Arc::new(cmcd::CmcdObserver::new(
            Arc::clone(&metrics),
            Arc::clone(&files),
        ));
        let shared = Shared {
            catalog: Mutex::new(CatalogHandle(catalog)),
            files,
            cmcd,
            segment_counts: Arc::default(),
            metrics,
            cors: Cors::new(origin),
            request_timeout: config.request_timeout,
            idle_timeout: config.idle_timeout,
            control,
            signer: Signer::new(config.signing_key.clone(), config.token_ttl),
            conn_limits: config.conn_limits.clone(),
            library,
            rescan: config.rescan,
            storage,
        };
        Ok(AppState {
            inner: Arc::new(shared),
        })
    }

    /// The media file store.
    pub fn files(&self) -> &Arc<FileStore> {
        &self.inner.files
    }

    /// Reads the CMCD of media requests.
    pub fn cmcd(&self) -> &Arc<cmcd::CmcdObserver> {
        &self.inner.cmcd
    }

    /// The segment counts behind the CDN prefetch headers.
    pub fn segment_counts(&self) -> &Arc<media::SegmentCounts> {
        &self.inner.segment_counts
    }

    /// Signs media and control-channel URLs (a no-op without `--signing-key`).
    pub fn signer(&self) -> &Signer {
        &self.inner.signer
    }

    /// The control channel's sessions and connections.
    pub fn control(&self) -> &Arc<ControlHub> {
        &self.inner.control
    }

    /// The server's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// Runs `f` on the catalog on a blocking thread. One connection serves every request: the
    /// queries are short, and WAL mode shows it each commit of a concurrent ingest.
    pub async fn with_catalog<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Catalog) -> CatalogResult<T> + Send + 'static,
    ) -> Result<T, ApiError> {
        let shared = Arc::clone(&self.inner);
        let run = tokio::task::spawn_blocking(move || {
            // A panic while holding the lock cannot leave the connection half-changed (reads
            // only), so a poisoned lock is still usable.
            let catalog = shared
                .catalog
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            f(&catalog.0)
        });
        run.await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal)
    }
}

/// The router: every route and middleware of the server.
pub fn app(state: AppState) -> Router {
    let signer = state.signer().clone();
    let metrics = Arc::clone(state.metrics());
    let cors = state.inner.cors.clone();
    let timeout = state.inner.request_timeout;
    let echo = state.inner.control.config().conformance_echo;
    let routes = Router::new()
        .route("/", get(player::index))
        .route("/assets/{name}", get(player::asset))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route(
            "/metrics",
            get(metrics::render).with_state(Arc::clone(&metrics)),
        )
        .route("/api/tracks", get(api::list_tracks))
        .route("/api/tracks/{id}", get(api::get_track))
        .route("/api/prefetch", get(prefetch::prefetch))
        .route("/api/control", get(api::control))
        .route("/media/{track_id}/{*path}", get(media::media))
        .route("/ws", get(control::upgrade));
    let routes = if echo {
        routes.route("/ws/echo", get(control::echo::upgrade))
    } else {
        routes
    };
    let routes = routes.fallback(not_found).with_state(state);
    let access_log = TraceLayer::new_for_http()
        .make_span_with(DefaultMakeSpan::new().level(Level::INFO))
        .on_response(DefaultOnResponse::new().level(Level::INFO));
    // One `layer` call for the layers of each case: each call boxes every route's service
    // again, a clone and an allocation per request per call.
    let per_route = Stack::new(
        TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, timeout),
        edge::EdgeLayer::new(cors.clone(), metrics.clone()),
    );
    if !signer.enabled() {
        return routes.layer(Stack::new(per_route, access_log));
    }
    // The token check rewrites `/t/TOKEN/…` to the path after the token, so it must run before
    // routing: it wraps the whole router rather than being one of its layers. Its refusals
    // carry the CORS headers too (the layer again around it; it only inserts headers, so the
    // responses it already decorated are unchanged): without them a player on another origin
    // gets an opaque network error instead of the 403, and cannot tell a stale URL from a
    // broken network. The access log wraps the guard, so it shows refusals too, and every
    // request by the URL the client asked for.
    let guard = from_fn_with_state((signer, metrics), signing::guard);
    let guarded = tower_layer::Layer::layer(&guard, routes.layer(per_route));
    Router::new().fallback_service(guarded).layer(Stack::new(
        from_fn_with_state(cors, http::cors::cors),
        access_log,
    ))
}

/// Serves [`app`] on `listener` until `shutdown` completes, then stops accepting, lets the
/// requests in flight finish and returns.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let hub = Arc::clone(state.control());
    if state.inner.library.bucket().is_some() {
        tokio::spawn(rescan(state.clone()));
    }
    let delivering = state.clone();
    let attached = control::attach_bus(&hub);
    tokio::spawn(control::run_bus(
        Arc::clone(&hub),
        attached,
        move |session, need| {
            control::connection::deliver_prefetch(delivering.clone(), session, need)
        },
    ));
    let known = control::library::baseline(&state).await;
    tokio::spawn(control::library::watch(
        state.clone(),
        Arc::clone(&hub),
        LIBRARY_POLL,
        known,
    ));
    // WebSockets live until closed: tell them to close when shutdown starts, or the drain
    // would wait for them forever.
    let shutdown = async move {
        shutdown.await;
        hub.shut_down();
    };
    let limits = ConnLimits {
        idle_timeout: state.inner.idle_timeout,
        ..state.inner.conn_limits.clone()
    };
    let metrics = Arc::clone(state.metrics());
    let hot = Some(hot::HotPath::new(&state));
    conn::serve_connections(listener, app(state), hot, limits, metrics, shutdown).await;
    Ok(())
}

/// Lists a bucket library every `--rescan-secs` (and at once when another origin says it found
/// new tracks) and indexes the tracks other machines committed (and drops those gone), on a
/// catalog connection of its own: the listing may take
/// as long as the bucket's timeouts, and the requests' connection must not wait for it. The
/// library watch then announces new tracks to the control channel.
async fn rescan(state: AppState) {
    let mut catalog = None;
    let mut interval = tokio::time::interval(state.inner.rescan);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate, and AppState::new has just listed the bucket.
    interval.tick().await;
    let hub = Arc::clone(state.control());
    loop {
        // Another origin of the fleet found new tracks (the bus): look now, not at the tick.
        tokio::select! {
            _ = interval.tick() => {}
            () = hub.library_news() => interval.reset(),
        }
        let library = state.inner.library.clone();
        let mut held = catalog.take();
        let run = tokio::task::spawn_blocking(move || {
            let result = match held.as_mut() {
                Some(catalog) => Catalog::reconcile(catalog),
                None => Catalog::open(&library).and_then(|mut opened| {
                    let report = opened.reconcile();
                    held = Some(opened);
                    report
                }),
            };
            (held, result)
        });
        match run.await {
            Ok((held, result)) => {
                catalog = held;
                if let Err(e) = result {
                    if let Some(storage) = &state.inner.storage {
                        storage.failed(&e.to_string());
                    }
                    tracing::warn!(error = %e, "bucket rescan failed; serving the tracks known");
                }
            }
            Err(e) => tracing::error!(error = %e, "bucket rescan task failed"),
        }
    }
}

/// A future that completes on SIGINT or SIGTERM. The handlers are installed by this call (it
/// must run inside the runtime), so a signal that arrives before the future is first polled is
/// not lost; a signal that cannot be hooked is logged and never fires.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let hook = |kind: SignalKind, name: &'static str| {
        signal(kind)
            .inspect_err(|e| tracing::error!(error = %e, "cannot listen for {name}"))
            .ok()
    };
    let interrupt = hook(SignalKind::interrupt(), "SIGINT");
    let terminate = hook(SignalKind::terminate(), "SIGTERM");
    async move {
        tokio::select! {
            () = next_signal(interrupt) => {},
            () = next_signal(terminate) => {},
        }
        tracing::info!("shutting down: draining requests in flight");
    }
}

/// The next delivery of `signal`, or never if it could not be hooked.
async fn next_signal(signal: Option<tokio::signal::unix::Signal>) {
    match signal {
        Some(mut signal) => drop(signal.recv().await),
        None => std::future::pending().await,
    }
}

/// `GET /healthz`: liveness. The process answers (200 `ok`); for a bucket library a second
/// line says whether the bucket answers, which a restart would not fix.
async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    let mut body = match &state.inner.storage {
        None => "ok\n".to_string(),
        Some(storage) => match storage.failure() {
            None => "ok\nbucket: reachable\n".to_string(),
            Some(reason) => format!("ok\nbucket: unreachable ({reason})\n"),
        },
    };
    if let Some(bus) = state.control().bus_health() {
        body.push_str(&format!("bus: {bus}\n"));
    }
    ([(header::CACHE_CONTROL, "no-store")], body)
}

/// `GET /readyz`: readiness. 503 (with `Retry-After`) while a bucket library's bucket does not
/// answer, so a load balancer sends new listeners elsewhere; 200 `ready` otherwise.
async fn readyz(State(state): State<AppState>) -> Response {
    match state.inner.storage.as_ref().and_then(|s| s.failure()) {
        None => ([(header::CACHE_CONTROL, "no-store")], "ready\n").into_response(),
        Some(_) => {
            ApiError::Unavailable("the library's bucket is unreachable".into()).into_response()
        }
    }
}

/// Any other path.
async fn not_found() -> ApiError {
    ApiError::NotFound
}
