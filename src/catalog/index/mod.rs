//! The SQLite catalog index: a rebuildable view of the `tracks/<id>/track.json` files, which stay
//! the truth. The database runs in WAL mode, so a server reading it while an ingest writes sees
//! new tracks on its next query without a restart; every write is one immediate transaction, and
//! [`Catalog::reconcile`] (run on every open) makes the index equal to the track directories again
//! after any crash. A corrupt database file is moved aside and rebuilt, which loses nothing.

use std::collections::HashSet;
use std::error::Error;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use std::{fs, io};

use rusqlite::TransactionBehavior::Immediate;
use rusqlite::types::Value;
use rusqlite::{Connection, ErrorCode, OptionalExtension, Transaction, params_from_iter};
use rustix::io::Errno;

use crate::catalog::model::TrackRecord;
use crate::store::{Library, StoreError};

/// Version of the index schema; a database stamped otherwise is recreated on open.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
    DROP TRIGGER IF EXISTS tracks_ai; DROP TRIGGER IF EXISTS tracks_ad;
    DROP TRIGGER IF EXISTS tracks_au; DROP TABLE IF EXISTS tracks_fts; DROP TABLE IF EXISTS tracks;
    CREATE TABLE tracks (id TEXT PRIMARY KEY NOT NULL, title TEXT NOT NULL, artist TEXT,
        album TEXT, track_number INTEGER, year INTEGER, duration_samples INTEGER NOT NULL,
        sample_rate INTEGER NOT NULL, record_json TEXT NOT NULL);
    CREATE INDEX tracks_order ON tracks (artist COLLATE NOCASE, album COLLATE NOCASE,
        track_number, title COLLATE NOCASE, id);";

/// External-content FTS5 index over `tracks` (by rowid, which upserts keep), kept in sync by
/// triggers so it changes in the same transaction as the rows.
const FTS_SCHEMA: &str = "
    CREATE VIRTUAL TABLE tracks_fts USING fts5(title, artist, album, content='tracks',
        content_rowid='rowid', tokenize='unicode61 remove_diacritics 2', prefix='2 3');
    CREATE TRIGGER tracks_ai AFTER INSERT ON tracks BEGIN INSERT INTO tracks_fts
        (rowid, title, artist, album) VALUES (new.rowid, new.title, new.artist, new.album); END;
    CREATE TRIGGER tracks_ad AFTER DELETE ON tracks BEGIN INSERT INTO tracks_fts
        (tracks_fts, rowid, title, artist, album)
        VALUES ('delete', old.rowid, old.title, old.artist, old.album); END;
    CREATE TRIGGER tracks_au AFTER UPDATE ON tracks BEGIN INSERT INTO tracks_fts
        (tracks_fts, rowid, title, artist, album)
        VALUES ('delete', old.rowid, old.title, old.artist, old.album);
        INSERT INTO tracks_fts (rowid, title, artist, album)
        VALUES (new.rowid, new.title, new.artist, new.album); END;";

/// Upserts the record JSON in ?1; the columns are extracted from it, so they always agree.
const UPSERT: &str = "
    INSERT INTO tracks (id, title, artist, album, track_number, year, duration_samples,
        sample_rate, record_json)
    SELECT j ->> 'id', j ->> 'title', j ->> 'artist', j ->> 'album', j ->> 'track_number',
        j ->> 'year', j ->> '$.gapless.valid_samples', j ->> 'sample_rate', j
    FROM (SELECT ?1 AS j) WHERE true
    ON CONFLICT (id) DO UPDATE SET title = excluded.title, artist = excluded.artist,
        album = excluded.album, track_number = excluded.track_number, year = excluded.year,
        duration_samples = excluded.duration_samples, sample_rate = excluded.sample_rate,
        record_json = excluded.record_json";

const GET: &str = "SELECT record_json FROM tracks WHERE id = ?1";
const ORDER: &str =
    "artist COLLATE NOCASE, album COLLATE NOCASE, track_number, title COLLATE NOCASE, id";

