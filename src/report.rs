//! What one sync run did: the report people read (text), scripts parse
//! (JSON), the history stores (`sync_runs`) and the daemon shows. It imports
//! only the mapping's and the sources' vocabulary: the engine and the apply
//! step fill it, bookkeeping stores it, the shells show it.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::mapping::conventions::DateOrderDecision;
use crate::mapping::{Duplicate, HeaderColumn, RowIssue};
use crate::source::SourceType;

/// What started a run; recorded with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// `sheetsync sync` from a shell.
    Cli,
    Schedule,
    CatchUp,
    Signal,
    Admin,
    Startup,
    /// The source changed (`[watch]`).
    Change,
}

impl Trigger {
    /// The name logs, metrics and the history use.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Cli => "cli",
            Trigger::Schedule => "schedule",
            Trigger::CatchUp => "catch_up",
            Trigger::Signal => "signal",
            Trigger::Admin => "admin",
            Trigger::Startup => "startup",
            Trigger::Change => "change",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The collection now holds the source's records (or already did).
    Success,
    /// As `Success`, but some rows were rejected or some values unreadable:
    /// the report lists them.
    SuccessWithWarnings,
    /// Everything was read and compared; nothing was written.
    DryRun,
    /// The source was identical to the one last applied, and the target
    /// untouched since: nothing was read from it nor written.
    Unchanged,
    /// Nothing was written; the previous data stands.
    Failed,
}

/// Everything one sync's run did, for people (text), scripts (JSON) and the
/// `sync_runs` history. (A sync is a dashboard view or a `[[syncs]]` entry;
/// the stored and JSON names stay `view` and `view_id`, as the dashboard's
/// history and scripts read them.)
#[derive(Debug, Clone, Serialize)]
pub struct SyncReport {
    pub run_id: String,
    /// The sync's name: the view's, or the `[[syncs]]` entry's.
    #[serde(rename = "view")]
    pub name: String,
    /// The sync's id: `views.id`, or `sync:` and the entry's name.
    #[serde(rename = "view_id")]
    pub sync_id: String,
    pub trigger: Trigger,
    pub collection: Option<String>,
    pub source: Option<String>,
    pub source_type: Option<SourceType>,
    /// The Google Sheets tab read, for links to its rows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tab_gid: Option<i64>,
    /// A digest of the source's rows and of the sync's recipe (target,
    /// reading), recorded so that the next run can tell an identical source.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_digest: Option<String>,
    /// The target collection's identity and count after the run (see
    /// `store::runs::collection_mark`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_mark: Option<String>,
    /// How a swap target's records were written: `swap` (a new collection
    /// renamed over the old) or `in_place` (the changed documents, in one
    /// transaction).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_path: Option<&'static str>,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub header_row: Option<usize>,
    pub rows_read: usize,
    pub blank_rows: usize,
    pub records_written: usize,
    pub duplicates_merged: usize,
    pub duplicates: Vec<Duplicate>,
    pub rejected: Vec<RowIssue>,
    pub warnings: Vec<RowIssue>,
    pub unknown_columns: Vec<String>,
    /// The source's header: each labelled column and the field it feeds.
    /// Stored with every run, so that the next one can tell what changed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub header: Vec<HeaderColumn>,
    /// Fields the source no longer fills (see [`ColumnProblem`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub column_problems: Vec<ColumnProblem>,
    /// How the source's numeric dates were read, and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date_order: Option<DateOrderDecision>,
    /// Facts about the whole run worth telling: a spreadsheet's clock that
    /// differs from the configured one, collection options the server did
    /// not keep through the swap.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notices: Vec<String>,
    pub changes: Changes,
    /// Each record that continues an old one under another key, e.g.
    /// `Globex: D POA Booked -> C Proposal sent, id kept`.
    pub moves: Vec<String>,
    /// Clients whose records changed in ways that could not be paired.
    pub ambiguous: Vec<String>,
    /// What a merge wrote (targets with `apply = "merge"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merge: Option<MergeSummary>,
    /// False when nothing changed and the collection was left as it was, or
    /// on a dry run or failure.
    pub swapped: bool,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub duration_ms: u64,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::SuccessWithWarnings => "success_with_warnings",
            Outcome::DryRun => "dry_run",
            Outcome::Unchanged => "unchanged",
            Outcome::Failed => "failed",
        }
    }
}

