//! The WebSocket side of the soak: devices that join a few shared sessions, send commands
//! (load, play, seek, next, report, …) and read every event, then leave (a close handshake or
//! a dropped socket) and come back; and one watcher that stays connected for the whole run and
//! collects the `library` events the ingests cause.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{WebSocketStream, client_async};

use super::http::hang_up;
use super::shared::{Dice, Shared, Tally, lock};

/// Longest wait for a handshake, a welcome or a close reply.
const WAIT: Duration = Duration::from_secs(15);
/// Length of every queue the devices load, so an index from any state is valid in any queue.
const QUEUE_LEN: usize = 4;

type Socket = WebSocketStream<TcpStream>;

/// Opens `/ws` offering `segue.control.v1`.
async fn open(addr: SocketAddr, tally: &Tally) -> Result<Socket, String> {
    let mut request = format!("ws://{addr}/ws")
        .into_client_request()
        .map_err(|e| e.to_string())?;
    request.headers_mut().insert(
        "sec-websocket-protocol",
        axum::http::HeaderValue::from_static("segue.control.v1"),
    );
    let handshake = async {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        client_async(request, tcp)
            .await
            .map_err(|e| format!("handshake: {e}"))
    };
    let (socket, _) = tokio::time::timeout(WAIT, handshake)
        .await
        .map_err(|_| "no handshake in 15 s".to_string())??;
    Tally::bump(&tally.ws_connections);
    Ok(socket)
}

/// Sends one JSON message.
async fn send(socket: &mut Socket, tally: &Tally, message: Value) -> Result<(), String> {
    Tally::bump(&tally.ws_sent);
    tokio::time::timeout(WAIT, socket.send(Message::text(message.to_string())))
        .await
        .map_err(|_| "send blocked for 15 s".to_string())?
        .map_err(|e| format!("send: {e}"))
}

/// The JSON of a text frame; `None` for pings and pongs; an error when the connection ends.
fn text_of(
    message: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    tally: &Tally,
) -> Result<Option<Value>, String> {
    match message {
        Some(Ok(Message::Text(text))) => {
            Tally::bump(&tally.ws_received);
            serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| format!("bad JSON from the server ({e}): {text}"))
        }
        Some(Ok(Message::Close(frame))) => Err(format!("closed by the server: {frame:?}")),
        Some(Ok(_)) => Ok(None),
        Some(Err(e)) => Err(format!("connection failed: {e}")),
        None => Err("connection ended".into()),
    }
}

/// A device of session `session`: visits of a few seconds each, until the gate says stop.
pub async fn device(shared: Arc<Shared>, addr: SocketAddr, seed: u64, session: String) {
    let mut dice = Dice::new(seed);
    while let Some(turn) = shared.gate.enter().await {
        if let Err(e) = visit(&shared, addr, &mut dice, &session).await {
            shared.tally.fail(format!("device in {session}: {e}"));
        }
        drop(turn);
        tokio::time::sleep(dice.millis(50, 500)).await;
    }
}

/// What a device knows of its session.
#[derive(Default)]
struct Seen {
    me: Option<String>,
    active: Option<String>,
    index: usize,
}

/// One visit: join, a command every 150-300 ms (well under the 20/s rate limit) while reading
/// everything the server sends, then leave.
async fn visit(
    shared: &Shared,
    addr: SocketAddr,
    dice: &mut Dice,
    session: &str,
) -> Result<(), String> {
    let tally = &shared.tally;
    let mut socket = open(addr, tally).await?;
    let hello = json!({"type":"hello","device":{"name":format!("soak {}", dice.below(1000))},"session":session});
    send(&mut socket, tally, hello).await?;
    let started = Instant::now();
    let stay = dice.millis(2_000, 12_000);
    let mut tick = tokio::time::interval(dice.millis(150, 300));
    let mut seen = Seen::default();
    let mut sent = 0u64;
    loop {
        tokio::select! {
            message = socket.next() => {
                if let Some(value) = text_of(message, tally)? {
                    read_event(&value, &mut seen, tally)?;
                }
            }
            _ = tick.tick() => {
                if shared.gate.must_yield() || started.elapsed() >= stay {
                    break;
                }
                if seen.me.is_none() {
                    if started.elapsed() > WAIT {
                        return Err("no welcome in 15 s".into());
                    }
                    continue;
                }
                sent += 1;
                let command = command(dice, shared, &seen, sent);
                send(&mut socket, tally, command).await?;
            }
        }
    }
    leave(socket, dice.one_in(2), dice.one_in(2)).await
}

