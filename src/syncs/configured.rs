//! The config file's `[[syncs]]`: sheets kept in step with collections of
//! other applications' databases (the customer-success platform's
//! `customers`), each with its own target profile.

use super::settings::{ConfiguredSync, SyncsConfig, ignored_labels};
use crate::redact::redact_url;
use crate::source::SourceSpec;
use crate::source::policy::SourcePolicy;

use super::plan::{CONFIGURED_ID_PREFIX, Origin, Place, Resolution, SyncPlan, SyncTarget};
use super::reserved::is_reserved_collection;

/// One plan per `[[syncs]]` entry; a source the policy refuses makes its
/// plan invalid, not the config.
pub fn plans(config: &SyncsConfig<'_>) -> Vec<SyncPlan> {
    let policy = SourcePolicy::new(config.sources);
    config
        .configured
        .iter()
        .map(|sync| plan(sync, config, &policy))
        .collect()
}

fn plan(sync: &ConfiguredSync, config: &SyncsConfig<'_>, policy: &SourcePolicy) -> SyncPlan {
    let entry = &sync.entry;
    let resolution = match target(sync, config, policy) {
        Ok(target) => Resolution::Sync(target),
        Err(reason) => Resolution::Invalid(reason),
    };
    SyncPlan {
        name: entry.name.clone(),
        id: format!("{CONFIGURED_ID_PREFIX}{}", entry.name),
        origin: Origin::Configured,
        resolution,
    }
}

fn target(sync: &ConfiguredSync, config: &SyncsConfig<'_>, policy: &SourcePolicy) -> Result<SyncTarget, String> {
    let entry = &sync.entry;
    let collection = &sync.collection;
    let own = [
        crate::store::runs::SYNC_RUNS_COLLECTION,
        crate::store::lease::SYNC_LOCKS_COLLECTION,
    ];
    let in_main_database = entry.database == config.main_database && sync.mongo_url == config.main_url;
    if own.contains(&collection.as_str())
        || collection.starts_with(crate::apply::swap::STAGING_PREFIX)
        || (in_main_database && is_reserved_collection(collection))
    {
        return Err(format!(
            "sync {:?} would write `{}.{collection}`, which holds other data (sheetsync's or the dashboard's); \
             choose another collection",
            entry.name, entry.database
        ));
    }
    let spec = SourceSpec::parse(&entry.source, entry.sheet_name.as_deref()).map_err(|error| error.to_string())?;
    let spec = policy
        .admit(spec)
        .map_err(|refusal| format!("sync {:?}: {refusal}", entry.name))?;
    let source_url = match &spec {
        SourceSpec::File { .. } => spec.describe(),
        _ => redact_url(&entry.source),
    };
    Ok(SyncTarget {
        profile: sync.profile.clone(),
        place: Place::Other {
            database: entry.database.clone(),
            mongo_url: sync.mongo_url.clone(),
        },
        collection: sync.collection.clone(),
        source: spec,
        source_url,
        read_settings: config.read_settings(entry.date_order, entry.time_zone.as_deref()),
        on_lost_column: entry.on_lost_column.unwrap_or(config.on_lost_column),
        ignore_columns: ignored_labels(&sync.profile, &entry.ignore_columns),
    })
}
