//! What to sync: one plan per sync, whichever its origin, saying what to
//! read and where to write (or why it cannot be synced).

use std::sync::Arc;

use serde::Serialize;

use crate::apply::OnLostColumn;
use crate::mapping::conventions::ReadSettings;
use crate::mapping::profile::TargetProfile;
use crate::source::SourceSpec;

/// One sync (a view, or a `[[syncs]]` entry) and what sheetsync will do
/// with it.
#[derive(Debug, Clone)]
pub struct SyncPlan {
    pub name: String,
    /// The id leases and the run history key the sync by: a view's
    /// `views.id` (which `data_metadata.view_id` refers to), or
    /// [`CONFIGURED_ID_PREFIX`] and the entry's name.
    pub id: String,
    pub origin: Origin,
    pub resolution: Resolution,
}

/// Where a sync is declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A document of the dashboard's `views` collection.
    View,
    /// A `[[syncs]]` entry of the config file.
    Configured,
}

/// The prefix of a configured sync's id: leases and `sync_runs` key syncs
/// by id, and views' ids are UUIDs, so the two never meet (a view whose id
/// has it is refused).
pub const CONFIGURED_ID_PREFIX: &str = "sync:";

#[derive(Debug, Clone)]
pub enum Resolution {
    /// Ready to sync.
    Sync(SyncTarget),
    /// The Master view aggregates the others and has no collection of its own.
    Master,
    /// Cannot be synced as configured; the reason says what to change.
    Invalid(String),
}

#[derive(Debug, Clone)]
pub struct SyncTarget {
    /// What the records are and how they are applied.
    pub profile: Arc<TargetProfile>,
    /// Which database holds `collection`.
    pub place: Place,
    pub collection: String,
    pub source: SourceSpec,
    /// The source as recorded in `data_metadata.source_url` (secrets redacted).
    pub source_url: String,
    /// How the source's cells are read.
    pub read_settings: ReadSettings,
    /// What a run does when a column the stored records fill is lost.
    pub on_lost_column: OnLostColumn,
    /// Header labels no field takes on purpose: the profile's and the sync's.
    pub ignore_columns: Vec<String>,
}

/// A sync as `sheetsync check` lists it.
#[derive(Debug, Serialize)]
pub struct SyncSummary {
    pub name: String,
    pub view_id: String,
    pub collection: Option<String>,
    pub source: Option<String>,
    pub status: String,
}

/// Where a target's collection lives.
#[derive(Clone, PartialEq, Eq)]
pub enum Place {
    /// The sales database, which holds the views.
    Main,
    /// Another application's database (a `[[syncs]]` entry's), on the server
    /// `mongo_url` names.
    Other { database: String, mongo_url: String },
}

impl std::fmt::Debug for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::Main => write!(f, "Main"),
            Place::Other { database, mongo_url } => f
                .debug_struct("Other")
                .field("database", database)
                .field("mongo_url", &crate::redact::redact_url(mongo_url))
                .finish(),
        }
    }
}

impl SyncPlan {
    /// What to read and where to write, for a view that can be synced.
    pub fn target(&self) -> Option<&SyncTarget> {
        match &self.resolution {
            Resolution::Sync(target) => Some(target),
            _ => None,
        }
    }

    /// Whether this is a `[[syncs]]` entry rather than a view.
    pub fn is_configured(&self) -> bool {
        self.origin == Origin::Configured
    }

    pub fn is_master(&self) -> bool {
        matches!(self.resolution, Resolution::Master)
    }

    pub fn summary(&self) -> SyncSummary {
        let (collection, source, status) = match &self.resolution {
            Resolution::Sync(target) => (
                Some(target.qualified_collection()),
                Some(target.source.describe()),
                format!("ok ({})", target.source.source_type().as_str()),
            ),
            Resolution::Master => (
                None,
                None,
                "master view: aggregates the others, never written".to_owned(),
            ),
            Resolution::Invalid(reason) => (None, None, format!("error: {reason}")),
        };
        SyncSummary {
            name: self.name.clone(),
            view_id: self.id.clone(),
            collection,
            source,
            status,
        }
    }
}

impl SyncTarget {
    /// The collection, with its database when it is not the main one.
    pub fn qualified_collection(&self) -> String {
        match &self.place {
            Place::Main => self.collection.clone(),
            Place::Other { database, .. } => format!("{database}.{}", self.collection),
        }
    }
}
