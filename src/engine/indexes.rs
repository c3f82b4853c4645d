//! Indexes before a sync: the schema's, each view's, and each configured
//! sync's target and application indexes.

use mongodb::Database;

use super::Engine;
use crate::report::SyncReport;
use crate::store::{StoreError, indexes};
use crate::syncs::{SyncPlan, SyncTarget};

impl Engine {
    /// Creates every schema index, for the given views' collections too,
    /// and every configured sync's target and application indexes; returns
    /// the collections touched and, apart, the indexes left as they were.
    pub async fn ensure_indexes(&self, plans: &[SyncPlan]) -> Result<(Vec<String>, Vec<String>), StoreError> {
        let profile = self.config.targets.sales_records();
        let views: Vec<SyncPlan> = plans.iter().filter(|plan| !plan.is_configured()).cloned().collect();
        let mut touched = indexes::ensure_all(&self.db, &target_collections(&views), &profile.indexes).await?;
        let mut conflicts = Vec::new();
        for target in plans
            .iter()
            .filter(|plan| plan.is_configured())
            .filter_map(SyncPlan::target)
        {
            let db = self.database(&target.place).await?;
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

    /// The same before a sync, where an index the data does not allow yet
    /// (duplicate ids in an old collection, an index another tool created
    /// with other options) must not stop the refresh that fixes the data:
    /// each failure is logged and the cycle goes on. Staging collections get
    /// the record indexes anyway, so a swapped-in collection always has them.
    pub(super) async fn ensure_indexes_leniently(&self, plans: &[SyncPlan]) {
        let profile = self.config.targets.sales_records();
        let views: Vec<SyncPlan> = plans.iter().filter(|plan| !plan.is_configured()).cloned().collect();
        let collections = target_collections(&views);
        for (collection, specs) in indexes::all_targets(&collections, &profile.indexes) {
            if let Err(error) = indexes::create(&self.db, collection, specs).await {
                tracing::warn!(%error, "index creation failed; the sync goes on (a view's swap brings its indexes)");
            }
        }
    }
}

/// A configured sync's indexes, its application's and its run history's,
/// leniently (as the views' before a sync): an index the data does not allow
/// yet must not stop the refresh; the report says which.
pub(super) async fn ensure_app_indexes(db: &Database, target: &SyncTarget, report: &mut SyncReport) {
    match indexes::ensure_app(db, &target.collection, &target.profile).await {
        Ok(outcome) => report.notices.extend(outcome.conflicts),
        Err(error) => report.notices.push(format!("indexes not ensured: {error}")),
    }
}

fn target_collections(plans: &[SyncPlan]) -> Vec<String> {
    plans
        .iter()
        .filter_map(SyncPlan::target)
        .map(|target| target.collection.clone())
        .collect()
}