impl SyncReport {
    /// A report of a run that has not done anything yet: failed, until the
    /// engine says otherwise. `run_id` is a fresh one unless given.
    pub fn new(name: &str, sync_id: &str, trigger: Trigger, run_id: Option<Uuid>) -> SyncReport {
        let now = Utc::now();
        SyncReport {
            run_id: run_id.unwrap_or_else(Uuid::new_v4).simple().to_string(),
            name: name.to_owned(),
            sync_id: sync_id.to_owned(),
            trigger,
            collection: None,
            source: None,
            source_type: None,
            tab_gid: None,
            source_digest: None,
            target_mark: None,
            write_path: None,
            outcome: Outcome::Failed,
            error: None,
            header_row: None,
            rows_read: 0,
            blank_rows: 0,
            records_written: 0,
            duplicates_merged: 0,
            duplicates: Vec::new(),
            rejected: Vec::new(),
            warnings: Vec::new(),
            unknown_columns: Vec::new(),
            header: Vec::new(),
            column_problems: Vec::new(),
            date_order: None,
            notices: Vec::new(),
            changes: Changes::default(),
            moves: Vec::new(),
            ambiguous: Vec::new(),
            merge: None,
            swapped: false,
            started_at: now,
            finished_at: now,
            duration_ms: 0,
        }
    }

    pub fn succeeded(&self) -> bool {
        self.outcome != Outcome::Failed
    }

    /// The outcome of a run whose records are in place: success, or success
    /// with warnings when rows were rejected or values unreadable.
    pub fn applied_outcome(&self) -> Outcome {
        if self.rejected.is_empty() && self.warnings.is_empty() {
            Outcome::Success
        } else {
            Outcome::SuccessWithWarnings
        }
    }
}

/// How the change set was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum WriteMode {
    /// Nothing differed; nothing was sent.
    Nothing,
    /// All changes in one transaction: all or none.
    Transaction,
    /// Ordered batches, each document's write idempotent.
    OrderedBatches { batches: usize },
}

/// What a merge did, for the report.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct MergeSummary {
    /// Documents inserted, updated or deleted.
    pub documents_written: usize,
    /// `$set`/`$unset` field writes, `updated_at` excluded.
    pub fields_written: usize,
    pub write_mode: Option<WriteMode>,
    /// Documents whose key the source no longer has (kept, unless the
    /// profile says `on_missing = "delete"`), by their stored key.
    pub not_in_source: Vec<String>,
    pub not_in_source_count: usize,
    pub deleted: usize,
}

/// A field the stored records hold that the source no longer fills: its
/// column is gone from the header (or no longer maps to it), or emptied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ColumnProblem {
    pub field: String,
    /// The column's label in the last successful run, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub kind: ColumnProblemKind,
    /// Stored records (of those the refresh replaces or merges into) that
    /// hold a value in the field.
    pub stored_filled: u64,
    /// Records of the source that would.
    pub new_filled: u64,
    /// An unmapped label of the new header that may be the column renamed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maybe: Option<String>,
    /// The run carried the stored values over (`on_lost_column = "keep"`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub kept: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnProblemKind {
    /// No column of the header feeds the field any more.
    Lost,
    /// A column feeds it, but far fewer records hold a value.
    Emptied,
}

impl ColumnProblem {
    /// The column as people know it: its label and field, or the field.
    pub fn column(&self) -> String {
        match &self.label {
            Some(label) => format!("`{label}` ({})", self.field),
            None => format!("`{}`", self.field),
        }
    }

    /// One sentence for the report and the refusal.
    pub fn describe(&self) -> String {
        let what = match self.kind {
            ColumnProblemKind::Lost => format!(
                "column {} is missing from the header: {} stored record(s) hold a value, {} would",
                self.column(),
                self.stored_filled,
                self.new_filled
            ),
            ColumnProblemKind::Emptied => format!(
                "column {} was emptied: {} stored record(s) hold a value, {} would",
                self.column(),
                self.stored_filled,
                self.new_filled
            ),
        };
        match &self.maybe {
            Some(label) => format!(
                "{what}; `{label}` may be `{}`: add it to that field's aliases",
                self.field
            ),
            None => what,
        }
    }
}

/// What a refresh changes compared with the data it replaces.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Changes {
    pub inserted: usize,
    pub updated: usize,
    pub removed: usize,
    /// Records that continue an old record under another key (a stage move,
    /// a respelt client with the same deal link), keeping its id.
    pub moved: usize,
    pub unchanged: usize,
}

impl Changes {
    /// Documents the change set writes: inserted, updated, removed, moved.
    pub fn written(&self) -> usize {
        self.inserted + self.updated + self.removed + self.moved
    }

    pub fn is_empty(&self) -> bool {
        self.written() == 0
    }
}

