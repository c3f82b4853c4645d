//! Putting a sync's records in place, as its target's profile says:
//!
//! - [`swap`]: the source is the whole truth for a collection (a dashboard
//!   view): the new collection is built aside and renamed over the old one;
//! - [`merge`]: the collection is shared with an application: documents are
//!   matched by key and only what changed is written.
//!
//! Both sit behind the same guards (shrink, rejected rows), in [`swap`].

pub mod merge;
pub mod swap;

pub use swap::{
    ApplyError, STAGING_PREFIX, STALE_STAGING_AFTER, Staging, check_rejected, check_shrink, drop_leftover_staging,
};
