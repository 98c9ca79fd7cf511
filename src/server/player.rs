//! The player page (`GET /`) and its assets (`GET /assets/{name}`), from `templates/`, built
//! into the binary so `segue serve` needs no file besides the library.
//!
//! The page carries the server's constants that the player's JavaScript uses (the control
//! protocol's name, the ABR share of the prefetch hints) as a JSON element, written in here once,
//! so that the player never repeats them (`templates/types.js`, `PageConfig`).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::SystemTime;

use axum::extract::Path;
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use super::control::protocol::PROTOCOL;
use super::error::ApiError;
use super::http::encoding::Effort;
use super::http::respond::{Entity, prepare, respond, select_coding};
use super::view::BANDWIDTH_SHARE;

/// Cache-Control of the page and its assets: kept, but revalidated on each use (a cheap 304
/// through the content-hash ETag), so a new build's page is picked up at once.
const PAGE_CACHE_CONTROL: &str = "no-cache";

/// Where `index.html` takes the page's JSON config.
const CONFIG_SLOT: &str = "{{segue_config}}";

/// The files of `templates/`: URL name, content type, bytes. `types.js` holds only JSDoc types
/// for the type check, which the browser never loads: it is not served.
const FILES: [(&str, &str, &str); 10] = [
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
        "output.js",
        "text/javascript; charset=utf-8",
        include_str!("../../templates/output.js"),
    ),
    (
        "logic.js",
        "text/javascript; charset=utf-8",
        include_str!("../../templates/logic.js"),
    ),
    (
        "format.js",
        "text/javascript; charset=utf-8",
        include_str!("../../templates/format.js"),
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

/// The page's JSON config: the server's constants that the player uses. `<` is escaped so that
/// no value can close the `<script>` element it sits in.
fn page_config() -> String {
    serde_json::json!({ "protocol": PROTOCOL, "abr_share": BANDWIDTH_SHARE })
        .to_string()
        .replace('<', "\\u003c")
}

/// The bytes served for a file of `templates/`: `index.html` with its config written in, the
/// others as they are.
fn body(name: &str, text: &'static str) -> Bytes {
    if name == "index.html" {
        Bytes::from(text.replace(CONFIG_SLOT, &page_config()))
    } else {
        Bytes::from_static(text.as_bytes())
    }
}

/// Each file as an entity, tagged by its content hash once.
static ASSETS: LazyLock<HashMap<&'static str, Arc<Entity>>> = LazyLock::new(|| {
    FILES
        .iter()
        .map(|&(name, content_type, text)| {
            let entity = Entity::new(content_type, PAGE_CACHE_CONTROL, body(name, text), None)
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

    /// The JSON config element of the served page, parsed.
    fn served_config() -> serde_json::Value {
        let (_, _, text) = FILES
            .iter()
            .find(|&&(name, _, _)| name == "index.html")
            .expect("index.html");
        let page = String::from_utf8(body("index.html", text).to_vec()).expect("UTF-8");
        assert!(!page.contains(CONFIG_SLOT), "the slot is filled");
        let open = r#"<script type="application/json" id="segue-config">"#;
        let start = page.find(open).expect("the config element") + open.len();
        let len = page[start..].find("</script>").expect("its end");
        serde_json::from_str(&page[start..start + len]).expect("JSON")
    }

    #[test]
    fn page_carries_the_servers_protocol_and_abr_share() {
        let config = served_config();
        assert_eq!(config["protocol"], PROTOCOL);
        assert_eq!(config["abr_share"], BANDWIDTH_SHARE);
        assert_eq!(config.as_object().map(|o| o.len()), Some(2), "{config}");
    }

    #[test]
    fn every_module_of_templates_is_served() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/templates");
        for entry in std::fs::read_dir(dir).expect("templates/") {
            let name = entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned();
            let served = FILES.iter().any(|&(file, _, _)| file == name);
            let types_only = name == "types.js";
            if name.ends_with(".js") || name.ends_with(".css") || name.ends_with(".html") {
                assert!(served != types_only, "{name}: served {served}");
            }
        }
    }
}
