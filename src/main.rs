//! The `segue` binary: parse the command line, start tracing, run.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use segue::catalog::Catalog;
use segue::cli::{
    Cli, Command, GcArgs, IngestArgs, IngestWorkerArgs, LibraryArgs, ListArgs, ServeArgs,
};
use segue::config::{IngestConfig, ServeConfig};
use segue::ingest::batch::ingest_batch;
use segue::report::{JsonObserver, TerminalObserver};
use segue::store::Library;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The server's access log is on by default; the other commands only warn.
    let default_filter = match cli.command {
        Command::Serve(_) => "warn,segue=info,tower_http=info",
        _ => "warn",
    };
    // The server's log lines are written by a thread of their own, in batches: written from
    // the request's thread, one unbuffered write(2) per line was a tenth of the server's CPU
    // per request with the access log on (perf, under wrk), and the stderr lock the workers
    // shared stretched the p99. Lossless: a writer that falls 128 Ki lines behind slows the
    // loggers down rather than drop lines. The guard, dropped when `main` returns, writes out
    // what is queued. The other commands log little and run ingest workers under tight memory
    // limits, where a thread and its queue are not worth their address space: they write
    // straight to stderr.
    let (log_writer, _log_guard) = match cli.command {
        Command::Serve(_) => {
            let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
                .lossy(false)
                .thread_name("segue-log")
                .finish(std::io::BufWriter::new(std::io::stderr()));
            (BoxMakeWriter::new(writer), Some(guard))
        }
        _ => (BoxMakeWriter::new(std::io::stderr), None),
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_writer(log_writer)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    // Panics inside an ingest are caught and reported for their file; keep them out of the
    // terminal except in the log.
    std::panic::set_hook(Box::new(|info| tracing::error!("panic: {info}")));
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::from(2)
        }
    }
}

/// The error and its causes on one line, each cause once: the library's error messages already
/// include their source, which anyhow's `{:#}` would print a second time.
fn error_chain(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain().map(ToString::to_string) {
        if !text.contains(&cause) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&cause);
        }
    }
    text
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Ingest(args) => ingest(args),
        Command::List(args) => list(args),
        Command::Reindex(args) => reindex(args),
        Command::Gc(args) => gc(args),
        Command::Serve(args) => serve(args),
        Command::IngestWorker(args) => ingest_worker(args),
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = ServeConfig::try_from(&args)?;
    if !args.ingest.is_empty() {
        let ingest = IngestConfig::serve_defaults(config.library.clone())?;
        let observer = TerminalObserver::default();
        let reports = ingest_batch(&args.ingest, &ingest, &observer)?;
        observer.finish();
        let failed = reports.iter().filter(|r| r.result.is_err()).count();
        if failed > 0 {
            eprintln!(
                "{failed} of {} files failed to ingest; serving the rest",
                reports.len()
            );
        }
    }
    let state = segue::server::AppState::new(&config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.addr)
            .await
            .with_context(|| format!("listen on {}", config.addr))?;
        let addr = listener.local_addr()?;
        // Hook the signals before announcing the address, so a SIGTERM sent as soon as the line
        // is read already shuts down gracefully.
        let shutdown = segue::server::shutdown_signal();
        // The one line on stdout: scripts and tests read the real port from it.
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening on http://{addr}")?;
        stdout.flush()?;
        drop(stdout);
        segue::server::serve(listener, state, shutdown).await?;
        Ok(ExitCode::SUCCESS)
    })
}

/// The hidden `ingest-worker` subcommand (see `ingest::worker`).
fn ingest_worker(args: IngestWorkerArgs) -> anyhow::Result<ExitCode> {
    Ok(segue::ingest::worker::worker_main(&args.file, &args.config))
}

