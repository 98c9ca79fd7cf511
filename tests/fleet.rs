//! A fleet of origins (issue 14) with the real parts: moto's S3 server holding the library, two
//! `segue serve` origins on it, and Debian's nginx in front as the CDN stand-in with
//! `tests/peers/nginx-fleet.conf`, the config docs/deploy.md ("Fleet") describes.
//!
//! - `cache_keys`: signed URLs are cached under the path after the token, and a forged token
//!   is refused at the edge even for a cached file; CMCD arguments do not split the cache.
//! - `failover`: hls.js, dash.js and segue's own page play a track through nginx to its end
//!   while one origin is killed (SIGKILL) mid-track: no stall, no error, and the requests
//!   after the kill went to the survivor, one of them failed over inside nginx.
//!
//! The browser tests are in the `media-clock` test group (.config/nextest.toml): one at a time.
//! - `session`: with `--bus redis://`, segue's page keeps its control session across the kill
//!   and a second page on the other origin follows it throughout.
//! - `docs`: docs/deploy.md's nginx excerpts are lines of the tested config.

mod common;
#[path = "peers/support.rs"]
mod peers;

#[path = "bucket_serve/fixture.rs"]
#[allow(dead_code)] // shared with tests/bucket_serve.rs, which uses the rest
mod bucket;
#[path = "fleet/cache_keys.rs"]
mod cache_keys;
#[path = "fleet/docs.rs"]
mod docs;
#[path = "fleet/failover.rs"]
mod failover;
#[path = "fleet/fixture.rs"]
mod fixture;
#[path = "fleet/session.rs"]
mod session;
