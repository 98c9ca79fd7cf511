//! The player page (`GET /`) and its assets (`GET /assets/{name}`), from `templates/`, built
//! into the binary so `segue serve` needs no file besides the library.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::SystemTime;

use axum::extract::Path;
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use super::error::ApiError;
use super::http::encoding::Effort;
use super::http::respond::{Entity, prepare, respond, select_coding};

/// Cache-Control of the page and its assets: kept, but revalidated on each use (a cheap 304
/// through the content-hash ETag), so a new build's page is picked up at once.
const PAGE_CACHE_CONTROL: &str = "no-cache";

/// The files of `templates/`: URL name, content type, bytes.
const FILES: [(&str, &str, &str); 7] = [
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("../../templates/index.html"),
    ),
    (
        "player.js",
        "text/javascript; charset=utf-8",
        include_str!("../../templates/player.js"),
    ),
    (
        "engine.js",
        "text/javascript; charset=utf-8",
        include_str!("../../templates/engine.js"),
    ),
    (
        "prefetch.js",
        "text/javascript; charset=utf-8",
        include_str!("../../templates/prefetch.js"),
    ),
    (
        "media.js",
        "text/javascript; charset=utf-8",
        include_str!("../../templates/media.js"),
    ),
    (
        "view.js",
        "text/javascript; charset=utf-8",
        include_str!("../../templates/view.js"),
    ),
    (
        "player.css",
        "text/css; charset=utf-8",
        include_str!("../../templates/player.css"),
    ),
];

/// Each file as an entity, tagged by its content hash once.
static ASSETS: LazyLock<HashMap<&'static str, Arc<Entity>>> = LazyLock::new(|| {
    FILES
        .iter()
        .map(|&(name, content_type, text)| {
            let entity = Entity::new(
                content_type,
                PAGE_CACHE_CONTROL,
                Bytes::from_static(text.as_bytes()),
                None,
            )
            .compressible(Effort::Once);
            (name, Arc::new(entity))
        })
        .collect()
});

/// `GET /`.
pub async fn index(method: Method, headers: HeaderMap) -> Response {
    asset_response("index.html", &method, &headers).await
}

/// `GET /assets/{name}`.
pub async fn asset(Path(name): Path<String>, method: Method, headers: HeaderMap) -> Response {
    if name == "index.html" {
        return ApiError::NotFound.into_response();
    }
    asset_response(&name, &method, &headers).await
}

async fn asset_response(name: &str, method: &Method, headers: &HeaderMap) -> Response {
    let Some(entity) = ASSETS.get(name) else {
        return ApiError::NotFound.into_response();
    };
    let coding = select_coding(headers, entity);
    prepare(entity, coding).await;
    respond(method, headers, entity, coding, SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_has_an_etag_and_is_not_empty() {
        for (name, _, _) in FILES {
            let entity = &ASSETS[name];
            assert!(entity.weight() > 0, "{name}");
        }
    }
}
