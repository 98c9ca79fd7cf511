//! The process's memory allocator: mimalloc, or the system's when `SEGUE_ALLOCATOR=system`.
//!
//! Why two. The origin makes many small, short-lived allocations per request (hyper's buffers,
//! header maps, the middleware futures) on several threads; with mimalloc's per-thread free lists
//! a request costs about a fifth less CPU than with glibc's malloc (CPU time per request under
//! `benches/compare_nginx.sh`'s load, 26-27 µs against 31-37 µs). Ingest workers, though, run
//! under an address-space limit (`RLIMIT_AS`) that is their memory cap, and mimalloc reserves
//! address space in large arenas ahead of use, so the cap would count reservations instead of
//! memory: their parent starts them with `SEGUE_ALLOCATOR=system`.
//!
//! The choice is made once, at the first allocation (before `main`), from the environment read
//! with `getenv`, which does not allocate: every block is freed by the allocator that made it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ffi::CStr;
use std::sync::atomic::{AtomicU8, Ordering};

use mimalloc::MiMalloc;

/// The environment variable that selects the allocator (`system`; anything else: mimalloc).
pub const ALLOCATOR_ENV: &str = "SEGUE_ALLOCATOR";

const UNDECIDED: u8 = 0;
const MIMALLOC: u8 = 1;
const SYSTEM: u8 = 2;

static CHOICE: AtomicU8 = AtomicU8::new(UNDECIDED);

/// The global allocator of the `segue` binary (see the module doc).
#[derive(Debug)]
pub struct ChosenAllocator;

fn mimalloc_chosen() -> bool {
    match CHOICE.load(Ordering::Relaxed) {
        UNDECIDED => decide() == MIMALLOC,
        choice => choice == MIMALLOC,
    }
}

#[cold]
fn decide() -> u8 {
    // SAFETY: a NUL-terminated name; getenv reads the environment and allocates nothing.
    let value = unsafe { libc::getenv(c"SEGUE_ALLOCATOR".as_ptr()) };
    // SAFETY: a non-null getenv result is a NUL-terminated string.
    let system = !value.is_null() && unsafe { CStr::from_ptr(value) }.to_bytes() == b"system";
    let choice = if system { SYSTEM } else { MIMALLOC };
    // Only one thread exists at the first allocation; should two ever race, the first wins.
    match CHOICE.compare_exchange(UNDECIDED, choice, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => choice,
        Err(decided) => decided,
    }
}

// SAFETY: every call is forwarded to one allocator, the same for the life of the process.
unsafe impl GlobalAlloc for ChosenAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, forwarded.
        unsafe {
            match mimalloc_chosen() {
                true => MiMalloc.alloc(layout),
                false => System.alloc(layout),
            }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, forwarded.
        unsafe {
            match mimalloc_chosen() {
                true => MiMalloc.alloc_zeroed(layout),
                false => System.alloc_zeroed(layout),
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, forwarded to the allocator that made `ptr`.
        unsafe {
            match mimalloc_chosen() {
                true => MiMalloc.dealloc(ptr, layout),
                false => System.dealloc(ptr, layout),
            }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract, forwarded to the allocator that made `ptr`.
        unsafe {
            match mimalloc_chosen() {
                true => MiMalloc.realloc(ptr, layout, new_size),
                false => System.realloc(ptr, layout, new_size),
            }
        }
    }
}
