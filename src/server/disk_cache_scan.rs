//! The disk cache's directory walk at open: what entries a previous run left, and the
//! removal of its temp files.

use super::*;

/// Lists the entries under `dir`: (name, file size, mtime in ns). Deletes leftover temp files;
/// leaves alone anything it does not recognise (the directory may hold files not ours).
pub(super) fn scan(dir: &Path) -> Result<Vec<(Name, u64, u64)>, DiskCacheError> {
    let mut found = Vec::new();
    for first in fan_out_dirs(dir)? {
        for second in fan_out_dirs(&first)? {
            for item in list(&second)? {
                let path = item.path();
                let file_name = item.file_name();
                let Some(file_name) = file_name.to_str() else {
                    continue;
                };
                if file_name.ends_with(TEMP_SUFFIX) {
                    remove_file(&path);
                    continue;
                }
                let Ok(hash) = blake3::Hash::from_hex(file_name) else {
                    continue;
                };
                // Only a file at the place its name puts it: anything else get would never find.
                let hex = hash.to_hex();
                if hex.as_str() != file_name
                    || path != dir.join(&hex[0..2]).join(&hex[2..4]).join(file_name)
                {
                    continue;
                }
                let meta = item.metadata().map_err(|source| DiskCacheError::Scan {
                    dir: second.clone(),
                    source,
                })?;
                if meta.is_file() {
                    let mtime = meta.modified().map_or(0, nanos);
                    found.push((*hash.as_bytes(), meta.len(), mtime));
                }
            }
        }
    }
    Ok(found)
}

/// The two-hex-digit subdirectories of `dir`.
fn fan_out_dirs(dir: &Path) -> Result<Vec<PathBuf>, DiskCacheError> {
    Ok(list(dir)?
        .into_iter()
        .filter(|item| {
            let name = item.file_name();
            let name = name.to_string_lossy();
            name.len() == 2
                && name
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                && item.file_type().is_ok_and(|t| t.is_dir())
        })
        .map(|item| item.path())
        .collect())
}

fn list(dir: &Path) -> Result<Vec<fs::DirEntry>, DiskCacheError> {
    let scan_error = |source| DiskCacheError::Scan {
        dir: dir.to_owned(),
        source,
    };
    fs::read_dir(dir)
        .map_err(scan_error)?
        .map(|item| item.map_err(scan_error))
        .collect()
}
