//! What the fuzz targets share: an allocator that makes libFuzzer's `-malloc_limit_mb` work
//! without a sanitizer runtime, and a panic policy that contains panics where segue contains them.
//!
//! cargo-fuzz builds with AddressSanitizer (nightly only); on the stable toolchain there is no
//! sanitizer runtime, so libFuzzer never sees an allocation and `-malloc_limit_mb` does nothing.
//! libFuzzer looks up `__sanitizer_install_malloc_and_free_hooks` (a weak symbol normally defined
//! by the sanitizer runtime) to be told about allocations; this crate defines it and calls the
//! hooks from a global allocator, so libFuzzer's own out-of-memory report (`oom-` artifact) fires
//! for a single allocation above the limit, before the allocation can take the machine down. The
//! allocation's Rust backtrace is printed first, since that is the one thing the report needs.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

type MallocHook = unsafe extern "C" fn(*const u8, usize);
type FreeHook = unsafe extern "C" fn(*const u8);

static MALLOC_HOOK: AtomicPtr<()> = AtomicPtr::new(std::ptr::null_mut());
static FREE_HOOK: AtomicPtr<()> = AtomicPtr::new(std::ptr::null_mut());
/// Allocations of this many bytes or more get a backtrace before libFuzzer's report (0: none).
static LIMIT_BYTES: AtomicUsize = AtomicUsize::new(2048 << 20);

thread_local! {
    /// Set while the allocator itself prints (its own allocations must pass straight through).
    static REPORTING: Cell<bool> = const { Cell::new(false) };
    /// Set while a target runs code whose panics segue contains.
    static CONTAINING: Cell<bool> = const { Cell::new(false) };
}

/// Called by libFuzzer (through its weak-symbol lookup) to be told about every allocation.
///
/// # Safety
/// The hooks must be valid for the rest of the process, as libFuzzer's are.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __sanitizer_install_malloc_and_free_hooks(
    malloc: Option<MallocHook>,
    free: Option<FreeHook>,
) -> i32 {
    let (malloc, free) = (
        malloc.map_or(std::ptr::null_mut(), |f| f as *mut ()),
        free.map_or(std::ptr::null_mut(), |f| f as *mut ()),
    );
    MALLOC_HOOK.store(malloc, Ordering::Release);
    FREE_HOOK.store(free, Ordering::Release);
    1
}

/// The system allocator, reporting to libFuzzer's hooks.
pub struct HookedAlloc;

impl HookedAlloc {
    /// Prints the backtrace of an allocation at or above the limit; libFuzzer's hook, called
    /// once the allocation returns (or fails), then reports it and exits.
    fn before(size: usize) {
        let limit = LIMIT_BYTES.load(Ordering::Relaxed);
        if limit == 0 || size < limit || REPORTING.get() {
            return;
        }
        REPORTING.set(true);
        let trace = std::backtrace::Backtrace::force_capture();
        eprintln!("==segue-fuzz== allocation of {size} bytes (limit {limit}) at:\n{trace}");
        REPORTING.set(false);
    }

    fn malloc_hook(ptr: *const u8, size: usize) {
        let hook = MALLOC_HOOK.load(Ordering::Acquire);
        if !hook.is_null() {
            // SAFETY: only ever set from a `MallocHook` by the function above.
            let hook: MallocHook = unsafe { std::mem::transmute(hook) };
            // SAFETY: libFuzzer's hook takes any pointer and size.
            unsafe { hook(ptr, size) };
        }
    }

    fn free_hook(ptr: *const u8) {
        let hook = FREE_HOOK.load(Ordering::Acquire);
        if !hook.is_null() {
            // SAFETY: only ever set from a `FreeHook` by the function above.
            let hook: FreeHook = unsafe { std::mem::transmute(hook) };
            // SAFETY: libFuzzer's hook takes any pointer.
            unsafe { hook(ptr) };
        }
    }
}

// SAFETY: every call is forwarded to `System` unchanged; the hooks only count and report.
unsafe impl GlobalAlloc for HookedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::before(layout.size());
        // SAFETY: forwarded as is.
        let ptr = unsafe { System.alloc(layout) };
        // Also on failure, so libFuzzer reports it as out-of-memory with the input saved.
        Self::malloc_hook(ptr, layout.size());
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::before(layout.size());
        // SAFETY: forwarded as is.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        Self::malloc_hook(ptr, layout.size());
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        Self::free_hook(ptr);
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Self::before(new_size);
        // SAFETY: forwarded as is.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            Self::free_hook(ptr);
        }
        Self::malloc_hook(new, new_size);
        new
    }
}

#[global_allocator]
static ALLOCATOR: HookedAlloc = HookedAlloc;

/// Reads libFuzzer's memory limits from the command line (`-malloc_limit_mb`, which defaults to
/// `-rss_limit_mb`, which defaults to 2048) so the allocator knows when to print a backtrace.
fn read_limits() {
    let flag = |name: &str| {
        std::env::args()
            .filter_map(|a| a.strip_prefix(name)?.parse::<usize>().ok())
            .next_back()
    };
    let mb = flag("-malloc_limit_mb=")
        .filter(|&mb| mb > 0)
        .or_else(|| flag("-rss_limit_mb="))
        .unwrap_or(2048);
    LIMIT_BYTES.store(mb.saturating_mul(1 << 20), Ordering::Relaxed);
}

/// Panic locations already reported as contained (each is printed once per process).
static SEEN_PANICS: Mutex<Option<HashSet<String>>> = Mutex::new(None);

/// Sets up a target; call it from `fuzz_target!`'s `init:`.
///
/// libfuzzer-sys installs a panic hook that aborts at once, before any `catch_unwind` can act.
/// This keeps that behaviour outside [`contained`] and, inside it, lets the panic unwind to the
/// `catch_unwind` that segue itself has there, printing each panic location once. With
/// `SEGUE_FUZZ_PANIC=abort` every panic aborts, to collect reproducers of contained panics.
pub fn init() {
    read_limits();
    let abort = std::panic::take_hook();
    let abort_all = std::env::var("SEGUE_FUZZ_PANIC").is_ok_and(|v| v == "abort");
    std::panic::set_hook(Box::new(move |info| {
        if abort_all || !CONTAINING.get() {
            return abort(info);
        }
        let location = info
            .location()
            .map_or_else(|| "unknown location".into(), ToString::to_string);
        let mut seen = SEEN_PANICS.lock().unwrap_or_else(|p| p.into_inner());
        if seen
            .get_or_insert_with(HashSet::new)
            .insert(location.clone())
        {
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_default();
            eprintln!("==segue-fuzz== contained panic (first at {location}): {message}");
        }
    }));
}

/// Runs `f` as segue runs code whose panics it catches: a panic unwinds and becomes `Err` with
/// its message, instead of aborting the fuzzer.
pub fn contained<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    let was = CONTAINING.replace(true);
    let result = catch_unwind(AssertUnwindSafe(f));
    CONTAINING.set(was);
    result.map_err(|panic| {
        panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into())
    })
}
