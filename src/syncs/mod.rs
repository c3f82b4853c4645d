//! What to sync: the sales dashboard's views (from its `views` collection)
//! and the syncs the config file declares (`[[syncs]]`), resolved into one
//! list of plans that the engine runs alike.

pub mod configured;
pub mod views;

use std::sync::Arc;

use mongodb::Database;
use serde::Serialize;

use crate::config::Config;
use crate::mapping::conventions::ReadSettings;
use crate::mapping::profile::TargetProfile;
use crate::source::SourceSpec;
use crate::store::StoreError;

pub use views::VIEWS_COLLECTION;

/// One sync (a view, or a `[[syncs]]` entry) and what sheetsync will do
/// with it.
#[derive(Debug, Clone)]
pub struct ViewPlan {
    pub name: String,
    /// `views.id`, which `data_metadata.view_id` refers to.
    pub view_id: String,
    pub resolution: Resolution,
}

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
}

/// A view as `sheetsync check` lists it.
#[derive(Debug, Serialize)]
pub struct ViewSummary {
    pub name: String,
    pub view_id: String,
    pub collection: Option<String>,
    pub source: Option<String>,
    pub status: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ViewsError {
    #[error(transparent)]
    Read(#[from] StoreError),
    #[error("view {0:?} is the Master view: it aggregates the others and has no collection to sync")]
    MasterSelected(String),
    #[error("unknown view(s) {unknown}; the views collection has: {available}")]
    Unknown { unknown: String, available: String },
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

/// Whether a configured sync's target is a view's collection (views live in
/// the main database).
fn writes_same_collection(view: &ViewPlan, sync: &ViewPlan, config: &Config) -> bool {
    let (Some(view), Some(sync)) = (view.target(), sync.target()) else {
        return false;
    };
    let in_main = match &sync.place {
        Place::Main => true,
        Place::Other { database, mongo_url } => *database == config.db_name && *mongo_url == config.mongo_url,
    };
    in_main && view.collection == sync.collection
}

/// Every sync: the views, then the configured syncs. A configured sync
/// named like a view is refused (names select syncs everywhere).
pub async fn load_plans(db: &Database, config: &Config) -> Result<Vec<ViewPlan>, ViewsError> {
    let mut plans = views::load(db, config).await?;
    let configured = configured::plans(config);
    for mut plan in configured {
        if let Some(view) = plans.iter().find(|view| view.name.eq_ignore_ascii_case(&plan.name)) {
            plan.resolution = Resolution::Invalid(format!(
                "sync {:?} has the name of view {:?}; rename it in the config",
                plan.name, view.name
            ));
        } else if let Some(view) = plans.iter().find(|view| writes_same_collection(view, &plan, config)) {
            plan.resolution = Resolution::Invalid(format!(
                "sync {:?} would write the collection of view {:?}; give it another collection",
                plan.name, view.name
            ));
        }
        plans.push(plan);
    }
    Ok(plans)
}

/// Keeps the named views (all when `names` is empty). Names match
/// case-insensitively; an unknown name is an error listing the known ones.
pub fn select(plans: Vec<ViewPlan>, names: &[String]) -> Result<Vec<ViewPlan>, ViewsError> {
    if names.is_empty() {
        return Ok(plans);
    }
    let unknown: Vec<&String> = names
        .iter()
        .filter(|name| !plans.iter().any(|plan| plan.name.eq_ignore_ascii_case(name)))
        .collect();
    if !unknown.is_empty() {
        return Err(ViewsError::Unknown {
            unknown: unknown
                .iter()
                .map(|name| format!("{name:?}"))
                .collect::<Vec<_>>()
                .join(", "),
            available: plans
                .iter()
                .map(|plan| format!("{:?}", plan.name))
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let selected: Vec<ViewPlan> = plans
        .into_iter()
        .filter(|plan| names.iter().any(|name| plan.name.eq_ignore_ascii_case(name)))
        .collect();
    if let Some(master) = selected.iter().find(|plan| plan.is_master()) {
        return Err(ViewsError::MasterSelected(master.name.clone()));
    }
    Ok(selected)
}

impl ViewPlan {
    /// What to read and where to write, for a view that can be synced.
    pub fn target(&self) -> Option<&SyncTarget> {
        match &self.resolution {
            Resolution::Sync(target) => Some(target),
            _ => None,
        }
    }

    pub fn is_master(&self) -> bool {
        matches!(self.resolution, Resolution::Master)
    }

    pub fn summary(&self) -> ViewSummary {
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
        ViewSummary {
            name: self.name.clone(),
            view_id: self.view_id.clone(),
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
