//! `GET /`: the player page from `templates/index.html`, built into the binary.

use std::sync::{Arc, LazyLock};
use std::time::SystemTime;

use axum::http::{HeaderMap, Method};
use axum::response::Response;
use bytes::Bytes;

use super::http::encoding::Coding;
use super::http::respond::{Entity, respond};

/// The page, tagged by its content hash once; revalidated on each use (`no-cache`) so a new
/// build's page is picked up at once.
static PAGE: LazyLock<Arc<Entity>> = LazyLock::new(|| {
    let html = Bytes::from_static(include_str!("../../templates/index.html").as_bytes());
    Arc::new(Entity::new(
        "text/html; charset=utf-8",
        "no-cache",
        html,
        None,
    ))
});

/// `GET /`.
pub async fn index(method: Method, headers: HeaderMap) -> Response {
    respond(
        &method,
        &headers,
        &PAGE,
        Coding::Identity,
        SystemTime::now(),
    )
}
