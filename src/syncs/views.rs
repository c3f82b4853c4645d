//! The dashboard's views, read fresh from the `views` collection on every
//! sync (the admin UI edits it, so its content is untrusted input), resolved
//! into what to read and where to write.

use mongodb::Database;
use mongodb::bson::{Bson, Document};

use super::settings::{SyncsConfig, ViewOverride, ignored_labels};
use crate::redact::redact_url;
use crate::source::SourceSpec;
use crate::source::policy::SourcePolicy;

use super::error::ViewsError;
use super::plan::{CONFIGURED_ID_PREFIX, Origin, Place, Resolution, SyncPlan, SyncTarget};
use super::reserved::is_reserved_collection;

/// The schema's `VIEW_COLLECTION_MAP`.
pub const DEFAULT_COLLECTIONS: [(&str, &str); 4] = [
    ("Organic", "sales_records"),
    ("Signal", "sales_records_signal"),
    ("Full Funnel", "sales_records_fullfunnel"),
    ("Market", "sales_records_market"),
];

/// Reads every view and resolves it against the config.
pub async fn load(db: &Database, config: &SyncsConfig<'_>) -> Result<Vec<SyncPlan>, ViewsError> {
    let documents = crate::store::views::read_all(db).await?;
    let policy = SourcePolicy::new(config.sources);
    let mut plans: Vec<SyncPlan> = documents.iter().map(|view| resolve(view, config, &policy)).collect();
    refuse_shared_targets(&mut plans);
    Ok(plans)
}

/// Two views writing one collection would overwrite each other's data at
/// every refresh; both are refused until the config separates them.
fn refuse_shared_targets(plans: &mut [SyncPlan]) {
    let collections: Vec<Option<String>> = plans
        .iter()
        .map(|plan| plan.target().map(|target| target.collection.clone()))
        .collect();
    for (index, collection) in collections.iter().enumerate() {
        let Some(collection) = collection else { continue };
        let sharing: Vec<&str> = collections
            .iter()
            .zip(plans.iter())
            .filter(|(other, _)| other.as_ref() == Some(collection))
            .map(|(_, plan)| plan.name.as_str())
            .collect();
        if sharing.len() > 1 {
            let reason = format!(
                "views {} all write collection `{collection}`; give each view its own collection in the config",
                sharing.join(", ")
            );
            plans[index].resolution = Resolution::Invalid(reason);
        }
    }
}

fn resolve(view: &Document, config: &SyncsConfig<'_>, policy: &SourcePolicy) -> SyncPlan {
    let text = |field: &str| match view.get(field) {
        Some(Bson::String(value)) if !value.trim().is_empty() => Some(value.trim().to_owned()),
        _ => None,
    };
    let name = text("name").unwrap_or_default();
    let view_id = text("id").unwrap_or_default();
    let resolution = if view.get_bool("is_master").unwrap_or(false) {
        Resolution::Master
    } else if name.is_empty() || view_id.is_empty() {
        Resolution::Invalid(format!(
            "the view document {} has no `name` or no `id`; fix it in the admin UI",
            view.get_object_id("_id").map(|id| id.to_hex()).unwrap_or_default()
        ))
    } else if view_id.starts_with(CONFIGURED_ID_PREFIX) {
        // Configured syncs' ids carry this prefix (leases and history are
        // keyed by id): a view may not pass for one.
        Resolution::Invalid(format!(
            "view {name:?} has the id {view_id:?}, which is reserved for syncs of the config file; give it another \
             id in the admin UI"
        ))
    } else {
        let overrides = config.views.get(&name).cloned().unwrap_or_default();
        match resolve_target(&name, overrides, text("sheet_url"), text("sheet_name"), config, policy) {
            Ok(target) => Resolution::Sync(target),
            Err(reason) => Resolution::Invalid(reason),
        }
    };
    SyncPlan {
        name,
        id: view_id,
        origin: Origin::View,
        resolution,
    }
}

fn resolve_target(
    name: &str,
    overrides: ViewOverride,
    sheet_url: Option<String>,
    sheet_name: Option<String>,
    config: &SyncsConfig<'_>,
    policy: &SourcePolicy,
) -> Result<SyncTarget, String> {
    let read_settings = config.read_settings(overrides.date_order, overrides.time_zone.as_deref());
    let on_lost_column = overrides.on_lost_column.unwrap_or(config.on_lost_column);
    let ignore_columns = ignored_labels(&config.views_profile, &overrides.ignore_columns);
    let collection = overrides
        .collection
        .or_else(|| default_collection(name).map(str::to_owned))
        .ok_or_else(|| {
            format!("no collection is known for view {name:?}; set `collection` under [views.\"{name}\"] in the config")
        })?;
    if is_reserved_collection(&collection) {
        return Err(format!(
            "view {name:?} would replace `{collection}`, which holds other data; choose another collection"
        ));
    }
    let source = overrides.source.or(sheet_url).ok_or_else(|| {
        format!("view {name:?} has no sheet_url; set one in the admin UI or `source` under [views.\"{name}\"]")
    })?;
    let sheet_name = overrides.sheet_name.or(sheet_name);
    let spec = SourceSpec::parse(&source, sheet_name.as_deref()).map_err(|error| error.to_string())?;
    let spec = policy
        .admit(spec)
        .map_err(|refusal| format!("view {name:?}: {refusal}"))?;
    let source_url = match &spec {
        SourceSpec::File { .. } => spec.describe(),
        _ => redact_url(&source),
    };
    Ok(SyncTarget {
        profile: config.views_profile.clone(),
        place: Place::Main,
        collection,
        source: spec,
        source_url,
        read_settings,
        on_lost_column,
        ignore_columns,
    })
}

pub fn default_collection(view_name: &str) -> Option<&'static str> {
    DEFAULT_COLLECTIONS
        .iter()
        .find(|(name, _)| *name == view_name)
        .map(|(_, collection)| *collection)
}
