//! Indexes before a sync: the schema's, each view's, and each configured
//! sync's target and application indexes.

use mongodb::Database;

use super::databases::Databases;
use crate::mapping::profile::TargetProfile;
use crate::report::SyncReport;
use crate::store::{StoreError, indexes};
use crate::syncs::{SyncPlan, SyncTarget};

/// Creates every schema index, for the given views' collections too (with
/// the views' `profile`), and every configured sync's target and
/// application indexes; returns the collections touched and, apart, the
/// indexes left as they were.
pub(super) async fn ensure_all(
    databases: &Databases,
    profile: &TargetProfile,
    plans: &[SyncPlan],
) -> Result<(Vec<String>, Vec<String>), StoreError> {
    let views = view_collections(plans);
    let mut touched = indexes::ensure_all(databases.main(), &views, &profile.indexes).await?;
    let mut conflicts = Vec::new();
    for target in plans
        .iter()
        .filter(|plan| plan.is_configured())
        .filter_map(SyncPlan::target)
    {
        let db = databases.of(&target.place).await?;
        let outcome = indexes::ensure_app(&db, &target.collection, &target.profile).await?;
        touched.extend(
            outcome
                .touched
                .iter()
                .map(|collection| format!("{}.{collection}", db.name())),
        );
        conflicts.extend(outcome.conflicts);
    }
    Ok((touched, conflicts))
}

/// The views' indexes before a sync, where an index the data does not allow
/// yet (duplicate ids in an old collection, an index another tool created
/// with other options) must not stop the refresh that fixes the data: each
/// failure is logged and the cycle goes on. Staging collections get the
/// record indexes anyway, so a swapped-in collection always has them.
pub(super) async fn ensure_leniently(db: &Database, profile: &TargetProfile, plans: &[SyncPlan]) {
    let views = view_collections(plans);
    for (collection, specs) in indexes::all_targets(&views, &profile.indexes) {
        if let Err(error) = indexes::create(db, collection, specs).await {
            tracing::warn!(%error, "index creation failed; the sync goes on (a view's swap brings its indexes)");
        }
    }
}

/// A configured sync's indexes, its application's and its run history's,
/// leniently (as the views' before a sync): an index the data does not allow
/// yet must not stop the refresh; the report says which.
pub(super) async fn ensure_app_leniently(db: &Database, target: &SyncTarget, report: &mut SyncReport) {
    match indexes::ensure_app(db, &target.collection, &target.profile).await {
        Ok(outcome) => report.notices.extend(outcome.conflicts),
        Err(error) => report.notices.push(format!("indexes not ensured: {error}")),
    }
}

/// The collections of the views among `plans`.
fn view_collections(plans: &[SyncPlan]) -> Vec<String> {
    plans
        .iter()
        .filter(|plan| !plan.is_configured())
        .filter_map(SyncPlan::target)
        .map(|target| target.collection.clone())
        .collect()
}
