//! Where a view's rows come from, and fetching them.
//!
//! A view's `sheet_url` (or its config override) is classified once into a
//! [`SourceSpec`]; [`Sources::fetch`] then turns specs into [`SourceRows`] rows
//! that the sync can read more than once.

mod beneath;
pub mod csv;
mod error;
mod fetch;
mod grid;
pub mod policy;
mod rows;
pub mod sheets;
mod spec;
pub mod spool;
pub mod table;
pub mod workbook;

pub use error::SourceError;
pub use fetch::{ChangeMark, GoogleCheck, Sources};
pub use rows::{RowReader, SourceRows};
pub use spec::{SheetRef, SourceSpec, SourceType, UnrecognisedSource};
