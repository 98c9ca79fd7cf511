//! The HTTP side of the soak: keep-alive clients sending the request mix of [`super::requests`],
//! each response checked for its status and body; and clients that hang up mid-body, mid-head
//! or before reading anything.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};

use super::requests::plan;
use super::shared::{Dice, Shared, Tally, Track};
use crate::support::{Resp, parse_head, split_head};

/// Longest any one exchange may take before it counts as a stall.
const EXCHANGE_LIMIT: Duration = Duration::from_secs(30);
/// Largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;

/// One keep-alive HTTP/1.1 connection, written and parsed by hand so the test sees exactly
/// what crossed the wire (and can frame responses itself: Content-Length or chunked).
pub struct Conn {
    stream: BufReader<TcpStream>,
    host: String,
    /// False once the server said `Connection: close` or framed a body by closing.
    reusable: bool,
}

impl Conn {
    /// Connects to `addr`.
    pub async fn open(addr: SocketAddr) -> io::Result<Conn> {
        let tcp = tokio::time::timeout(EXCHANGE_LIMIT, TcpStream::connect(addr))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        Ok(Conn {
            stream: BufReader::new(tcp),
            host: addr.to_string(),
            reusable: true,
        })
    }

    /// Sends one request and reads its whole response.
    pub async fn exchange(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
    ) -> io::Result<Resp> {
        let exchange = async {
            let mut request = format!("{method} {target} HTTP/1.1\r\nHost: {}\r\n", self.host);
            for (name, value) in headers {
                request.push_str(&format!("{name}: {value}\r\n"));
            }
            request.push_str("\r\n");
            self.stream.get_mut().write_all(request.as_bytes()).await?;
            let head = self.read_head().await?;
            let mut resp = parse_head(&head, Vec::new());
            resp.body = self.read_body(method, &resp).await?;
            if resp
                .header("connection")
                .is_some_and(|c| c.eq_ignore_ascii_case("close"))
            {
                self.reusable = false;
            }
            Ok(resp)
        };
        tokio::time::timeout(EXCHANGE_LIMIT, exchange)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no response in 30 s"))?
    }

    /// The response head, without the blank line that ends it.
    async fn read_head(&mut self) -> io::Result<Vec<u8>> {
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            if self.stream.read_until(b'\n', &mut head).await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("closed after {} bytes of head", head.len()),
                ));
            }
            if head.len() > MAX_HEAD {
                return Err(io::Error::other("response head over 64 KiB"));
            }
        }
        head.truncate(head.len() - 4);
        Ok(head)
    }

    /// The body of `resp`, framed as RFC 9112 6.3 says.
    async fn read_body(&mut self, method: &str, resp: &Resp) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        if method == "HEAD" || matches!(resp.status, 100..=199 | 204 | 304) {
            return Ok(body);
        }
        if resp
            .header("transfer-encoding")
            .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
        {
            return self.read_chunked().await;
        }
        match resp.header("content-length") {
            Some(len) => {
                let len = len.parse().map_err(io::Error::other)?;
                body.resize(len, 0);
                self.stream.read_exact(&mut body).await?;
            }
            None => {
                self.reusable = false;
                self.stream.read_to_end(&mut body).await?;
            }
        }
        Ok(body)
    }

    async fn read_chunked(&mut self) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let mut line = String::new();
            self.stream.read_line(&mut line).await?;
            let size = line.trim().split(';').next().unwrap_or_default();
            let size = usize::from_str_radix(size, 16).map_err(io::Error::other)?;
            if size == 0 {
                // Trailer fields, up to the blank line.
                while line != "\r\n" {
                    line.clear();
                    if self.stream.read_line(&mut line).await? == 0 {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                }
                return Ok(body);
            }
            let start = body.len();
            body.resize(start + size + 2, 0);
            self.stream.read_exact(&mut body[start..]).await?;
            body.truncate(start + size);
        }
    }
}

/// Shortest and longest pause of a load client between two requests, in milliseconds: 32
/// clients then ask for at most about 430 requests a second, a steady load that takes about half
/// of one core (server and clients together) and leaves the rest of the shared 2 cores to the
/// other tests running alongside.
const THINK_MS: (u64, u64) = (25, 125);

/// A keep-alive client: requests from [`plan`] on one connection, a new connection every few
/// hundred requests, until the gate says yield.
pub async fn load_client(shared: Arc<Shared>, addr: SocketAddr, seed: u64) {
    let mut dice = Dice::new(seed);
    let mut etags: HashMap<String, String> = HashMap::new();
    while let Some(_turn) = shared.gate.enter().await {
        let mut conn: Option<Conn> = None;
        let mut left = dice.within(20, 300);
        while left > 0 && !shared.gate.must_yield() {
            left -= 1;
            if !conn.as_ref().is_some_and(|c| c.reusable) {
                match Conn::open(addr).await {
                    Ok(c) => conn = Some(c),
                    Err(e) => {
                        shared.tally.fail(format!("connect: {e}"));
                        break;
                    }
                }
            }
            let Some(c) = conn.as_mut() else { break };
            let plan = plan(&mut dice, &shared.tracks.snapshot(), &etags);
            let headers: Vec<(&str, &str)> =
                plan.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            match c.exchange(plan.method, &plan.target, &headers).await {
                Ok(resp) => {
                    shared.tally.response(resp.status);
                    if let Err(why) = plan.expect.check(&resp) {
                        shared.tally.fail(format!(
                            "{} {} {headers:?}: {why}",
                            plan.method, plan.target
                        ));
                    }
                    if let (true, 200, Some(etag)) =
                        (plan.remember, resp.status, resp.header("etag"))
                    {
                        etags.insert(plan.target, etag.to_string());
                    }
                }
                Err(e) => {
                    shared
                        .tally
                        .fail(format!("{} {}: {e}", plan.method, plan.target));
                    conn = None;
                }
            }
            tokio::time::sleep(dice.millis(THINK_MS.0, THINK_MS.1)).await;
        }
    }
}

