//! What one sync's apply step works with, whichever its mode, and the
//! checks both modes share.

use mongodb::Database;

use super::checkpoint::Checkpoint;
use super::guards::{
    ColumnEvidence, FillCounts, GuardError, GuardLimits, OnLostColumn, check_columns, column_problems,
};
use crate::mapping::profile::TargetProfile;
use crate::mapping::{HeaderColumn, Mapper, Survey};
use crate::progress::Progress;
use crate::report::SyncReport;
use crate::source::SourceRows;

/// The `[sync]` settings the apply step follows.
#[derive(Debug, Clone, Copy)]
pub struct ApplySettings {
    pub guards: GuardLimits,
    /// Documents per insert into staging, and statements per write command
    /// of a merge.
    pub batch_size: usize,
    /// Staging insert batches in flight at once (`[mongo] insert_workers`).
    pub insert_workers: usize,
    /// A merge's change set up to this size goes in one transaction, where
    /// the server has them; `None`: never.
    pub transaction_max: Option<usize>,
    /// A merge's writes held at most while it compares (see
    /// `merge::Merge::hold`).
    pub held_writes: usize,
    /// A swap target's change set of at most this many documents is written
    /// in place, in one transaction; `None`: always a swap.
    pub delta_max: Option<usize>,
}

/// One sync's survey, its source and its target, ready to be applied.
pub struct ApplyContext<'a> {
    /// The target's database.
    pub db: &'a Database,
    pub collection: &'a str,
    pub profile: &'a TargetProfile,
    /// The sync's id: a view's keys its records' stable ids and its lease.
    pub sync_id: &'a str,
    pub mapper: &'a Mapper<'a>,
    pub survey: &'a Survey,
    /// The source, read again by the later passes.
    pub rows: &'a SourceRows,
    pub settings: ApplySettings,
    /// Read, map and compare, but write nothing.
    pub dry_run: bool,
    /// Apply even when a guard would refuse.
    pub force: bool,
    /// The header of the sync's last successful run, to name a lost
    /// column as people knew it.
    pub previous_header: Option<&'a [HeaderColumn]>,
    /// What to do when a column the stored records fill is lost or emptied.
    pub on_lost_column: OnLostColumn,
    pub checkpoint: Checkpoint<'a>,
    /// Where the run tells how far it has come.
    pub progress: &'a Progress,
}

impl ApplyContext<'_> {
    /// The column guard's verdict on this refresh, from the fields filled
    /// over the pairs of a new record and the stored one it continues
    /// (`blanks_clear`: whether an emptied cell clears a stored value, not
    /// so in a merge with `blank = "keep"`): the problems go in the
    /// report (refused or not); `Ok` holds the fields whose stored values the
    /// run keeps, `Err` says why it must not apply.
    pub(super) fn check_columns(
        &self,
        counts: &FillCounts,
        blanks_clear: bool,
        report: &mut SyncReport,
    ) -> Result<Vec<String>, GuardError> {
        let evidence = ColumnEvidence {
            profile: self.profile,
            header: &self.survey.header,
            previous: self.previous_header,
            counts,
            blanks_clear,
        };
        report.column_problems = column_problems(&evidence);
        let kept = check_columns(
            self.collection,
            &report.column_problems,
            &self.survey.header,
            self.on_lost_column,
            self.force,
        )?;
        for problem in &mut report.column_problems {
            problem.kept = kept.contains(&problem.field);
        }
        Ok(kept)
    }
}

/// Runs CPU-bound work (reading files, parsing and mapping rows, hashing)
/// without holding up the executor's other tasks (the lease renewer, the
/// watchdog ping, `/healthz`): on a multi-threaded runtime the worker hands
/// its other tasks to another thread meanwhile (`block_in_place`); on a
/// single-threaded one (some tests) it runs inline.
pub fn off_executor<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|handle| handle.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}
