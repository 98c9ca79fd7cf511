//! Many files: walk the inputs, ingest them on `--jobs` worker threads, index each finished
//! track, and report per file. A failure (or a panic in a decoder) is an error for that file
//! only; the batch goes on.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::error::IngestError;
use super::panic_message;
use super::pipeline::{IngestOutcome, Progress, ingest_file};
use super::worker::ingest_in_worker;
use crate::catalog::{Catalog, CatalogError};
use crate::config::IngestConfig;
use crate::store::{Library, StoreError};

/// File extensions picked up when walking a directory (files named explicitly are always tried).
pub const AUDIO_EXTENSIONS: &[&str] = &[
    "mp3", "flac", "wav", "wave", "aif", "aiff", "aifc", "ogg", "oga", "m4a", "m4b", "mp4", "aac",
    "adts", "opus",
];

/// Errors that stop a batch before any file is tried.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// The library cannot be created or opened.
    #[error("library {location}: {source}")]
    Library {
        /// The library's directory or bucket URL.
        location: String,
        /// Why.
        #[source]
        source: StoreError,
    },
    /// The catalog cannot be opened.
    #[error("catalog: {0}")]
    Catalog(#[from] CatalogError),
}

/// The result for one input file.
#[derive(Debug)]
pub struct FileReport {
    /// The input file.
    pub file: PathBuf,
    /// What happened.
    pub result: Result<IngestOutcome, IngestError>,
}

/// Receives batch events (progress bars, JSON lines...). Called from worker threads.
pub trait BatchObserver: Sync {
    /// The inputs were expanded to this many files.
    fn planned(&self, files: &[PathBuf]);
    /// A file started; returns the progress sink for it.
    fn started(&self, file: &Path) -> Box<dyn Progress + '_>;
    /// A file finished.
    fn finished(&self, report: &FileReport);
}

/// Expands files and directories (recursively, audio extensions only, sorted) into files.
/// Inputs that do not exist are returned too, and so are directories that cannot be listed,
/// so they are reported as errors rather than skipped.
pub fn expand_inputs(inputs: &[PathBuf]) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for input in inputs {
        if input.is_dir() {
            walk(input, &mut files);
        } else {
            files.push(input.clone());
        }
    }
    files
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
    let listed = std::fs::read_dir(dir).and_then(|entries| {
        entries
            .map(|entry| entry.map(|e| e.path()))
            .collect::<std::io::Result<Vec<PathBuf>>>()
    });
    let Ok(mut paths) = listed else {
        // The directory itself, which `ingest_one` reports with the listing's error.
        files.push(dir.to_path_buf());
        return;
    };
    paths.sort();
    for path in paths {
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        if path.is_dir() {
            walk(&path, files);
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| AUDIO_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        {
            files.push(path);
        }
    }
}

/// Ingests every input; returns one report per file, in input order.
pub fn ingest_batch(
    inputs: &[PathBuf],
    config: &IngestConfig,
    observer: &dyn BatchObserver,
) -> Result<Vec<FileReport>, BatchError> {
    let library_error = |source| BatchError::Library {
        location: config.library.to_string(),
        source,
    };
    let library = Library::new(&config.library, None).map_err(library_error)?;
    // Up front, so a read-only library or an unusable bucket fails once, clearly, before any
    // work or change.
    library.open_for_writing().map_err(library_error)?;
    let catalog = Mutex::new(Catalog::open(&library)?);
    let files = expand_inputs(inputs);
    observer.planned(&files);
    let queue = Mutex::new(files.iter().cloned().enumerate().collect::<VecDeque<_>>());
    let reports = Mutex::new(Vec::with_capacity(files.len()));
    let workers = config.jobs.min(files.len()).max(1);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
                    let Some((index, file)) = next else { break };
                    let report = ingest_one(&file, config, &library, &catalog, observer);
                    observer.finished(&report);
                    reports
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((index, report));
                }
            });
        }
    });
    // Again at the end: a writer killed just before this run (its staging still locked while
    // its threads were dying) has released its lock by now.
    library.sweep_staging();
    let mut reports = reports.into_inner().unwrap_or_else(|p| p.into_inner());
    reports.sort_by_key(|(i, _)| *i);
    Ok(reports.into_iter().map(|(_, r)| r).collect())
}

/// Why the directory `dir` cannot be listed.
fn unlisted(dir: &Path) -> std::io::Error {
    match std::fs::read_dir(dir).and_then(|entries| entries.collect::<Result<Vec<_>, _>>()) {
        Err(e) => e,
        Ok(_) => std::io::Error::other("the directory could not be listed"),
    }
}

fn ingest_one(
    file: &Path,
    config: &IngestConfig,
    library: &Library,
    catalog: &Mutex<Catalog>,
    observer: &dyn BatchObserver,
) -> FileReport {
    let progress = observer.started(file);
    let result = if file.is_dir() {
        // A directory is an input only when it could not be listed (see `walk`).
        Err(IngestError::Read(unlisted(file)))
    } else {
        catch_unwind(AssertUnwindSafe(|| match &config.worker {
            Some(worker) => ingest_in_worker(file, config, worker, library, progress.as_ref()),
            None => ingest_file(file, config, library, progress.as_ref()),
        }))
        .unwrap_or_else(|panic| {
            Err(IngestError::Internal(format!(
                "panicked while ingesting: {}",
                panic_message(panic.as_ref())
            )))
        })
    };
    drop(progress);
    // Index the track. A failure (a full disk) leaves complete files that the next reconcile
    // indexes, but a running server does not list the track until then: the file fails.
    let result = result.and_then(|outcome| {
        let mut catalog = catalog.lock().unwrap_or_else(|p| p.into_inner());
        let indexed = match &outcome {
            IngestOutcome::Ingested(record) => catalog.upsert(record),
            // Already on disk: index it only if an earlier run died before indexing.
            IngestOutcome::AlreadyPresent(id) => match catalog.get(id) {
                Ok(Some(_)) => Ok(()),
                _ => catalog.reconcile().map(|_| ()),
            },
        };
        match indexed {
            Ok(()) => Ok(outcome),
            Err(source) => Err(IngestError::Index {
                id: outcome.id().to_string(),
                source,
            }),
        }
    });
    FileReport {
        file: file.to_path_buf(),
        result,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_that_cannot_be_listed_is_an_input_not_a_silent_skip() {
        let dir = tempfile::tempdir().unwrap();
        let song = dir.path().join("a.flac");
        std::fs::write(&song, b"").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"").unwrap();
        assert_eq!(expand_inputs(&[dir.path().into()]), vec![song.clone()]);
        // Listing a file as a directory fails (ENOTDIR), as an unreadable directory does.
        let mut files = Vec::new();
        walk(&song, &mut files);
        assert_eq!(files, vec![song.clone()]);
        assert_eq!(
            unlisted(&song).kind(),
            std::io::ErrorKind::NotADirectory,
            "the listing's own error"
        );
    }
}
