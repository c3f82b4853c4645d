//! The list of syncs: the dashboard's views, then the config file's
//! `[[syncs]]`, and the selection of some of them by name.

use mongodb::Database;

use super::configured;
use super::error::ViewsError;
use super::plan::{Place, Resolution, SyncPlan};
use super::settings::SyncsConfig;
use super::views;

/// Whether a configured sync's target is a view's collection (views live in
/// the main database).
fn writes_same_collection(view: &SyncPlan, sync: &SyncPlan, config: &SyncsConfig<'_>) -> bool {
    let (Some(view), Some(sync)) = (view.target(), sync.target()) else {
        return false;
    };
    let in_main = match &sync.place {
        Place::Main => true,
        Place::Other { database, mongo_url } => *database == config.main_database && *mongo_url == config.main_url,
    };
    in_main && view.collection == sync.collection
}

/// Every sync: the views, then the configured syncs. A configured sync
/// named like a view is refused (names select syncs everywhere).
pub async fn load_plans(db: &Database, config: &SyncsConfig<'_>) -> Result<Vec<SyncPlan>, ViewsError> {
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
pub fn select(plans: Vec<SyncPlan>, names: &[String]) -> Result<Vec<SyncPlan>, ViewsError> {
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
    let selected: Vec<SyncPlan> = plans
        .into_iter()
        .filter(|plan| names.iter().any(|name| plan.name.eq_ignore_ascii_case(name)))
        .collect();
    if let Some(master) = selected.iter().find(|plan| plan.is_master()) {
        return Err(ViewsError::MasterSelected(master.name.clone()));
    }
    Ok(selected)
}
