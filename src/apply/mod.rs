//! Putting a sync's records in place, as its target's profile says:
//!
//! - [`swap`]: the source is the whole truth for a collection (a dashboard
//!   view): the new collection is built aside and renamed over the old one,
//!   each record keeping its id;
//! - [`merge`]: the collection is shared with an application: documents are
//!   matched by key and only what changed is written.
//!
//! The engine picks one by the profile and knows neither's insides. Both
//! pass the same guards (shrink, rejected rows) and stop at the same
//! checkpoint (called off, lease lost).

mod checkpoint;
mod context;
mod error;
mod guards;
pub mod merge;
pub mod swap;

pub use checkpoint::{Abort, Checkpoint};
pub use context::{ApplyContext, ApplySettings, off_executor};
pub use error::ApplyError;
pub use guards::{GuardError, GuardLimits, OnLostColumn, check_rejected, check_shrink};
