//! The filesystems the storage-fault tests mount: a size-limited tmpfs that a ballast file
//! fills to a chosen free space, and a library directory bound onto itself, to be made
//! read-only and back. Mounting takes root or CAP_SYS_ADMIN (see [`SKIP_ENV`]).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use segue::catalog::Catalog;

use crate::common::{TempLibrary, entries};
use crate::ingest_ok;

/// Set to 1 to skip these tests where mounting is not permitted.
pub const SKIP_ENV: &str = "SEGUE_SKIP_PRIVILEGED_TESTS";

/// A filesystem mounted by a test; unmounted on drop, also when the test panics.
pub struct Mount {
    dir: PathBuf,
}

/// Runs `mount ARGS… DIR`; `Err` with mount's message.
fn mount(args: &[&str], dir: &Path) -> Result<(), String> {
    let out = Command::new("mount")
        .args(args)
        .arg(dir)
        .output()
        .map_err(|e| format!("cannot run mount: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        let message = String::from_utf8_lossy(&out.stderr);
        Err(message.split_whitespace().collect::<Vec<_>>().join(" "))
    }
}

impl Mount {
    /// The first mount of a test. Where mounting is not permitted it fails the test saying
    /// what it needs, or with SEGUE_SKIP_PRIVILEGED_TESTS=1 prints that `test` is skipped and
    /// gives `None`.
    pub fn privileged(test: &str, args: &[&str], dir: &Path) -> Option<Mount> {
        match mount(args, dir) {
            Ok(()) => Some(Mount {
                dir: dir.to_path_buf(),
            }),
            Err(why) if std::env::var(SKIP_ENV).as_deref() == Ok("1") => {
                eprintln!(
                    "SKIPPED {test}: it mounts filesystems, which failed ({why}); {SKIP_ENV}=1"
                );
                None
            }
            Err(why) => panic!(
                "{test} mounts filesystems (a size-limited tmpfs, read-only bind mounts), which \
                 needs root or CAP_SYS_ADMIN; `mount {} {}` failed: {why}\nRun it as root (CI \
                 does), or set {SKIP_ENV}=1 to skip it.",
                args.join(" "),
                dir.display()
            ),
        }
    }

    /// `dir` bound onto itself, to be made read-only and back (`None`: skipped, see
    /// [`Mount::privileged`]).
    pub fn bind(test: &str, dir: &Path) -> Option<Mount> {
        Mount::privileged(test, &["--bind", &dir.to_string_lossy()], dir)
    }

    /// Remounts this bind mount read-only, or writable again.
    pub fn read_only(&self, read_only: bool) {
        let flags = if read_only {
            "remount,bind,ro"
        } else {
            "remount,bind,rw"
        };
        if let Err(why) = mount(&["-o", flags], &self.dir) {
            panic!("mount -o {flags} {}: {why}", self.dir.display());
        }
        let probe = self.dir.join("probe");
        let writable = std::fs::write(&probe, b"").is_ok();
        let _ = std::fs::remove_file(probe);
        assert_eq!(writable, !read_only, "{flags} {}", self.dir.display());
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let unmounted = |lazy: bool| {
            let mut cmd = Command::new("umount");
            if lazy {
                cmd.arg("-l");
            }
            cmd.arg(&self.dir).status().is_ok_and(|s| s.success())
        };
        if !unmounted(false) && !unmounted(true) {
            eprintln!("could not unmount {}", self.dir.display());
        }
    }
}

/// A temp library (`TempLibrary::library()`) on a filesystem the test mounted: its own small
/// tmpfs, which a ballast file fills to a chosen free space, or its directory bound onto itself,
/// to be made read-only and back. Inputs live elsewhere.
pub struct MountedLibrary {
    // Declared first so it is dropped (unmounted) before the directory is removed.
    pub mount: Mount,
    pub lib: TempLibrary,
}

impl MountedLibrary {
    /// An empty library on an 8 MiB tmpfs (`None`: skipped).
    pub fn on_tmpfs(test: &str) -> Option<MountedLibrary> {
        let lib = TempLibrary::new();
        let args = ["-t", "tmpfs", "-o", "size=8m", "tmpfs"];
        let mount = Mount::privileged(test, &args, lib.dir.path())?;
        let disk = MountedLibrary { mount, lib };
        disk.reset();
        Some(disk)
    }

    /// An empty library bound onto itself, writable for now (`None`: skipped).
    pub fn bound(test: &str) -> Option<MountedLibrary> {
        let lib = TempLibrary::new();
        std::fs::create_dir_all(lib.library()).unwrap();
        let mount = Mount::bind(test, &lib.library())?;
        Some(MountedLibrary { mount, lib })
    }

    fn ballast(&self) -> PathBuf {
        self.lib.dir.path().join("ballast")
    }

    /// Free bytes on the tmpfs.
    pub fn free(&self) -> u64 {
        let stat = rustix::fs::statvfs(self.lib.dir.path()).expect("statvfs of the tmpfs");
        stat.f_bavail * stat.f_frsize
    }

    /// Grows the ballast until `budget` bytes (a multiple of 4 KiB) are left free.
    pub fn fill_leaving(&self, budget: u64) {
        let mut ballast = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.ballast())
            .unwrap();
        let zeros = vec![0u8; 1 << 16];
        let mut left = self.free().checked_sub(budget).expect("budget above free");
        while left > 0 {
            let n = left.min(zeros.len() as u64);
            ballast.write_all(&zeros[..n as usize]).unwrap();
            left -= n;
        }
        assert_eq!(self.free(), budget, "tmpfs accounting");
    }

    /// Frees the space the ballast took.
    pub fn unfill(&self) {
        match std::fs::remove_file(self.ballast()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => panic!("remove ballast: {e}"),
            _ => {}
        }
    }

    /// Back to an empty library with room: no ballast, no track, the catalog reconciled and
    /// closed (so its WAL files are gone).
    pub fn reset(&self) {
        self.unfill();
        let layout = self.lib.layout();
        for id in entries(&layout.tracks_dir()) {
            std::fs::remove_dir_all(layout.track_dir(&id)).unwrap();
        }
        layout.create().unwrap();
        drop(Catalog::open(&layout).unwrap());
    }

    /// Bytes an ingest of `input` leaves taken (measured with room, then undone), and its id.
    pub fn space_taken(&self, input: &Path) -> (u64, String) {
        self.reset();
        let before = self.free();
        let id = ingest_ok(&self.lib, input);
        let taken = before - self.free();
        self.reset();
        (taken, id)
    }
}
