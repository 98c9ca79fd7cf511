//! Opening the catalog without writing a byte, for readers of a library they cannot write (a
//! read-only mount, a full disk): an origin must serve whatever its storage allows.

use std::collections::HashSet;
use std::io;
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::{At, Catalog, CatalogError, Res, io_err, stamp};
use crate::store::Library;

impl Catalog {
    /// Opens the catalog of a reader (`segue serve`, `segue list`): [`Catalog::open`] when the
    /// library can be written and that works; otherwise (a read-only mount, a full disk) without
    /// writing a byte, for an origin must serve whatever its storage allows. The database file
    /// is then opened read-only, or as immutable when SQLite cannot read it so (a WAL database
    /// whose `-shm` file is absent and cannot be created); if that fails, or its index does not
    /// list exactly the track directories, an index is built in memory from the track
    /// directories (the truth). Such a catalog shows the library as it was when opened, unless
    /// a writer elsewhere keeps the WAL files present.
    pub fn open_readable(layout: impl Into<Library>) -> Result<Self, CatalogError> {
        let layout = &layout.into();
        if layout.is_writable() {
            match Self::open(layout) {
                Ok(catalog) => return Ok(catalog),
                Err(e) => tracing::warn!(error = %e, "catalog not writable; reading it as is"),
            }
        }
        match Self::connect_read_only(layout) {
            Ok(Some(catalog)) if catalog.lists_exactly(&layout.track_ids()?)? => {
                return Ok(catalog);
            }
            Ok(_) => tracing::warn!("the read-only catalog is out of date (schema or tracks)"),
            Err(e) => tracing::warn!(error = %e, "the read-only catalog cannot be read"),
        }
        tracing::warn!("indexing the track directories in memory, without writing");
        let path = layout.catalog_path();
        Self::index(Connection::open_in_memory().at(&path)?, layout, true)
    }

    /// Opens the database file without writing: `mode=ro`, else `immutable=1`; `None` if its
    /// schema is not the current one.
    pub(super) fn connect_read_only(layout: &Library) -> Res<Option<Self>> {
        let path = layout.catalog_path();
        let uri = sqlite_uri(&path).map_err(io_err("resolve", &path))?;
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let open = |query: &str| {
            let conn = Connection::open_with_flags(format!("{uri}?{query}"), flags)?;
            conn.busy_timeout(Duration::from_secs(5))?;
            let version = conn.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))?;
            Ok((conn, version))
        };
        let (conn, version) = open("mode=ro").or_else(|_| open("immutable=1")).at(&path)?;
        let fts = match version {
            v if v == stamp(true) => true,
            v if v == stamp(false) => false,
            _ => return Ok(None),
        };
        Ok(Some(Catalog {
            conn,
            library: layout.clone(),
            path,
            fts,
        }))
    }

    /// Whether the index holds exactly the tracks `ids`.
    pub(super) fn lists_exactly(&self, ids: &[String]) -> Res<bool> {
        let indexed: HashSet<String> = self.ids()?.into_iter().collect();
        Ok(indexed.len() == ids.len() && ids.iter().all(|id| indexed.contains(id)))
    }
}

/// The `file:` URI of a database path (RFC 3986 percent-encoding of what SQLite's URI parser
/// treats specially), absolute so no path can read as an authority.
pub(super) fn sqlite_uri(path: &Path) -> io::Result<String> {
    use std::os::unix::ffi::OsStrExt;
    let absolute = std::path::absolute(path)?;
    let mut uri = String::from("file://");
    for &b in absolute.as_os_str().as_bytes() {
        match b {
            b'/' | b'-' | b'.' | b'_' | b'~' => uri.push(char::from(b)),
            b if b.is_ascii_alphanumeric() => uri.push(char::from(b)),
            b => uri.push_str(&format!("%{b:02X}")),
        }
    }
    Ok(uri)
}
