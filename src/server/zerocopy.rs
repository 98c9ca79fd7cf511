//! Sending cached media files with `sendfile(2)` instead of copying them into the socket.
//!
//! hyper writes a response body through `AsyncWrite`, so every byte of a segment is copied from
//! our memory into the socket's buffer. Under load that copy was a quarter of the server's CPU
//! (perf, `benches/compare_nginx.sh`), and it is the one thing nginx, with `sendfile on`, does
//! not do. hyper has no way to hand a file descriptor to the connection, and no crate adds one,
//! so this module does it by hand, on Linux, without changing what hyper sees:
//!
//! - A cached immutable file keeps its descriptor open ([`HeldFile`], within an [`FdBudget`]).
//! - A response whose body is (a slice of) such a file's bytes carries a [`FileRegion`] in its
//!   extensions; the connection's service wrapper moves it into the connection's [`Regions`].
//! - When hyper asks the connection to write a buffer that lies inside a registered region's
//!   memory, the connection sends the same bytes from the file with `sendfile` (the response
//!   head before it goes out with `MSG_MORE`, so head and body still share packets).
//!
//! Why this is exact: a region holds a clone of the `Bytes`, so while it is registered that
//! memory holds those bytes and nothing else; and the file's bytes are the same bytes, because
//! the descriptor is the one the `Bytes` were read from, and files inside a rendition directory
//! are never written in place (ingest writes a new file and renames it; the open descriptor
//! keeps the old inode). A buffer that matches no region (a compressed playlist, a multipart
//! body, an API answer) is written as before.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, IoSlice};
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rustix::net::{SendAncillaryBuffer, SendFlags};
use rustix::process::{Resource, Rlimit};

/// Bodies smaller than this are copied: the copy costs less than keeping a descriptor open.
pub const MIN_ZERO_COPY_BYTES: usize = 16 * 1024;

/// Regions kept per connection: HTTP/1.1 sends one response at a time, but the previous body
/// may still be queued when the next response is registered.
const REGIONS_PER_CONNECTION: usize = 4;

/// How many file descriptors cached files may keep open.
#[derive(Debug)]
pub struct FdBudget {
    held: AtomicUsize,
    limit: usize,
}

impl FdBudget {
    /// A budget of `limit` descriptors.
    pub fn new(limit: usize) -> Self {
        FdBudget {
            held: AtomicUsize::new(0),
            limit,
        }
    }

    /// Raises this process's open-file limit to its hard limit, then budgets what is left after
    /// `reserved` descriptors (connections, the catalog, files being read) and half of the rest
    /// again as a margin.
    pub fn for_server(reserved: usize) -> Self {
        let limit = raise_open_file_limit();
        let budget = limit.saturating_sub(reserved) / 2;
        tracing::debug!(
            limit,
            budget,
            "open-file limit; descriptors for zero-copy sends"
        );
        FdBudget::new(budget)
    }

    /// Keeps `file` open within the budget; `None` (and the file closed) when it is spent.
    pub fn hold(self: &Arc<Self>, file: File) -> Option<Arc<HeldFile>> {
        self.hold_from(file, 0)
    }

    /// [`FdBudget::hold`] for a file whose contents start at `offset` (a disk cache file: a
    /// header, then the body).
    pub fn hold_from(self: &Arc<Self>, file: File, offset: u64) -> Option<Arc<HeldFile>> {
        let taken = self
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                (held < self.limit).then_some(held + 1)
            });
        taken.ok().map(|_| {
            Arc::new(HeldFile {
                file,
                offset,
                budget: Arc::clone(self),
            })
        })
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard one and returns the soft limit in force
/// (`usize::MAX` when unlimited).
fn raise_open_file_limit() -> usize {
    let mut limit = rustix::process::getrlimit(Resource::Nofile);
    // `None` is unlimited.
    let below_hard = match (limit.current, limit.maximum) {
        (Some(current), Some(maximum)) => current < maximum,
        (Some(_), None) => true,
        (None, _) => false,
    };
    if below_hard {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if rustix::process::setrlimit(Resource::Nofile, raised).is_ok() {
            limit = raised;
        }
    }
    limit
        .current
        .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX))
}