fn ingest(args: IngestArgs) -> anyhow::Result<ExitCode> {
    let config = IngestConfig::try_from(&args)?;
    let reports = if args.json {
        ingest_batch(&args.inputs, &config, &JsonObserver)?
    } else {
        let observer = TerminalObserver::default();
        let reports = ingest_batch(&args.inputs, &config, &observer)?;
        observer.finish();
        reports
    };
    let failed = reports.iter().filter(|r| r.result.is_err()).count();
    if !args.json {
        eprintln!(
            "{} files: {} ok, {} failed",
            reports.len(),
            reports.len() - failed,
            failed
        );
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The library `args` names, ready to be read (or written).
fn open_library(args: &LibraryArgs, write: bool) -> anyhow::Result<Library> {
    let location = args.location()?;
    let library = Library::new(&location, None).with_context(|| format!("library {location}"))?;
    let opened = if write {
        library.open_for_writing()
    } else {
        library.open_for_reading()
    };
    opened.with_context(|| format!("library {location}"))?;
    Ok(library)
}

fn reindex(args: LibraryArgs) -> anyhow::Result<ExitCode> {
    let library = open_library(&args, true)?;
    let mut catalog = Catalog::open(&library)?;
    let report = catalog.rebuild()?;
    println!(
        "indexed {} tracks ({} unreadable)",
        report.added,
        report.unreadable.len()
    );
    Ok(ExitCode::SUCCESS)
}

fn list(args: ListArgs) -> anyhow::Result<ExitCode> {
    let library = open_library(&args.library, false)?;
    let catalog = Catalog::open_readable(&library)?;
    let page = catalog.search(&args.query.join(" "), 0, 10_000)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&page.tracks)?);
    } else {
        for t in &page.tracks {
            println!(
                "{}  {:>8.3}s  {} - {} - {}",
                t.id,
                t.duration_seconds(),
                t.artist.as_deref().unwrap_or("?"),
                t.album.as_deref().unwrap_or("?"),
                t.title
            );
        }
        eprintln!("{} tracks", page.total);
    }
    Ok(ExitCode::SUCCESS)
}

/// `segue gc`: exit 0, or 1 when some deletes failed (a library that cannot be listed or read
/// is an error: 2, and nothing is deleted).
fn gc(args: GcArgs) -> anyhow::Result<ExitCode> {
    use segue::gc;
    let grace = gc::parse_age(&args.older_than)?;
    let library = open_library(&args.library, true)?;
    let location = library.location();
    let listing = gc::list_objects(&library).with_context(|| format!("library {location}"))?;
    let committed =
        gc::read_committed(&library, &listing).with_context(|| format!("library {location}"))?;
    let plan = gc::plan(listing, &committed, std::time::SystemTime::now(), grace);
    let outcomes = if args.dry_run {
        plan.delete
            .iter()
            .cloned()
            .map(|object| gc::Deleted {
                object,
                error: None,
            })
            .collect()
    } else {
        gc::delete(&library, plan.delete.clone())
    };
    let done: Vec<_> = outcomes.iter().filter(|d| d.error.is_none()).collect();
    let failed: Vec<_> = outcomes.iter().filter(|d| d.error.is_some()).collect();
    let bytes: u64 = done.iter().map(|d| d.object.size).sum();
    let verb = if args.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    if args.json {
        let objects = |list: &[&gc::Deleted]| -> Vec<serde_json::Value> {
            list.iter()
                .map(|d| {
                    serde_json::json!({
                        "key": d.object.key,
                        "size": d.object.size,
                        "error": d.error,
                    })
                })
                .collect()
        };
        let summary = serde_json::json!({
            "library": location,
            "dry_run": args.dry_run,
            "older_than_secs": grace.as_secs(),
            "deleted": objects(&done),
            "failed": objects(&failed),
            "objects": done.len(),
            "bytes": bytes,
            "kept_referenced": plan.referenced,
            "kept_recent": plan.recent,
            "kept_foreign": plan.foreign,
        });
        println!("{summary}");
    } else {
        for d in &done {
            println!("{verb} {} ({} bytes)", d.object.key, d.object.size);
        }
        for d in &failed {
            eprintln!(
                "failed to delete {}: {}",
                d.object.key,
                d.error.as_deref().unwrap_or("?")
            );
        }
        println!(
            "{verb} {} objects, {bytes} bytes; kept {} referenced, {} recent{}",
            done.len(),
            plan.referenced,
            plan.recent,
            if failed.is_empty() {
                String::new()
            } else {
                format!("; {} failed", failed.len())
            }
        );
    }
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