/// Takes in one server message.
fn read_event(value: &Value, seen: &mut Seen, tally: &Tally) -> Result<(), String> {
    match value["type"].as_str() {
        Some("welcome") => seen.me = value["device"].as_str().map(str::to_string),
        Some("state") => {
            seen.active = value["active_device"].as_str().map(str::to_string);
            seen.index = value["index"].as_u64().unwrap_or(0) as usize;
        }
        Some("prefetch") => Tally::bump(&tally.prefetch_events),
        Some("library") => {}
        // A report races with another device's transfer: the only error a valid command meets.
        Some("error") if value["code"] == "not_active" => Tally::bump(&tally.not_active),
        _ => return Err(format!("unexpected message: {value}")),
    }
    Ok(())
}

/// The next command: a `load` first, then any other, all valid for a queue of [`QUEUE_LEN`].
fn command(dice: &mut Dice, shared: &Shared, seen: &Seen, id: u64) -> Value {
    let tracks = shared.tracks.snapshot();
    let mut command = match dice.below(11) {
        _ if id == 1 => Value::Null,
        0 => Value::Null,
        1 => json!({"type":"play"}),
        2 => json!({"type":"pause"}),
        3 => json!({"type":"seek","position":dice.below(9) as f64 + 0.25}),
        4 => json!({"type":"next"}),
        5 => json!({"type":"previous"}),
        6 => json!({"type":"jump","index":dice.below(QUEUE_LEN)}),
        7 => json!({"type":"volume","level":dice.below(101) as f64 / 100.0}),
        8 => json!({"type":"transfer","play":true}),
        _ if seen.active.is_some() && seen.active == seen.me => json!({
            "type":"report","index":seen.index,"position":dice.below(5) as f64 + 0.5,
            "playing":true,"buffered":8.0,"bandwidth":dice.within(64_000, 4_000_000)
        }),
        _ => json!({"type":"seek","position":0.5}),
    };
    if command.is_null() {
        let queue: Vec<&str> = (0..QUEUE_LEN)
            .map(|_| dice.pick(&tracks).id.as_str())
            .collect();
        command = json!({"type":"load","tracks":queue,"index":dice.below(QUEUE_LEN)});
    }
    command["id"] = json!(id);
    command
}

/// Leaves: a close handshake (waiting for the server's Close) or a dropped socket, which may
/// be a reset.
async fn leave(mut socket: Socket, handshake: bool, reset: bool) -> Result<(), String> {
    if handshake {
        socket
            .close(None)
            .await
            .map_err(|e| format!("close: {e}"))?;
        let reply = tokio::time::timeout(WAIT, async {
            while let Some(Ok(message)) = socket.next().await {
                if matches!(message, Message::Close(_)) {
                    return true;
                }
            }
            false
        })
        .await;
        return match reply {
            Ok(true) => Ok(()),
            Ok(false) => Err("the connection ended without a Close reply".into()),
            Err(_) => Err("no Close reply in 15 s".into()),
        };
    }
    hang_up(socket.into_inner(), reset).map_err(|e| e.to_string())
}

/// The watcher: joined from the start to `stop`, it records every track a `library` event
/// announces in [`Shared::announced`]; `connected` fires once it has its welcome.
pub async fn watcher(
    shared: Arc<Shared>,
    addr: SocketAddr,
    connected: oneshot::Sender<()>,
    mut stop: oneshot::Receiver<()>,
) -> Result<(), String> {
    let tally = &shared.tally;
    let mut socket = open(addr, tally).await?;
    let hello = json!({"type":"hello","device":{"name":"watcher"},"session":"soak-watch"});
    send(&mut socket, tally, hello).await?;
    let mut connected = Some(connected);
    loop {
        tokio::select! {
            message = socket.next() => {
                let Some(value) = text_of(message, tally)? else { continue };
                match value["type"].as_str() {
                    Some("welcome") => {
                        if let Some(connected) = connected.take() {
                            let _ = connected.send(());
                        }
                    }
                    Some("library") => {
                        Tally::bump(&tally.library_events);
                        let added = value["added"].as_array().into_iter().flatten();
                        let mut announced = lock(&shared.announced);
                        announced.extend(added.filter_map(|t| t["id"].as_str().map(str::to_string)));
                    }
                    Some("state") => {}
                    _ => return Err(format!("watcher: unexpected message: {value}")),
                }
            }
            _ = &mut stop => break,
        }
    }
    leave(socket, true, false).await
}
