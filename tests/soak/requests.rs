//! The request mix of the load clients, and what each response must be: mostly segments, as
//! players fetch, then the rest of the surface (playlists, MPDs, waveforms, the catalog and
//! prefetch APIs, the player page), with HEAD, conditional and Range requests and some that must
//! be 404 or 416.

use std::collections::HashMap;

use serde_json::Value;

use super::shared::{Dice, Track};
use crate::support::Resp;

/// What a response must be.
pub struct Expect {
    status: u16,
    body: Body,
}

/// What a response body must be.
pub enum Body {
    /// Exactly this many bytes.
    Len(usize),
    /// No body, and `Content-Length` saying this many (a HEAD).
    HeadOf(usize),
    /// No body.
    Empty,
    /// No body, and `Content-Range: bytes */LEN` (a 416).
    Unsatisfiable(usize),
    /// Starts with these bytes.
    Starts(&'static str),
    /// Any non-empty body.
    Some,
    /// JSON of this shape.
    Json(Shape),
}

/// The shape of a JSON answer.
pub enum Shape {
    /// `{"tracks":[…],"total":N}`.
    TrackList,
    /// One track with this id.
    Track(String),
    /// Prefetch hints for this many tracks, each with an init and segments of known size.
    Prefetch(usize),
    /// `/api/control`.
    Control,
}

impl Expect {
    fn new(status: u16, body: Body) -> Expect {
        Expect { status, body }
    }

    /// Why `resp` is not what was expected, if it is not.
    pub fn check(&self, resp: &Resp) -> Result<(), String> {
        if resp.status != self.status {
            return Err(format!(
                "status {} (expected {}): {}",
                resp.status,
                self.status,
                String::from_utf8_lossy(&resp.body[..resp.body.len().min(200)])
            ));
        }
        let len = resp.body.len();
        let ok = match &self.body {
            Body::Len(n) => len == *n,
            Body::HeadOf(n) => len == 0 && resp.header("content-length") == Some(&n.to_string()),
            Body::Empty => len == 0,
            Body::Unsatisfiable(n) => {
                len == 0 && resp.header("content-range") == Some(&format!("bytes */{n}"))
            }
            Body::Starts(prefix) => resp.body.starts_with(prefix.as_bytes()),
            Body::Some => len > 0,
            Body::Json(shape) => {
                let json: Value = serde_json::from_slice(&resp.body)
                    .map_err(|e| format!("not JSON ({e}): {}", resp.text()))?;
                shape.fits(&json)
            }
        };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "unexpected body ({len} bytes, content-length {:?})",
                resp.header("content-length")
            ))
        }
    }
}

impl Shape {
    fn fits(&self, json: &Value) -> bool {
        match self {
            Shape::TrackList => json["tracks"]
                .as_array()
                .zip(json["total"].as_u64())
                .is_some_and(|(tracks, total)| tracks.len() as u64 <= total),
            Shape::Track(id) => json["id"] == id.as_str(),
            Shape::Prefetch(n) => json["hints"].as_array().is_some_and(|hints| {
                hints.len() == *n
                    && hints.iter().all(|h| {
                        h["init"]["bytes"].as_u64() > Some(0)
                            && h["segments"]
                                .as_array()
                                .is_some_and(|s| !s.is_empty() && s[0]["bytes"].as_u64() > Some(0))
                    })
            }),
            Shape::Control => json["ws"].as_str().is_some_and(|ws| ws.ends_with("/ws")),
        }
    }
}

/// One request of the mix.
pub struct Plan {
    /// `GET` or `HEAD`.
    pub method: &'static str,
    /// The request target.
    pub target: String,
    /// Extra header fields.
    pub headers: Vec<(&'static str, String)>,
    /// What the response must be.
    pub expect: Expect,
    /// Keep the response's ETag for a later conditional request.
    pub remember: bool,
}

impl Plan {
    fn get(target: String, expect: Expect) -> Plan {
        Plan {
            method: "GET",
            target,
            headers: Vec::new(),
            expect,
            remember: false,
        }
    }

    fn header(mut self, name: &'static str, value: String) -> Plan {
        self.headers.push((name, value));
        self
    }

