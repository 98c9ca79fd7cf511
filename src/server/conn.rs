//! Accepting connections and driving hyper on them, with the limits a public origin needs.
//!
//! axum's `serve` sets no header-read timeout, no cap on connections and no bound on the size of
//! a request head, so [`serve_connections`] drives hyper itself:
//!
//! - **Slow clients.** A request head must arrive within [`ConnLimits::header_timeout`]
//!   (slowloris); and [`TrackedStream`] fails any read or write that has made no progress for the
//!   idle timeout (a client that stops reading). A request being handled is bounded separately
//!   by the request timeout.
//! - **Floods.** At most [`ConnLimits::max_connections`] are served at once; one more is
//!   answered `503` with `Retry-After` and closed at once, so the ones being served go on.
//! - **Oversized heads** (over [`ConnLimits::max_head_bytes`]) get `431` from hyper.
//! - **Zero-copy bodies.** Each connection has the [`Regions`] its responses registered, so a
//!   cached segment goes out with `sendfile` ([`super::zerocopy`]).
//! - **Graceful shutdown.** When `shutdown` completes the listener closes, idle keep-alive
//!   connections are closed, and the requests in flight finish (hyper-util's GracefulShutdown).

use std::convert::Infallible;
use std::future::{Future, Ready};
use std::io;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, Interest, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

use super::hot::HotPath;
use super::metrics::Metrics;
use super::workers::{Handler, Workers};
use super::zerocopy::{FileRegion, Regions, Sent};

pub use crate::config::ConnLimits;

/// The answer to a connection over the cap: complete, so a client reports a clean 503.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n\
Content-Type: application/json\r\nContent-Length: 58\r\nConnection: close\r\n\r\n\
{\"error\":\"too many connections, retry later\",\"status\":503}";

/// Serves `app` on `listener` until `shutdown` completes (see the module doc).
pub async fn serve_connections(
    listener: TcpListener,
    app: Router,
    hot: Option<HotPath>,
    limits: ConnLimits,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        // No read to detect a client hanging up while its request is handled: that read
        // found nothing on almost every request and cost a fresh 8 KiB read buffer each time
        // (the request still held the old one). A client that has gone is found when its
        // response is written.
        .half_close(true)
        .max_buf_size(limits.max_head_bytes.max(8192));
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let connections = Arc::new(Connections {
        builder: builder.http1_only(),
        service: TowerToHyperService::new(app),
        hot: hot.map(Arc::new),
        metrics: Arc::clone(&metrics),
        idle_timeout: limits.idle_timeout,
    });
    let serve = Arc::clone(&connections);
    let handler: Handler<Accepted> = Arc::new(move |accepted: Accepted| match TcpStream::from_std(
        accepted.tcp,
    ) {
        Ok(tcp) => serve.serve(tcp, accepted.permit, accepted.watcher),
        Err(e) => tracing::warn!(error = %e, "accepted connection not registered"),
    });
    let mut workers = Workers::start(limits.threads, &handler);
    tokio::pin!(shutdown);
    loop {
        let (tcp, _) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors or a connection reset before accept: wait a
                    // little rather than spin, and go on.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            metrics.connection_refused();
            tokio::spawn(refuse(tcp));
            continue;
        };
        let watcher = graceful.watcher();
        let job = match tcp.into_std() {
            Ok(tcp) => Accepted {
                tcp,
                permit,
                watcher,
            },
            Err(e) => {
                tracing::warn!(error = %e, "accepted connection not handed over");
                continue;
            }
        };
        // No worker to take it (none started, or all stopped): served here instead.
        if let Err(job) = workers.dispatch(job) {
            handler(job);
        }
    }
    drop(listener);
    workers.close();
    if tokio::time::timeout(limits.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still in flight after the drain timeout: dropped");
    }
    // Upgraded connections (WebSockets) are past the drain: they close themselves on
    // shutdown and get the drain timeout again to do it.
    workers.stop(limits.drain_timeout).await;
}

/// An accepted connection on its way to a worker.
struct Accepted {
    tcp: std::net::TcpStream,
    /// Its place under the connection cap, held until it closes.
    permit: OwnedSemaphorePermit,
    watcher: Watcher,
}

/// What every connection is served with.
struct Connections {
    builder: auto::Builder<TokioExecutor>,
    service: TowerToHyperService<Router>,
    hot: Option<Arc<HotPath>>,
    metrics: Arc<Metrics>,
    idle_timeout: Duration,
}

impl Connections {
    /// Serves `tcp` on the current runtime until it closes or the shutdown drains it.
    fn serve(&self, tcp: TcpStream, permit: OwnedSemaphorePermit, watcher: Watcher) {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
        let regions = Regions::default();
        let io = TokioIo::new(
            TrackedStream::new(tcp, Arc::clone(&self.metrics), self.idle_timeout)
                .sending_from(regions.clone()),
        );
        let service = ConnectionService {
            router: self.service.clone(),
            hot: self.hot.clone(),
            regions,
        };
        let connection = self
            .builder
            .serve_connection_with_upgrades(io, service)
            .into_owned();
        let connection = watcher.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
}

/// Answers a connection over the cap with 503 and closes it.
async fn refuse(mut tcp: TcpStream) {
    let write = async {
        tcp.write_all(REFUSAL).await?;
        tcp.shutdown().await
    };
    if let Err(e) = tokio::time::timeout(Duration::from_secs(2), write).await {
        tracing::debug!(error = %e, "refusal not delivered");
    }
}

/// The router as one connection's service, after the [`HotPath`]: hands each response's
/// [`FileRegion`] to the connection's stream.
#[derive(Clone)]
struct ConnectionService {
    router: TowerToHyperService<Router>,
    hot: Option<Arc<HotPath>>,
    regions: Regions,
}

/// What the router's service answers.
type Routed = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

/// The future of [`ConnectionService`]: an answer from the hot path, or the router's.
enum Answer {
    Hot(Ready<Result<Response<Body>, Infallible>>),
    Routed(Routed),
}

impl Future for Answer {
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Answer::Hot(ready) => Pin::new(ready).poll(cx),
            Answer::Routed(future) => future.as_mut().poll(cx),
        }
    }
}

