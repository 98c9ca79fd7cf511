//! The layer every route shares: CORS ([`super::http::cors`]) and the request metrics
//! ([`super::metrics`]), as one hand-written tower layer.
//!
//! Why not `axum::middleware::from_fn`: each `from_fn` layer boxes the inner service and the
//! future of every request, a few allocations per request per layer, and these two run on every
//! segment a CDN or player fetches. Here the future is a plain enum over the inner one, so a
//! request costs no allocation in this layer.

use std::convert::Infallible;
use std::future::{Future, Ready};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::response::Response;
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::http::cors::Cors;
use super::metrics::{self, Metrics};

/// CORS and metrics around every route (see the module doc).
#[derive(Debug, Clone)]
pub struct EdgeLayer {
    cors: Cors,
    metrics: Arc<Metrics>,
}

impl EdgeLayer {
    /// The layer for a CORS policy, counting into `metrics`.
    pub fn new(cors: Cors, metrics: Arc<Metrics>) -> Self {
        EdgeLayer { cors, metrics }
    }
}

impl<S> Layer<S> for EdgeLayer {
    type Service = Edge<S>;

    fn layer(&self, inner: S) -> Edge<S> {
        Edge {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`EdgeLayer`] makes.
#[derive(Debug, Clone)]
pub struct Edge<S> {
    inner: S,
    layer: EdgeLayer,
}

impl<S> Service<Request> for Edge<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = EdgeFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let route = metrics::route_label(request.extensions().get::<MatchedPath>());
        let head = request.method() == Method::HEAD;
        let state = if request.method() == Method::OPTIONS {
            State::Answered {
                response: std::future::ready(self.layer.cors.preflight()),
            }
        } else {
            State::Inner {
                future: self.inner.call(request),
            }
        };
        EdgeFuture {
            state,
            route,
            head,
            layer: self.layer.clone(),
        }
    }
}

pin_project! {
    /// Where an [`EdgeFuture`]'s response comes from.
    #[project = StateProj]
    #[derive(Debug)]
    enum State<F> {
        /// The route's future.
        Inner { #[pin] future: F },
        /// A preflight answered here.
        Answered { response: Ready<Response> },
    }
}

pin_project! {
    /// The future of [`Edge`]: the route's response with the CORS headers, counted.
    #[derive(Debug)]
    pub struct EdgeFuture<F> {
        #[pin]
        state: State<F>,
        route: &'static str,
        head: bool,
        layer: EdgeLayer,
    }
}

impl<F> Future for EdgeFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = match this.state.project() {
            StateProj::Inner { future } => {
                let Ok(mut response) = ready!(future.poll(cx));
                this.layer.cors.decorate(response.headers_mut());
                response
            }
            StateProj::Answered { response } => ready!(Pin::new(response).poll(cx)),
        };
        this.layer
            .metrics
            .record_request(this.route, &response, *this.head);
        Poll::Ready(Ok(response))
    }
}
