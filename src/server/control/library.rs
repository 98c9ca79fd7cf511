//! Announces tracks that an ingest adds while the server runs (`library` messages).
//!
//! `segue ingest` writes the catalog from another process, so the server polls SQLite's
//! `data_version` (a counter that moves when another connection commits; reading it costs
//! nothing) and, when it moved, compares the track ids with the ones it knew.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use super::ControlHub;
use super::protocol::ServerMessage;
use crate::server::AppState;
use crate::server::error::ApiError;
use crate::server::view::Track;

/// The catalog's version and track ids as last seen.
type Seen = (u64, HashSet<String>);

/// What the catalog holds now: the baseline [`watch`] announces additions against. Taken
/// before the server accepts its first connection, so that every track ingested once the
/// server is up gets announced; `None` if the catalog cannot be read (then the first scan
/// that can read it becomes the baseline).
pub async fn baseline(state: &AppState) -> Option<Seen> {
    match scan(state, None).await {
        Ok(seen) => seen,
        Err(e) => {
            tracing::warn!(error = %e, "library watch: catalog unreadable");
            None
        }
    }
}

/// The catalog's version and ids, or `None` if its version is still `previous`.
async fn scan(state: &AppState, previous: Option<u64>) -> Result<Option<Seen>, ApiError> {
    let scan = state
        .with_catalog(move |catalog| {
            let version = catalog.data_version()?;
            if previous == Some(version) {
                return Ok(None);
            }
            Ok(Some((version, catalog.ids()?)))
        })
        .await?;
    Ok(scan.map(|(version, ids)| (version, ids.into_iter().collect())))
}

/// Polls the catalog every `every` until the hub shuts down, broadcasting the tracks added
/// since `known` (see [`baseline`]).
pub async fn watch(
    state: AppState,
    hub: Arc<ControlHub>,
    every: Duration,
    mut known: Option<Seen>,
) {
    let mut shutdown = hub.shutdown_signal();
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate, and the baseline was just taken.
    ticker.tick().await;
    loop {
        tokio::select! {
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow_and_update() {
                    return;
                }
                continue;
            }
            _ = ticker.tick() => {}
        }
        let previous = known.as_ref().map(|(version, _)| *version);
        let (version, ids) = match scan(&state, previous).await {
            Ok(Some(scan)) => scan,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "library watch: catalog unreadable");
                continue;
            }
        };
        let added: Vec<String> = match &known {
            // The first scan only learns what is there.
            None => Vec::new(),
            Some((_, old)) => ids.difference(old).cloned().collect(),
        };
        known = Some((version, ids));
        if added.is_empty() {
            continue;
        }
        let signer = state.signer().clone();
        let tracks = state
            .with_catalog(move |catalog| {
                let mut tracks = Vec::new();
                for id in &added {
                    if let Some(record) = catalog.get(id)? {
                        tracks.push(Track::for_client(&record, &signer));
                    }
                }
                Ok(tracks)
            })
            .await;
        match tracks {
            Ok(added) if !added.is_empty() => {
                tracing::info!(count = added.len(), "library: announcing new tracks");
                hub.broadcast_all(&ServerMessage::Library { added });
                // The other origins of a fleet rescan now rather than at their next tick.
                hub.announce_library().await;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "library watch: catalog unreadable"),
        }
    }
}