/// Errors of the catalog index.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// A SQLite operation on the catalog database failed.
    #[error("catalog {path}: {source}{}", os_cause(.os))]
    Sqlite {
        /// Path of the catalog database.
        path: PathBuf,
        /// The SQLite error.
        #[source]
        source: rusqlite::Error,
        /// The operating system's error behind an I/O failure (a full disk...), which SQLite's
        /// own message ("disk I/O error") does not name.
        os: Option<io::Error>,
    },
    /// A library directory operation failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A track record (a `track.json` or its indexed copy) could not be read or parsed.
    #[error("track {id}: bad record: {reason}")]
    BadRecord {
        /// Track id.
        id: String,
        /// Why the record was rejected.
        reason: String,
    },
}

/// Summary of a reconcile pass.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Records indexed because they were missing or their `track.json` changed.
    pub added: usize,
    /// Rows deleted because their directory is gone or its `track.json` became unreadable.
    pub removed: usize,
    /// Ids whose `track.json` could not be read or parsed (logged, skipped, not indexed).
    pub unreadable: Vec<String>,
}

/// A page of search results.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackPage {
    /// The tracks of this page, in catalog order.
    pub tracks: Vec<TrackRecord>,
    /// Number of tracks matching the query across all pages.
    pub total: u64,
}

/// A handle on the catalog index of one library; several handles may share a library.
pub struct Catalog {
    conn: Connection,
    library: Library,
    path: PathBuf,
    fts: bool,
}

type Res<T> = Result<T, CatalogError>;

/// Attaches the database path to SQLite errors.
trait At<T> {
    fn at(self, path: &Path) -> Result<T, CatalogError>;
}

impl<T> At<T> for rusqlite::Result<T> {
    fn at(self, path: &Path) -> Result<T, CatalogError> {
        self.map_err(|source| CatalogError::Sqlite {
            path: path.into(),
            source,
            os: None,
        })
    }
}

/// Adds to a SQLite failure of `conn` the operating system's error behind it, which SQLite's
/// message ("disk I/O error", "database or disk is full") does not name.
fn with_os_cause(conn: &Connection, error: CatalogError) -> CatalogError {
    let CatalogError::Sqlite {
        path,
        source,
        os: None,
    } = error
    else {
        return error;
    };
    let os = match source.sqlite_error_code() {
        // SQLite keeps the OS error of these two (sqlite3_system_errno).
        Some(ErrorCode::SystemIoFailure | ErrorCode::CannotOpen) => {
            // SAFETY: the handle only goes to sqlite3_system_errno, which reads the OS error
            // of the connection's last I/O failure; the connection is borrowed, so it is open.
            let errno = unsafe { rusqlite::ffi::sqlite3_system_errno(conn.handle()) };
            (errno != 0).then(|| io::Error::from_raw_os_error(errno))
        }
        // Not this one; its unix VFS returns it for ENOSPC (or a short write, which is how a
        // full disk ends a write), and no page-count limit is set here.
        Some(ErrorCode::DiskFull) => Some(Errno::NOSPC.into()),
        _ => None,
    };
    CatalogError::Sqlite { path, source, os }
}

/// ` (OS error)` after a SQLite message, or nothing.
fn os_cause(os: &Option<io::Error>) -> String {
    os.as_ref().map(|e| format!(" ({e})")).unwrap_or_default()
}

impl Catalog {
    /// Opens (creating if needed) `<library>/catalog.sqlite` in WAL mode with a busy timeout (5 s), creates the schema, and runs `reconcile()`.
    pub fn open(library: impl Into<Library>) -> Result<Self, CatalogError> {
        Self::open_with(&library.into(), true)
    }

    fn open_with(library: &Library, allow_fts: bool) -> Result<Self, CatalogError> {
        library.create_root()?;
        let corrupt = [ErrorCode::NotADatabase, ErrorCode::DatabaseCorrupt];
        match Self::connect(library, allow_fts) {
            Err(CatalogError::Sqlite { source, .. })
                if source
                    .sqlite_error_code()
                    .is_some_and(|c| corrupt.contains(&c)) =>
            {
                move_aside(&library.catalog_path(), &source)?;
                Self::connect(library, allow_fts)
            }
            other => other,
        }
    }

