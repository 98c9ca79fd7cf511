//! How `segue ingest` reports to people and scripts: progress bars on a terminal, one line per
//! file otherwise, or one JSON object per file with `--json`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::ingest::batch::{BatchObserver, FileReport};
use crate::ingest::error::IngestErrorKind;
use crate::ingest::pipeline::{IngestOutcome, Progress};

/// The JSON line printed per input with `--json`.
#[derive(Debug, Serialize)]
pub struct JsonReport<'a> {
    /// The input file.
    pub file: String,
    /// `ok` or `error`.
    pub status: &'static str,
    /// Track id when ok.
    pub id: Option<&'a str>,
    /// Whether the track was already in the library (nothing written).
    pub existing: bool,
    /// What kind of failure when status is `error`: a stable snake_case name for scripts.
    pub kind: Option<IngestErrorKind>,
    /// The reason when status is `error`.
    pub error: Option<String>,
}

impl<'a> JsonReport<'a> {
    /// Builds the JSON report of a file.
    pub fn of(report: &'a FileReport) -> Self {
        let file = report.file.display().to_string();
        match &report.result {
            Ok(outcome) => JsonReport {
                file,
                status: "ok",
                id: Some(outcome.id()),
                existing: matches!(outcome, IngestOutcome::AlreadyPresent(_)),
                kind: None,
                error: None,
            },
            Err(e) => JsonReport {
                file,
                status: "error",
                id: None,
                existing: false,
                kind: Some(e.kind()),
                error: Some(e.to_string()),
            },
        }
    }
}

/// One line of text for a finished file.
pub fn text_line(report: &FileReport) -> String {
    match &report.result {
        Ok(IngestOutcome::Ingested(r)) => format!(
            "ok      {}  {} ({:.3} s, {} renditions)",
            report.file.display(),
            r.id,
            r.duration_seconds(),
            r.renditions.len()
        ),
        Ok(IngestOutcome::AlreadyPresent(id)) => format!("exists  {}  {id}", report.file.display()),
        Err(e) => format!("error   {}: {e}", report.file.display()),
    }
}

/// Prints JSON lines on stdout.
pub struct JsonObserver;

impl BatchObserver for JsonObserver {
    fn planned(&self, _: &[PathBuf]) {}
    fn started(&self, _: &Path) -> Box<dyn Progress + '_> {
        Box::new(())
    }
    fn finished(&self, report: &FileReport) {
        if let Ok(line) = serde_json::to_string(&JsonReport::of(report)) {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
        }
    }
}

/// Progress bars on a terminal (one per file in flight, one overall), or plain lines when
/// stderr is not a terminal.
pub struct TerminalObserver {
    multi: MultiProgress,
    overall: Mutex<Option<ProgressBar>>,
}

impl Default for TerminalObserver {
    fn default() -> Self {
        let target = ProgressDrawTarget::stderr();
        TerminalObserver {
            multi: MultiProgress::with_draw_target(target),
            overall: Mutex::new(None),
        }
    }
}

struct FileBar(ProgressBar);

impl Progress for FileBar {
    fn advance(&self, decoded: u64, total: Option<u64>) {
        if let Some(total) = total
            && self.0.length() != Some(total)
        {
            self.0.set_length(total);
        }
        self.0.set_position(decoded);
    }
}

impl Drop for FileBar {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

impl BatchObserver for TerminalObserver {
    fn planned(&self, files: &[PathBuf]) {
        let bar = self.multi.add(ProgressBar::new(files.len() as u64));
        bar.set_style(
            ProgressStyle::with_template("{prefix:>8} [{bar:30}] {pos}/{len} files {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix("total");
        *self.overall.lock().unwrap_or_else(|p| p.into_inner()) = Some(bar);
    }

    fn started(&self, file: &Path) -> Box<dyn Progress + '_> {
        let bar = self.multi.insert_from_back(1, ProgressBar::new(0));
        bar.set_style(
            ProgressStyle::with_template("{prefix:>8} [{bar:30}] {percent:>3}% {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix("file");
        bar.set_message(
            file.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        Box::new(FileBar(bar))
    }

    fn finished(&self, report: &FileReport) {
        let line = text_line(report);
        if self.multi.is_hidden() {
            eprintln!("{line}");
        } else {
            let _ = self.multi.println(line);
        }
        if let Some(bar) = self
            .overall
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            bar.inc(1);
        }
    }
}

impl TerminalObserver {
    /// Clears the bars.
    pub fn finish(&self) {
        if let Some(bar) = self
            .overall
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            bar.finish_and_clear();
        }
    }
}
