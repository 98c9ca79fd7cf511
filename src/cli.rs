//! Raw command-line flags (clap) and their defaults; the `config` module validates them
//! (`TryFrom` these structs).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Default bound of a bucket library's disk cache, in MiB.
pub const DEFAULT_CACHE_DIR_MIB: u64 = 10_240;
/// Default seconds between listings of a bucket library.
pub const DEFAULT_RESCAN_SECS: u64 = 5;
/// Default library directory, relative to the working directory.
pub const DEFAULT_LIBRARY: &str = "media/library";
/// Default ladder: HE-AAC for the low rung (it sounds better than AAC-LC at 64 kbit/s, and
/// Apple's authoring spec allows HE-AAC up to 64 kbit/s), AAC-LC above.
pub const DEFAULT_LADDER: &str = "he-aac:64k,aac-lc:128k,aac-lc:256k";
/// Default nominal segment duration in seconds (CDN-friendly).
pub const DEFAULT_SEGMENT_SECONDS: f64 = 4.0;
/// Default address-space limit of an ingest worker, in MiB: far above what a streaming
/// ingest uses (about 15 MiB resident, a few hundred MiB of address space with thread stacks
/// and malloc arenas), far below what would hurt the machine.
pub const DEFAULT_WORKER_MEMORY_MIB: u64 = 2048;
/// Default grace period of `segue gc`: longer than any ingest in flight.
pub const DEFAULT_GC_GRACE: &str = "24h";
/// Default address `segue serve` listens on.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8080";
/// Default `Access-Control-Allow-Origin`: any origin may fetch the media.
pub const DEFAULT_CORS_ORIGIN: &str = "*";
/// Default size of the server's in-memory cache of hot files, in MiB.
pub const DEFAULT_CACHE_MIB: u64 = 256;

/// segue: an audio-first HLS/DASH streaming server.
#[derive(Debug, Parser)]
#[command(name = "segue", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Decode audio files and package them into the library as an AAC ladder in CMAF with HLS
    /// and DASH manifests.
    Ingest(IngestArgs),
    /// List (or search) the tracks in the library.
    List(ListArgs),
    /// Rebuild the catalog index from the track directories.
    Reindex(LibraryArgs),
    /// Delete the objects under tracks/ that no committed track references (what killed or
    /// failed ingests left), once older than a grace period.
    Gc(GcArgs),
    /// Serve the library over HTTP (HLS, DASH, JSON API) until SIGINT or SIGTERM.
    Serve(ServeArgs),
    /// Ingest one file in this process under a memory limit and print the result as JSON
    /// (run by `ingest` and `serve --ingest` for each file; not for direct use).
    #[command(hide = true)]
    IngestWorker(IngestWorkerArgs),
}

/// Flags of the hidden `segue ingest-worker`.
#[derive(Debug, Args)]
pub struct IngestWorkerArgs {
    /// The whole `IngestConfig` as JSON, as the parent serialized it (`ingest::worker`).
    #[arg(long)]
    pub config: String,
    /// The file (an argument of its own: a file name need not be UTF-8, JSON text must).
    pub file: PathBuf,
}

/// The library location, shared by every subcommand.
#[derive(Debug, Args)]
pub struct LibraryArgs {
    /// Library: a directory, or s3://BUCKET[/PREFIX] (endpoint, region and credentials from
    /// the standard AWS_* variables).
    #[arg(long, default_value = DEFAULT_LIBRARY, env = "SEGUE_LIBRARY")]
    pub library: PathBuf,
}

impl LibraryArgs {
    /// The location `--library` names.
    pub fn location(
        &self,
    ) -> Result<crate::store::LibraryLocation, crate::store::location::LocationError> {
        crate::store::LibraryLocation::parse(self.library.as_os_str())
    }
}

/// Flags of `segue ingest`.
#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Library location.
    #[command(flatten)]
    pub library: LibraryArgs,
    /// ABR ladder as profile:bitrate pairs (profiles: aac-lc, he-aac, he-aac-v2).
    #[arg(long, default_value = DEFAULT_LADDER)]
    pub ladder: String,
    /// Nominal segment duration in seconds (the first segment is about 1 s).
    #[arg(long, default_value_t = DEFAULT_SEGMENT_SECONDS)]
    pub segment_seconds: f64,
    /// Files ingested in parallel (renditions of one file are always encoded in parallel).
    #[arg(long, short = 'j')]
    pub jobs: Option<usize>,
    /// Print one JSON object per input file on stdout instead of progress bars.
    #[arg(long)]
    pub json: bool,
    /// Turn off fdk-aac's afterburner (faster, slightly lower quality).
    #[arg(long)]
    pub no_afterburner: bool,
    /// Address-space limit of the process that ingests each file, in MiB (a hostile file that
    /// makes a decoder allocate without bound fails alone).
    #[arg(long, default_value_t = DEFAULT_WORKER_MEMORY_MIB)]
    pub worker_memory_mib: u64,
    /// Audio files or directories (walked recursively for audio files).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
}