    fn connect(library: &Library, allow_fts: bool) -> Result<Self, CatalogError> {
        let path = library.catalog_path();
        let conn = Connection::open(&path).at(&path)?;
        Self::index(conn, library, allow_fts)
    }

    /// Makes `conn` the reconciled index of `layout` (schema, then reconcile).
    fn index(mut conn: Connection, library: &Library, allow_fts: bool) -> Res<Self> {
        let path = library.catalog_path();
        let fts = setup(&mut conn, allow_fts)
            .at(&path)
            .map_err(|e| with_os_cause(&conn, e))?;
        let mut catalog = Catalog {
            conn,
            library: library.clone(),
            path,
            fts,
        };
        catalog.reconcile()?;
        Ok(catalog)
    }

    /// Brings the index in line with the track directories: indexes every `tracks/<id>/track.json` missing from the index (or whose JSON differs), deletes rows whose directory is gone. One transaction.
    pub fn reconcile(&mut self) -> Result<ReconcileReport, CatalogError> {
        self.write(reconcile_in)
    }

    /// Drops and rebuilds the whole index from the directories.
    pub fn rebuild(&mut self) -> Result<ReconcileReport, CatalogError> {
        let fts = self.fts;
        self.write(|tx, library, path| {
            create_schema(tx, fts).at(path)?;
            reconcile_in(tx, library, path)
        })
    }

    /// Inserts or replaces one record (called right after a track directory is committed).
    pub fn upsert(&mut self, record: &TrackRecord) -> Result<(), CatalogError> {
        let json = serde_json::to_string(record).map_err(|e| bad(&record.id, e))?;
        let upsert = |tx: &Connection| tx.prepare_cached(UPSERT)?.execute([&json]);
        self.write(|tx, _, path| upsert(tx).at(path))?;
        Ok(())
    }

    /// One track by id.
    pub fn get(&self, id: &str) -> Result<Option<TrackRecord>, CatalogError> {
        let json: Option<String> = self.run(|c| c.query_row(GET, [id], |r| r.get(0)).optional())?;
        json.map(|json| parse(id, &json)).transpose()
    }

    /// Tracks matching `query` (case-insensitive, every whitespace-separated word must match a prefix of a word in title, artist or album; empty query = all), ordered by artist, album, track_number, title, id; paginated by offset/limit; total counts all matches.
    pub fn search(&self, query: &str, offset: u64, limit: u64) -> Result<TrackPage, CatalogError> {
        let (filter, args) = self.filter(query);
        let count = format!("SELECT count(*) FROM tracks WHERE {filter}");
        let total: i64 = self.run(|c| {
            c.prepare_cached(&count)?
                .query_row(params_from_iter(&args), |r| r.get(0))
        })?;
        let [limit, offset] = [limit, offset].map(|n| i64::try_from(n).unwrap_or(i64::MAX));
        let page = format!(
            "SELECT id, record_json FROM tracks WHERE {filter} ORDER BY {ORDER} \
             LIMIT {limit} OFFSET {offset}"
        );
        let rows: Vec<(String, String)> = self.run(|c| {
            let mut stmt = c.prepare_cached(&page)?;
            let rows = stmt.query_map(params_from_iter(&args), |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })?;
        let tracks = rows
            .iter()
            .map(|(id, json)| parse(id, json))
            .collect::<Result<_, _>>()?;
        Ok(TrackPage {
            tracks,
            total: total.try_into().unwrap_or(0),
        })
    }

    /// A number that changes whenever another connection (a concurrent `segue ingest`)
    /// commits to the index: cheap to poll for changes (SQLite `PRAGMA data_version`).
    pub fn data_version(&self) -> Result<u64, CatalogError> {
        let v: i64 = self.run(|c| c.query_row("PRAGMA data_version", [], |r| r.get(0)))?;
        Ok(v.try_into().unwrap_or(0))
    }

    /// The ids of every indexed track.
    pub fn ids(&self) -> Result<Vec<String>, CatalogError> {
        self.run(|c| {
            let mut stmt = c.prepare_cached("SELECT id FROM tracks")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            rows.collect()
        })
    }

    /// Number of indexed tracks.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> Result<u64, CatalogError> {
        let n: i64 = self.run(|c| c.query_row("SELECT count(*) FROM tracks", [], |r| r.get(0)))?;
        Ok(n.try_into().unwrap_or(0))
    }

