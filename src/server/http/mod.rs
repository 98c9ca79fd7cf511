//! HTTP semantics (RFC 9110), one module per concern, independent of what is being served.
//!
//! - [`respond`] turns one in-memory representation into the response for a request, using:
//! - [`conditional`] entity tags and preconditions (13), [`range`] byte ranges (14), and
//!   [`encoding`] content-coding negotiation and compression (8.4, 12.5.3).
//! - [`cors`] the CORS headers and preflight answers, as a middleware.

pub mod conditional;
pub mod cors;
pub mod encoding;
pub mod range;
pub mod respond;
