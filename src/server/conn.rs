//! Accepted connections: counted for `/metrics`, and closed when idle.
//!
//! axum's `serve` sets no timeout on a connection, so a client that opens a socket and sends
//! nothing (or stops reading) would hold it forever. [`TrackedStream`] fails any read or write
//! that has made no progress for the idle timeout; hyper then drops the connection. A request
//! being handled is bounded separately by the request timeout (which is shorter).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::serve::Listener;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};

use super::metrics::Metrics;

/// A TCP listener whose connections are counted and time out when idle.
#[derive(Debug)]
pub struct TrackedListener {
    inner: TcpListener,
    metrics: Arc<Metrics>,
    idle: Duration,
}

impl TrackedListener {
    /// Wraps `inner`; connections idle for `idle` are closed.
    pub fn new(inner: TcpListener, metrics: Arc<Metrics>, idle: Duration) -> Self {
        TrackedListener {
            inner,
            metrics,
            idle,
        }
    }
}

impl Listener for TrackedListener {
    type Io = TrackedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        // axum's TcpListener impl retries (and backs off on) accept errors.
        let (stream, addr) = Listener::accept(&mut self.inner).await;
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
        self.metrics.connection_opened();
        let stream = TrackedStream {
            inner: stream,
            deadline: Box::pin(tokio::time::sleep(self.idle)),
            idle: self.idle,
            metrics: Arc::clone(&self.metrics),
        };
        (stream, addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// An accepted connection (see the module doc).
#[derive(Debug)]
pub struct TrackedStream {
    inner: TcpStream,
    deadline: Pin<Box<Sleep>>,
    idle: Duration,
    metrics: Arc<Metrics>,
}

impl TrackedStream {
    /// Records progress: the idle clock starts again.
    fn progressed(&mut self) {
        self.deadline.as_mut().reset(Instant::now() + self.idle);
    }

    /// Called when the socket is not ready: an error once idle for too long, else pending (the
    /// sleep has registered the waker, so we are polled again when it fires).
    fn pending<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        ready!(self.deadline.as_mut().poll(cx));
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "connection idle for too long",
        )))
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
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.track(cx, poll)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
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

    #[tokio::test(start_paused = true)]
    async fn idle_connections_are_closed_and_uncounted() {
        let metrics = Arc::new(Metrics::new());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut listener =
            TrackedListener::new(listener, Arc::clone(&metrics), Duration::from_secs(5));
        let _client = TcpStream::connect(addr).await.unwrap();
        let (mut server_side, _) = listener.accept().await;
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