/// The human-readable report of one cycle.
pub fn render_text(reports: &[SyncReport]) -> String {
    let mut out = String::new();
    for report in reports {
        render_sync(&mut out, report);
    }
    let failed = reports.iter().filter(|report| !report.succeeded()).count();
    let _ = writeln!(out, "{} view(s) synced, {failed} failed", reports.len() - failed);
    out
}

fn render_sync(out: &mut String, report: &SyncReport) {
    let merged = report.merge.as_ref().is_some_and(|merge| merge.documents_written > 0);
    let changed = report.swapped || merged;
    let status = match report.outcome {
        Outcome::Success if changed => "OK",
        Outcome::Success => "OK (no changes)",
        Outcome::SuccessWithWarnings if changed => "OK with warnings (see the rejected rows and warnings)",
        Outcome::SuccessWithWarnings => "OK with warnings, no changes (see the rejected rows and warnings)",
        Outcome::DryRun => "DRY RUN (nothing written)",
        Outcome::Unchanged => "UNCHANGED (source identical)",
        Outcome::Failed if report.swapped => "FAILED after the swap (the new data is in place; see the error)",
        Outcome::Failed => "FAILED (previous data kept)",
    };
    let collection = report.collection.as_deref().unwrap_or("-");
    let _ = writeln!(out, "{} -> {collection}: {status}", report.name);
    if let Some(source) = &report.source {
        let _ = writeln!(out, "  source: {source}");
    }
    if let Some(error) = &report.error {
        let _ = writeln!(out, "  error: {error}");
    }
    let changes = report.changes;
    let _ = writeln!(
        out,
        "  rows read {}, records {}, duplicates merged {}, rejected {}, warnings {}, blank rows {}",
        report.rows_read,
        report.records_written,
        report.duplicates_merged,
        report.rejected.len(),
        report.warnings.len(),
        report.blank_rows
    );
    let _ = writeln!(
        out,
        "  changes: {} inserted, {} updated, {} removed, {} moved, {} unchanged; {} ms",
        changes.inserted, changes.updated, changes.removed, changes.moved, changes.unchanged, report.duration_ms
    );
    if let Some(merge) = &report.merge {
        render_merge(out, merge);
    }
    for moved in &report.moves {
        let _ = writeln!(out, "  moved: {moved}");
    }
    for ambiguous in &report.ambiguous {
        let _ = writeln!(out, "  ambiguous: {ambiguous}");
    }
    if let Some(decision) = &report.date_order {
        let _ = writeln!(out, "  dates read {}: {}", decision.order.describe(), decision.reason);
    }
    for notice in &report.notices {
        let _ = writeln!(out, "  notice: {notice}");
    }
    for duplicate in &report.duplicates {
        let _ = writeln!(
            out,
            "  merged: row {} superseded by row {}",
            duplicate.row, duplicate.superseded_by
        );
    }
    for issue in &report.rejected {
        let _ = writeln!(out, "  rejected: {}", describe_issue(issue));
    }
    for issue in &report.warnings {
        let _ = writeln!(out, "  warning: {}", describe_issue(issue));
    }
    if !report.unknown_columns.is_empty() {
        let _ = writeln!(out, "  ignored columns: {}", report.unknown_columns.join(", "));
    }
}

fn render_merge(out: &mut String, merge: &MergeSummary) {
    let how = match merge.write_mode {
        Some(WriteMode::Nothing) => "nothing to write".to_owned(),
        Some(WriteMode::Transaction) => "in one transaction".to_owned(),
        Some(WriteMode::OrderedBatches { batches }) => format!("in {batches} ordered batch(es)"),
        None => "not written".to_owned(),
    };
    let _ = writeln!(
        out,
        "  written: {} document(s) ({} field(s)), {how}",
        merge.documents_written, merge.fields_written
    );
    if merge.not_in_source_count > 0 {
        let more = merge.not_in_source_count - merge.not_in_source.len();
        let listed = merge.not_in_source.join(", ");
        let tail = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        let fate = if merge.deleted > 0 { "deleted" } else { "kept" };
        let _ = writeln!(
            out,
            "  not in source ({fate}): {} document(s): {listed}{tail}",
            merge.not_in_source_count
        );
    }
}

fn describe_issue(issue: &RowIssue) -> String {
    let mut text = format!("row {}", issue.row);
    if let Some(column) = &issue.column {
        let _ = write!(text, ", column {column:?}");
    }
    if let Some(value) = &issue.value {
        let _ = write!(text, ", value {value:?}");
    }
    let _ = write!(text, ": {}", issue.reason);
    text
}