/// Flags of `segue list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Library location.
    #[command(flatten)]
    pub library: LibraryArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Words to search for in title, artist and album.
    pub query: Vec<String>,
}

/// Flags of `segue gc`.
#[derive(Debug, Args)]
pub struct GcArgs {
    /// Library location.
    #[command(flatten)]
    pub library: LibraryArgs,
    /// Grace period: only objects last written longer ago than this are deleted, so an ingest
    /// in flight is never touched (a whole number and s, m, h or d: 30s, 15m, 24h, 7d).
    #[arg(long, default_value = DEFAULT_GC_GRACE, value_name = "AGE")]
    pub older_than: String,
    /// Print what would be deleted, delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print one JSON object instead of lines.
    #[arg(long)]
    pub json: bool,
}

/// Flags of `segue serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Library location.
    #[command(flatten)]
    pub library: LibraryArgs,
    /// Address to listen on, IP:PORT (port 0 picks a free port).
    #[arg(long, default_value = DEFAULT_ADDR, env = "SEGUE_ADDR")]
    pub addr: String,
    /// Access-Control-Allow-Origin of every response: * or one origin.
    #[arg(long, default_value = DEFAULT_CORS_ORIGIN)]
    pub cors_origin: String,
    /// Size of the in-memory cache of hot files, in MiB (0 disables it).
    #[arg(long, default_value_t = DEFAULT_CACHE_MIB)]
    pub cache_mib: u64,
    /// A bucket library's local disk cache of objects (and its catalog index), kept across
    /// restarts; without it, objects are cached in memory only.
    #[arg(long, value_name = "DIR", env = "SEGUE_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Bound of the disk cache, in MiB; least recently used objects are evicted.
    #[arg(long, default_value_t = DEFAULT_CACHE_DIR_MIB)]
    pub cache_dir_mib: u64,
    /// Seconds between listings of a bucket library for tracks other machines ingested.
    #[arg(long, default_value_t = DEFAULT_RESCAN_SECS)]
    pub rescan_secs: u64,
    /// Require signed URLs for media and the control channel, with this HMAC key (16 bytes or
    /// more); the API then hands out signed URLs.
    #[arg(long, env = "SEGUE_SIGNING_KEY", hide_env_values = true)]
    pub signing_key: Option<String>,
    /// Shortest life of a signed URL, in seconds (rounded up to the next hour).
    #[arg(long, default_value_t = 6 * 3600)]
    pub token_ttl_secs: u64,
    /// Another origin whose pages may open the WebSocket control channel (repeatable; `*`
    /// allows any). The server's own origin is always allowed.
    #[arg(long, value_name = "ORIGIN")]
    pub ws_origin: Vec<String>,
    /// Seconds between WebSocket pings; a peer silent for three of them is dropped.
    #[arg(long, default_value_t = 15)]
    pub ws_heartbeat_secs: u64,
    /// Control commands allowed per second and connection (twice that as a burst).
    #[arg(long, default_value_t = 20)]
    pub ws_rate: u32,
    /// Share control sessions with the other origins of a fleet through this Redis
    /// (`redis://HOST:PORT[/DB]`); without it sessions live in this process. Bus messages are
    /// sealed with the key in the environment variable SEGUE_BUS_KEY (16 bytes or more, the
    /// same on every origin).
    #[arg(long, value_name = "URL", env = "SEGUE_BUS")]
    pub bus: Option<String>,
    /// Seconds a control session with no device is kept (a device that comes back finds it).
    #[arg(long, default_value_t = 6 * 3600)]
    pub session_ttl_secs: u64,
    /// Serve `/ws/echo`, a WebSocket echo for the Autobahn conformance cases (testing only).
    #[arg(long, hide = true)]
    pub ws_conformance_echo: bool,
    /// Ingest these files or directories (default ladder) before serving; files already in the
    /// library are skipped, so `serve --ingest media/samples` can be run again and again.
    #[arg(long, value_name = "FILE_OR_DIR")]
    pub ingest: Vec<PathBuf>,
}
