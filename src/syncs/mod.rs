//! What to sync: the sales dashboard's views (from its `views` collection)
//! and the syncs the config file declares (`[[syncs]]`), resolved into one
//! list of plans that the engine runs alike.

mod configured;
mod error;
mod list;
mod plan;
mod reserved;
pub mod settings;
mod views;

pub use error::ViewsError;
pub use list::{load_plans, select};
pub use plan::{CONFIGURED_ID_PREFIX, Origin, Place, Resolution, SyncPlan, SyncSummary, SyncTarget};
