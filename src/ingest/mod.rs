//! Audio file -> packaged track, one module per stage.
//!
//! [`decode`] -> [`resample`] -> ([`analyze`] | [`encode`] per rendition -> [`segment`] ->
//! [`fmp4`]); [`pipeline`] wires the stages for one file (the streaming part in `fanout`, each
//! rendition's in `rendition`), [`batch`] runs many files, each in a [`worker`] process.
//! [`error`] is the error every stage reports.

pub mod analyze;
pub mod batch;
mod cpu_clock;
pub mod decode;
pub mod encode;
pub mod error;
mod fanout;
pub mod fmp4;
pub mod pipeline;
pub mod rendition;
pub mod resample;
pub mod segment;
pub mod worker;

/// The message of a caught panic payload.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}