    /// SQL condition on `tracks` (and its parameters) for a user query.
    fn filter(&self, query: &str) -> (String, Vec<Value>) {
        let words = query.split_whitespace();
        if self.fts {
            // Each word becomes a quoted FTS5 prefix phrase (`"wor""d"*`), so no user text is
            // ever parsed as FTS5 syntax. Words without a token character could match nothing.
            let words: Vec<String> = words
                .filter(|w| w.chars().any(char::is_alphanumeric))
                .map(|w| format!("\"{}\"*", w.replace('"', "\"\"")))
                .collect();
            if words.is_empty() {
                return ("1".into(), Vec::new());
            }
            let sql = "rowid IN (SELECT rowid FROM tracks_fts WHERE tracks_fts MATCH ?1)";
            return (sql.into(), vec![Value::Text(words.join(" "))]);
        }
        // Without FTS5: a word matches after a space (prefix of a space-separated word).
        let text = "(' ' || title || ' ' || coalesce(artist, '') || ' ' || coalesce(album, ''))";
        let (mut conds, mut args) = (vec!["1".to_string()], Vec::new());
        for word in words {
            let escaped = word.replace('\\', "\\\\").replace('%', "\\%");
            args.push(Value::Text(format!("% {}%", escaped.replace('_', "\\_"))));
            conds.push(format!("{text} LIKE ?{} ESCAPE '\\'", args.len()));
        }
        (conds.join(" AND "), args)
    }

    /// Runs `f` on the connection, attaching the database path to its error.
    fn run<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Res<T> {
        f(&self.conn)
            .at(&self.path)
            .map_err(|e| with_os_cause(&self.conn, e))
    }

    /// Runs `f` in one immediate (write-locking) transaction and commits it.
    fn write<T>(&mut self, f: impl FnOnce(&Connection, &Library, &Path) -> Res<T>) -> Res<T> {
        let (conn, path) = (&self.conn, self.path.as_path());
        let run = || {
            // `&mut self` already makes this the only transaction on the connection; the
            // shared borrow lets a failure read the connection's OS error.
            let tx = Transaction::new_unchecked(conn, Immediate).at(path)?;
            let out = f(&tx, &self.library, path)?;
            tx.commit().at(path)?;
            Ok(out)
        };
        run().map_err(|e| with_os_cause(conn, e))
    }
}

/// Sets up a new connection and recreates the schema if its stamp differs; returns whether
/// search uses FTS5.
fn setup(conn: &mut Connection, allow_fts: bool) -> rusqlite::Result<bool> {
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    let has_fts = "SELECT sqlite_compileoption_used('ENABLE_FTS5')";
    let fts = allow_fts && conn.query_row(has_fts, [], |r| r.get(0))?;
    let tx = conn.transaction_with_behavior(Immediate)?;
    if tx.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))? != stamp(fts) {
        create_schema(&tx, fts)?;
    }
    tx.commit()?;
    Ok(fts)
}

/// The `user_version` of a current schema; it carries the search flavour too, so a switch of
/// flavour recreates the schema.
fn stamp(fts: bool) -> i64 {
    SCHEMA_VERSION << 1 | i64::from(fts)
}

fn create_schema(conn: &Connection, fts: bool) -> rusqlite::Result<()> {
    conn.execute_batch(SCHEMA)?;
    if fts {
        conn.execute_batch(FTS_SCHEMA)?;
    }
    conn.pragma_update(None, "user_version", stamp(fts))
}