/// A client that hangs up: after a few KB of a segment's body (through a 4 KiB receive buffer,
/// so the server is still writing), in the middle of its request head, or right after sending
/// a request; half of them with a reset (SO_LINGER 0) rather than a FIN.
pub async fn hang_up_client(shared: Arc<Shared>, addr: SocketAddr, seed: u64) {
    let mut dice = Dice::new(seed);
    while let Some(_turn) = shared.gate.enter().await {
        while !shared.gate.must_yield() {
            let tracks = shared.tracks.snapshot();
            // The top rendition's largest segment: 32 KB and more, never read to its end.
            let top = dice.pick(&tracks).renditions.last().expect("renditions");
            let n = (0..top.sizes.len())
                .max_by_key(|&i| top.sizes[i])
                .expect("segments");
            let request = format!(
                "GET {} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: soak\r\nAccept: */*\r\n\r\n",
                top.segments[n]
            );
            let reset = dice.one_in(2);
            let outcome = match dice.below(3) {
                0 => {
                    let keep = dice.within(1024, 8192).min(top.sizes[n] / 2);
                    mid_body(addr, &request, keep, reset)
                        .await
                        .map(|()| &shared.tally.mid_body_aborts)
                }
                1 => {
                    let cut = dice.within(1, request.len() - 2);
                    let wait = dice.millis(0, 100);
                    hang_up_after(addr, &request.as_bytes()[..cut], wait, reset)
                        .await
                        .map(|()| &shared.tally.mid_head_aborts)
                }
                _ => hang_up_after(addr, request.as_bytes(), Duration::ZERO, reset)
                    .await
                    .map(|()| &shared.tally.unread_aborts),
            };
            match outcome {
                Ok(counter) => Tally::bump(counter),
                Err(e) => shared.tally.fail(format!("hang-up client: {e}")),
            }
            tokio::time::sleep(dice.millis(20, 120)).await;
        }
    }
}

/// Sends `request`, reads its head and `keep` bytes of body, and hangs up.
async fn mid_body(addr: SocketAddr, request: &str, keep: usize, reset: bool) -> io::Result<()> {
    let socket = TcpSocket::new_v4()?;
    socket.set_recv_buffer_size(4096)?;
    let mut tcp = socket.connect(addr).await?;
    tcp.write_all(request.as_bytes()).await?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            if let Some((head, body)) = split_head(&got)
                && body.len() >= keep
            {
                return Ok(parse_head(head, Vec::new()));
            }
            match tcp.read(&mut buf).await? {
                0 => return Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
                n => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    let resp = tokio::time::timeout(EXCHANGE_LIMIT, read)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no body in 30 s"))??;
    if resp.status != 200 {
        return Err(io::Error::other(format!("status {}", resp.status)));
    }
    hang_up(tcp, reset)
}

/// Sends `bytes`, waits `wait`, and hangs up without reading.
async fn hang_up_after(
    addr: SocketAddr,
    bytes: &[u8],
    wait: Duration,
    reset: bool,
) -> io::Result<()> {
    let mut tcp = TcpStream::connect(addr).await?;
    tcp.write_all(bytes).await?;
    tokio::time::sleep(wait).await;
    hang_up(tcp, reset)
}

/// Closes `tcp`: a reset (SO_LINGER 0) or a FIN.
pub fn hang_up(tcp: TcpStream, reset: bool) -> io::Result<()> {
    if reset {
        tcp.set_zero_linger()?;
    }
    drop(tcp);
    Ok(())
}

/// `GET target` on a fresh connection, failing on anything but a 200.
pub async fn get_ok(addr: SocketAddr, target: &str) -> Result<Resp, String> {
    let mut conn = Conn::open(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let resp = conn
        .exchange("GET", target, &[])
        .await
        .map_err(|e| format!("GET {target}: {e}"))?;
    match resp.status {
        200 => Ok(resp),
        status => Err(format!("GET {target}: status {status}: {}", resp.text())),
    }
}

/// The library as `GET /api/tracks` lists it.
pub async fn list_tracks(addr: SocketAddr) -> Result<Vec<Track>, String> {
    let resp = get_ok(addr, "/api/tracks?limit=500").await?;
    let json: Value = serde_json::from_slice(&resp.body).map_err(|e| e.to_string())?;
    json["tracks"]
        .as_array()
        .ok_or_else(|| format!("no tracks in {json}"))?
        .iter()
        .map(Track::from_api)
        .collect()
}