/// An open file counted against its [`FdBudget`] until dropped.
#[derive(Debug)]
pub struct HeldFile {
    file: File,
    /// Where the contents start in the file.
    offset: u64,
    budget: Arc<FdBudget>,
}

impl Drop for HeldFile {
    fn drop(&mut self) {
        self.budget.held.fetch_sub(1, Ordering::AcqRel);
    }
}

/// `bytes` are the contents of `file` from its start: a response body that is a slice of them
/// may be sent from the file.
#[derive(Debug, Clone)]
pub struct FileRegion {
    /// The file's contents in memory.
    pub bytes: Bytes,
    /// The file they were read from.
    pub file: Arc<HeldFile>,
}

impl FileRegion {
    /// The file offset of `buf`, when `buf` lies inside this region's memory.
    fn offset_of(&self, buf: &[u8]) -> Option<u64> {
        let base = self.bytes.as_ptr() as usize;
        let start = buf.as_ptr() as usize;
        let inside = start >= base && start + buf.len() <= base + self.bytes.len();
        inside.then(|| (start - base) as u64)
    }
}

/// The regions of one connection (shared by its service wrapper and its stream).
#[derive(Debug, Clone, Default)]
pub struct Regions(Arc<Mutex<VecDeque<FileRegion>>>);

impl Regions {
    /// Registers `region`, forgetting the oldest one beyond the per-connection bound (its body,
    /// if still unsent, is then simply copied).
    pub fn register(&self, region: FileRegion) {
        let mut regions = self.lock();
        if regions.len() == REGIONS_PER_CONNECTION {
            regions.pop_front();
        }
        regions.push_back(region);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<FileRegion>> {
        // A panic while holding this lock leaves a plain list behind: still usable.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Writes `bufs` to `socket` (non-blocking): the buffers before the first one inside a
    /// region with `writev`-like `sendmsg(MSG_MORE)`, or that buffer from its file with
    /// `sendfile`. `Ok(None)`, with nothing written, when no buffer lies in a region (write
    /// them the usual way).
    pub fn write(&self, socket: BorrowedFd<'_>, bufs: &[IoSlice<'_>]) -> io::Result<Option<Sent>> {
        let mut regions = self.lock();
        let found = bufs.iter().enumerate().find_map(|(i, buf)| {
            regions
                .iter()
                .enumerate()
                .find_map(|(r, region)| region.offset_of(buf).map(|offset| (i, r, offset)))
        });
        let Some((index, region, offset)) = found else {
            return Ok(None);
        };
        if index > 0 {
            return send_more(socket, &bufs[..index]).map(|n| Some(Sent::Copied(n)));
        }
        let held = &regions[region].file;
        let n = send_file(socket, &held.file, held.offset + offset, bufs[0].len())?;
        // Once a region's last byte is out, it has done its job.
        if offset as usize + n == regions[region].bytes.len() {
            regions.remove(region);
        }
        Ok(Some(Sent::FromFile(n)))
    }

    /// Whether no region is registered (the common case of a connection serving no media).
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

/// How [`Regions::write`] wrote its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Copied from memory (a response head); the count.
    Copied(usize),
    /// Sent from a file without a copy; the count.
    FromFile(usize),
}

impl Sent {
    /// Bytes written.
    pub fn count(self) -> usize {
        match self {
            Sent::Copied(n) | Sent::FromFile(n) => n,
        }
    }
}

/// `sendmsg` of `bufs` with `MSG_MORE`: the kernel holds a partial packet for the file data
/// that follows (the same effect as nginx's `tcp_nopush`, per call). `MSG_NOSIGNAL`: a peer
/// that has gone is an `EPIPE` error, not a signal that kills the server.
fn send_more(socket: BorrowedFd<'_>, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    // The kernel refuses more than UIO_MAXIOV (1024 on Linux, include/uapi/linux/uio.h)
    // buffers in one call; the rest go in the next.
    const UIO_MAXIOV: usize = 1024;
    let bufs = &bufs[..bufs.len().min(UIO_MAXIOV)];
    let flags = SendFlags::MORE | SendFlags::NOSIGNAL;
    Ok(rustix::net::sendmsg(
        socket,
        bufs,
        &mut SendAncillaryBuffer::default(),
        flags,
    )?)
}

/// `sendfile` of `len` bytes of `file` from `offset` to `socket`.
fn send_file(socket: BorrowedFd<'_>, file: &File, offset: u64, len: usize) -> io::Result<usize> {
    let mut offset = offset;
    Ok(rustix::fs::sendfile(socket, file, Some(&mut offset), len)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsFd;

    fn file_with(bytes: &[u8]) -> File {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(bytes).unwrap();
        file
    }

    #[test]
    fn the_budget_bounds_descriptors_and_returns_them_on_drop() {
        let budget = Arc::new(FdBudget::new(2));
        let a = budget.hold(file_with(b"a")).unwrap();
        let b = budget.hold(file_with(b"b")).unwrap();
        assert!(budget.hold(file_with(b"c")).is_none());
        assert_eq!(budget.held.load(Ordering::Acquire), 2);
        drop((a, b));
        assert_eq!(budget.held.load(Ordering::Acquire), 0);
        assert!(budget.hold(file_with(b"d")).is_some());
    }

    #[test]
    fn a_head_then_a_slice_of_a_region_arrive_byte_exact() {
        let contents: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let budget = Arc::new(FdBudget::new(1));
        let region = FileRegion {
            bytes: Bytes::from(contents.clone()),
            file: budget.hold(file_with(&contents)).unwrap(),
        };
        let body = region.bytes.slice(1000..61_000);
        let regions = Regions::default();
        regions.register(region);

        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let sender = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut receiver, _) = listener.accept().unwrap();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            receiver.read_to_end(&mut got).unwrap();
            got
        });
        let head = b"HTTP/1.1 206 Partial Content\r\n\r\n".to_vec();
        let (mut head_left, mut body_left) = (&head[..], &body[..]);
        let mut kinds = Vec::new();
        while !body_left.is_empty() {
            let bufs = [IoSlice::new(head_left), IoSlice::new(body_left)];
            let bufs: Vec<_> = bufs.into_iter().filter(|b| !b.is_empty()).collect();
            let sent = regions.write(sender.as_fd(), &bufs).unwrap().unwrap();
            kinds.push(sent);
            let mut n = sent.count();
            let from_head = n.min(head_left.len());
            head_left = &head_left[from_head..];
            n -= from_head;
            body_left = &body_left[n..];
        }
        drop(sender);
        let got = reader.join().unwrap();
        assert_eq!(&got[..head.len()], &head[..]);
        assert!(got[head.len()..] == body[..], "body differs");
        assert!(kinds.iter().any(|k| matches!(k, Sent::Copied(_))));
        assert!(kinds.iter().any(|k| matches!(k, Sent::FromFile(_))));
    }

    #[test]
    fn buffers_outside_every_region_are_left_to_the_caller() {
        let regions = Regions::default();
        // Never written to: no buffer lies in a region.
        let unused = file_with(b"");
        let other = vec![1u8; 10];
        assert!(
            regions
                .write(unused.as_fd(), &[IoSlice::new(&other)])
                .unwrap()
                .is_none()
        );
        let budget = Arc::new(FdBudget::new(1));
        regions.register(FileRegion {
            bytes: Bytes::from(vec![0u8; 10]),
            file: budget.hold(file_with(&[0u8; 10])).unwrap(),
        });
        assert!(
            regions
                .write(unused.as_fd(), &[IoSlice::new(&other)])
                .unwrap()
                .is_none()
        );
    }
}
