//! Serving from a bucket library (issue 13), with the real parts: moto's S3 server
//! ([`common::s3`]) started per test, the `segue` binary ingesting into it and serving from it
//! ([`common::ServeProcess`]), each process on a "machine" of its own (its own state dir).
//!
//! - `differential`: the RFC 9110 battery of `tests/server_http` sent to an origin on a local
//!   library and to one on a bucket holding the same track: same answers, same ETags.
//! - `players`: ffmpeg decodes HLS and DASH from the bucket origin to the exact sample count
//!   (and `/metrics` counts the bucket reads); hls.js plays from two origins on one bucket.
//! - `origins`: a track ingested by a third process appears on two running origins (API and
//!   WebSocket `library` event) with no restart.
//! - `outage`: the bucket vanishes and hangs while serving: cached objects are still served,
//!   the others get 503 with `Retry-After`, `/readyz` and `/healthz` say so, and all recovers.

mod common;
#[path = "peers/support.rs"]
mod peers;
#[path = "server_http/support.rs"]
#[allow(dead_code)] // shared with tests/server_http.rs, which uses the rest
mod support;
#[path = "control_ws/client.rs"]
#[allow(dead_code)] // shared with tests/control_ws.rs, which uses the rest
mod ws;

#[path = "bucket_serve/differential.rs"]
mod differential;
#[path = "bucket_serve/fixture.rs"]
mod fixture;
#[path = "bucket_serve/origins.rs"]
mod origins;
#[path = "bucket_serve/outage.rs"]
mod outage;
#[path = "bucket_serve/players.rs"]
mod players;
