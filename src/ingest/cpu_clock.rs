//! The calling thread's CPU time, for the per-stage timings in the debug log.

/// CPU time used by the calling thread so far, in seconds.
pub(crate) fn thread_cpu_seconds() -> f64 {
    // The thread CPU clock exists on every Linux this runs on; rustix's call cannot fail.
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}