    fn remembered(mut self) -> Plan {
        self.remember = true;
        self
    }
}

/// Picks the next request: mostly segments, as players fetch, then the rest of the surface.
pub fn plan(dice: &mut Dice, tracks: &[Track], etags: &HashMap<String, String>) -> Plan {
    let track = dice.pick(tracks);
    let rendition = dice.pick(&track.renditions);
    let n = dice.below(rendition.sizes.len());
    let (segment, size) = (rendition.segments[n].clone(), rendition.sizes[n]);
    match dice.below(100) {
        0..=33 => Plan::get(segment, Expect::new(200, Body::Len(size))).remembered(),
        34..=37 => Plan {
            method: "HEAD",
            ..Plan::get(segment, Expect::new(200, Body::HeadOf(size)))
        },
        38..=43 => Plan::get(rendition.init.clone(), Expect::new(200, Body::Some)).remembered(),
        44..=49 => Plan::get(
            rendition.playlist.clone(),
            Expect::new(200, Body::Starts("#EXTM3U")),
        )
        .remembered(),
        50..=53 => {
            Plan::get(track.hls.clone(), Expect::new(200, Body::Starts("#EXTM3U"))).remembered()
        }
        54..=57 => Plan::get(track.dash.clone(), Expect::new(200, Body::Starts("<?xml"))),
        58..=60 => {
            let coding = *dice.pick(&["gzip", "br", "gzip;q=0.5, br", "identity"]);
            let target = if dice.one_in(2) {
                &track.hls
            } else {
                &track.dash
            };
            Plan::get(target.clone(), Expect::new(200, Body::Some))
                .header("Accept-Encoding", coding.to_string())
        }
        61..=68 => match etags.iter().nth(dice.below(etags.len().max(1))) {
            Some((target, etag)) => Plan::get(target.clone(), Expect::new(304, Body::Empty))
                .header("If-None-Match", etag.clone()),
            None => Plan::get(segment, Expect::new(200, Body::Len(size))).remembered(),
        },
        69..=76 => {
            let (range, expect) = match dice.below(4) {
                0 => ("bytes=0-99".to_string(), Expect::new(206, Body::Len(100))),
                1 => ("bytes=-500".to_string(), Expect::new(206, Body::Len(500))),
                2 => (
                    format!("bytes={size}-"),
                    Expect::new(416, Body::Unsatisfiable(size)),
                ),
                _ => (
                    "bytes=0-9,200-299".to_string(),
                    Expect::new(206, Body::Some),
                ),
            };
            Plan::get(segment, expect).header("Range", range)
        }
        77..=80 => Plan::get(
            format!("/api/tracks?limit={}&offset={}", 1 + n * 7, dice.below(10)),
            Expect::new(200, Body::Json(Shape::TrackList)),
        ),
        81..=82 => Plan::get(
            "/api/tracks?q=track".to_string(),
            Expect::new(200, Body::Json(Shape::TrackList)),
        ),
        83..=85 => Plan::get(
            format!("/api/tracks/{}", track.id),
            Expect::new(200, Body::Json(Shape::Track(track.id.clone()))),
        ),
        86..=88 => Plan::get(
            format!(
                "/api/prefetch?track={}&bandwidth={}",
                track.id,
                dice.within(32_000, 2_000_000)
            ),
            Expect::new(200, Body::Json(Shape::Prefetch(1))),
        ),
        89..=90 => {
            let ids: Vec<&str> = (0..3).map(|_| dice.pick(tracks).id.as_str()).collect();
            Plan::get(
                format!("/api/prefetch?tracks={}", ids.join(",")),
                Expect::new(200, Body::Json(Shape::Prefetch(3))),
            )
        }
        91..=92 => Plan::get(track.waveform.clone(), Expect::new(200, Body::Starts("{"))),
        93 => Plan::get("/healthz".into(), Expect::new(200, Body::Starts("ok"))),
        94 => Plan::get("/metrics".into(), Expect::new(200, Body::Starts("#"))),
        95 => Plan::get(
            rendition.segments[0].replace("/1.m4s", &format!("/{}.m4s", rendition.sizes.len() + 1)),
            Expect::new(404, Body::Starts("{\"error\"")),
        ),
        96 => Plan::get(
            "/api/tracks/000000000000000000000000".into(),
            Expect::new(404, Body::Starts("{\"error\"")),
        ),
        97 => Plan::get("/".into(), Expect::new(200, Body::Some)),
        98 => Plan::get("/assets/player.js".into(), Expect::new(200, Body::Some)),
        _ => Plan::get(
            "/api/control".into(),
            Expect::new(200, Body::Json(Shape::Control)),
        ),
    }
}