impl hyper::service::Service<Request<Incoming>> for ConnectionService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Answer;

    fn call(&self, request: Request<Incoming>) -> Answer {
        if let Some((response, region)) = self.hot.as_ref().and_then(|hot| hot.answer(&request)) {
            if let Some(region) = region {
                self.regions.register(region);
            }
            return Answer::Hot(std::future::ready(Ok(response)));
        }
        let answer = self.router.call(request);
        let regions = self.regions.clone();
        Answer::Routed(Box::pin(async move {
            let mut response = answer.await?;
            if let Some(region) = response.extensions_mut().remove::<FileRegion>() {
                regions.register(region);
            }
            Ok(response)
        }))
    }
}

/// An accepted connection (see the module doc).
#[derive(Debug)]
pub struct TrackedStream {
    inner: TcpStream,
    deadline: Pin<Box<Sleep>>,
    /// When a read or write last made progress.
    last_progress: Instant,
    idle: Duration,
    metrics: Arc<Metrics>,
    regions: Regions,
}

impl TrackedStream {
    /// Wraps an accepted stream, counting it as open until dropped.
    pub fn new(inner: TcpStream, metrics: Arc<Metrics>, idle: Duration) -> Self {
        metrics.connection_opened();
        let now = Instant::now();
        TrackedStream {
            inner,
            deadline: Box::pin(tokio::time::sleep_until(now + idle)),
            last_progress: now,
            idle,
            metrics,
            regions: Regions::default(),
        }
    }

    /// Sends body buffers that lie in `regions` from their files.
    pub fn sending_from(mut self, regions: Regions) -> Self {
        self.regions = regions;
        self
    }

    /// Writes `bufs` through the connection's regions when one of them lies in a region:
    /// `None` when none does (and nothing was written).
    fn poll_write_regions(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Option<Poll<io::Result<usize>>> {
        if self.regions.is_empty() {
            return None;
        }
        loop {
            match self.inner.poll_write_ready(cx) {
                Poll::Pending => return Some(self.pending(cx)),
                Poll::Ready(Err(e)) => return Some(Poll::Ready(Err(e))),
                Poll::Ready(Ok(())) => {}
            }
            let (regions, socket) = (&self.regions, &self.inner);
            match socket.try_io(Interest::WRITABLE, || regions.write(socket.as_fd(), bufs)) {
                Ok(None) => return None,
                Ok(Some(sent)) => {
                    if let Sent::FromFile(n) = sent {
                        self.metrics.zero_copy_sent(n);
                    }
                    self.progressed();
                    return Some(Poll::Ready(Ok(sent.count())));
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Some(Poll::Ready(Err(e))),
            }
        }
    }

    /// Records progress: the idle clock starts again. Only the time is noted: moving the
    /// timer on every read and write cost a timer-wheel update per I/O; instead, when the
    /// timer fires, [`Self::pending`] moves it to `idle` after the last progress if there was
    /// any since it was set.
    fn progressed(&mut self) {
        self.last_progress = Instant::now();
    }

    /// Called when the socket is not ready: an error once idle for too long, else pending (the
    /// sleep has registered the waker, so we are polled again when it fires).
    fn pending<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        loop {
            ready!(self.deadline.as_mut().poll(cx));
            let due = self.last_progress + self.idle;
            if due <= self.deadline.deadline() {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection idle for too long",
                )));
            }
            self.deadline.as_mut().reset(due);
        }
    }

    fn track<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match poll {
            Poll::Ready(result) => {
                self.progressed();
                Poll::Ready(result)
            }
            Poll::Pending => self.pending(cx),
        }
    }
}

impl Drop for TrackedStream {
    fn drop(&mut self) {
        self.metrics.connection_closed();
    }
}

impl AsyncRead for TrackedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        this.track(cx, poll)
    }
}

impl AsyncWrite for TrackedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(poll) = this.poll_write_regions(cx, &[io::IoSlice::new(buf)]) {
            return poll;
        }
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.track(cx, poll)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(poll) = this.poll_write_regions(cx, bufs) {
            return poll;
        }
        let poll = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.track(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[test]
    fn the_refusal_is_a_complete_response() {
        let text = std::str::from_utf8(REFUSAL).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "));
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap();
        assert_eq!(length.parse::<usize>().unwrap(), body.len());
        serde_json::from_str::<serde_json::Value>(body).unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn idle_connections_are_closed_and_uncounted() {
        let metrics = Arc::new(Metrics::new());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = TcpStream::connect(addr).await.unwrap();
        let (tcp, _) = listener.accept().await.unwrap();
        let mut server_side = TrackedStream::new(tcp, Arc::clone(&metrics), Duration::from_secs(5));
        assert!(
            metrics
                .render()
                .unwrap()
                .contains("segue_open_connections 1")
        );
        // Nothing arrives: with the clock paused, tokio advances it to the deadline.
        let err = server_side.read_u8().await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        drop(server_side);
        assert!(
            metrics
                .render()
                .unwrap()
                .contains("segue_open_connections 0")
        );
    }
}
