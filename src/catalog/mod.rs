//! The library index: track records and their SQLite index.
//!
//! `track.json` in each track directory is the truth; [`index`] is a view of those files that
//! can always be rebuilt from them.

pub mod index;
pub mod model;

pub use index::{Catalog, CatalogError};
pub use model::*;