/// The reconcile pass proper, inside the caller's transaction.
fn reconcile_in(conn: &Connection, library: &Library, path: &Path) -> Res<ReconcileReport> {
    let mut report = ReconcileReport::default();
    let mut present = HashSet::new();
    // Records that never change need not be read again once indexed (one request each in a
    // bucket): only new ids are read.
    let indexed: HashSet<String> = if library.records_are_immutable() {
        indexed_ids(conn).at(path)?
    } else {
        HashSet::new()
    };
    for id in library.track_ids()? {
        if indexed.contains(&id) {
            present.insert(id);
            continue;
        }
        match read_record(library, &id) {
            Ok(Some(json)) => {
                report.added += usize::from(sync(conn, &id, &json).at(path)?);
                present.insert(id);
            }
            Ok(None) => {} // removed since it was listed
            Err(reason) => {
                tracing::warn!(id, %reason, "unreadable track.json skipped");
                report.unreadable.push(id);
            }
        }
    }
    report.removed = delete_missing(conn, &present).at(path)?;
    if report != ReconcileReport::default() {
        tracing::info!(?report, "catalog reconciled with the track directories");
    }
    Ok(report)
}

/// The canonical JSON of `tracks/<id>/track.json`: `None` if it vanished, `Err` if unusable.
fn read_record(library: &Library, id: &str) -> Result<Option<String>, Box<dyn Error>> {
    let Some(bytes) = library.read_record(id)? else {
        return Ok(None);
    };
    let record: TrackRecord = serde_json::from_slice(&bytes)?;
    if record.id != id {
        return Err(format!("it names another id: {}", record.id).into());
    }
    Ok(Some(serde_json::to_string(&record)?))
}

/// The ids in the index.
fn indexed_ids(conn: &Connection) -> rusqlite::Result<HashSet<String>> {
    let mut select = conn.prepare_cached("SELECT id FROM tracks")?;
    let ids = select.query_map([], |r| r.get(0))?;
    ids.collect()
}

/// Indexes `json` unless the stored copy is identical; returns whether it wrote.
fn sync(conn: &Connection, id: &str, json: &str) -> rusqlite::Result<bool> {
    let mut get = conn.prepare_cached(GET)?;
    let stored: Option<String> = get.query_row([id], |r| r.get(0)).optional()?;
    let changed = stored.as_deref() != Some(json);
    if changed {
        conn.prepare_cached(UPSERT)?.execute([json])?;
    }
    Ok(changed)
}

/// Deletes every row whose id is not in `present`; returns how many.
fn delete_missing(conn: &Connection, present: &HashSet<String>) -> rusqlite::Result<usize> {
    let mut stmt = conn.prepare("SELECT id FROM tracks")?;
    let ids: Vec<String> = stmt
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut delete = conn.prepare("DELETE FROM tracks WHERE id = ?1")?;
    let gone = ids.iter().filter(|id| !present.contains(*id));
    gone.map(|id| delete.execute([id])).sum()
}

/// Moves a corrupt database and its WAL files to `<path>.corrupt-<unix time>`.
fn move_aside(path: &Path, why: &rusqlite::Error) -> Result<(), CatalogError> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH);
    let aside = format!(".corrupt-{}", now.map_or(0, |d| d.as_secs()));
    tracing::warn!(path = %path.display(), %aside, error = %why,
        "catalog database is corrupt; moving it aside and rebuilding from track directories");
    for suffix in ["", "-wal", "-shm"] {
        let (mut from, mut to) = (path.as_os_str().to_owned(), path.as_os_str().to_owned());
        from.push(suffix);
        to.extend([aside.as_str(), suffix].map(OsStr::new));
        if let Err(e) = fs::rename(&from, &to)
            && e.kind() != io::ErrorKind::NotFound
        {
            return Err(io_err("move aside", from.as_ref())(e));
        }
    }
    Ok(())
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> CatalogError {
    let path = path.to_path_buf();
    move |source| StoreError::Io { op, path, source }.into()
}

fn bad(id: &str, e: impl ToString) -> CatalogError {
    CatalogError::BadRecord {
        id: id.to_string(),
        reason: e.to_string(),
    }
}

fn parse(id: &str, json: &str) -> Res<TrackRecord> {
    serde_json::from_str(json).map_err(|e| bad(id, e))
}

mod read_only;
#[cfg(test)]
mod tests;
