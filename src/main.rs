//! The `segue` binary: parse the command line, start tracing, run.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use segue::catalog::Catalog;
use segue::cli::{Cli, Command, IngestArgs, ListArgs};
use segue::config::IngestConfig;
use segue::ingest::batch::ingest_batch;
use segue::report::{JsonObserver, TerminalObserver};
use segue::store::LibraryLayout;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    // Panics inside an ingest are caught and reported for their file; keep them out of the
    // terminal except in the log.
    std::panic::set_hook(Box::new(|info| tracing::error!("panic: {info}")));
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Ingest(args) => ingest(args),
        Command::List(args) => list(args),
        Command::Reindex(args) => {
            let layout = LibraryLayout::new(&args.library);
            layout
                .create()
                .with_context(|| format!("library {}", args.library.display()))?;
            let mut catalog = Catalog::open(&layout)?;
            let report = catalog.rebuild()?;
            println!(
                "indexed {} tracks ({} unreadable)",
                report.added,
                report.unreadable.len()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn ingest(args: IngestArgs) -> anyhow::Result<ExitCode> {
    let mut config = IngestConfig::new(
        args.library.library,
        &args.ladder,
        args.segment_seconds,
        args.jobs,
    )?;
    config.afterburner = !args.no_afterburner;
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

fn list(args: ListArgs) -> anyhow::Result<ExitCode> {
    let layout = LibraryLayout::new(&args.library.library);
    layout.create()?;
    let catalog = Catalog::open(&layout)?;
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
