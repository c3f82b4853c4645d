//! `GET /`: the status page for the people who edit the sheets.
//!
//! Server-rendered HTML, no front-end build and no framework: it works with
//! scripts off, and a few lines of script only reload it. Without a session
//! it shows what unauthenticated `/status` shows (names, states, times,
//! counts); signed in, it adds each sync's source, its last error and every
//! rejected row and warning of its last run, each linked to its row in the
//! Google Sheet, and "Refresh now" buttons.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::watched::Freshness;
use crate::progress::ProgressSnapshot;
use crate::report::Changes;

/// Runs shown in a sync's history.
pub const HISTORY_RUNS: usize = 20;

/// One sync as the page shows it, read by the status refresher.
#[derive(Debug, Clone, Default)]
pub struct SyncPage {
    pub name: String,
    pub collection: Option<String>,
    /// The source as described (secrets redacted); signed in only.
    pub source: Option<String>,
    /// The Google Sheet, opened at the right tab (`…/edit#gid=N`): rows are
    /// linked as `{sheet_link}&range=A14`.
    pub sheet_link: Option<String>,
    pub last_run: Option<RunView>,
    pub last_success: Option<DateTime<Utc>>,
    pub records: Option<i64>,
    /// Newest first.
    pub history: Vec<RunPoint>,
    /// Columns the sheet lost, as its editors should hear of them; shown
    /// signed in or not (column names are not the sheet's content).
    pub columns: Vec<ColumnNotice>,
}

/// A column the last run found lost or emptied.
#[derive(Debug, Clone, Default)]
pub struct ColumnNotice {
    /// The column's label as people knew it, else its field.
    pub column: String,
    /// Gone from the header (else emptied).
    pub lost: bool,
    /// The first run of the streak that found it so.
    pub since: Option<DateTime<Utc>>,
    /// The run carried the stored values over (`keep`); else it refused.
    pub kept: bool,
}

/// The last run of a sync, with its counts.
#[derive(Debug, Clone, Default)]
pub struct RunView {
    pub outcome: String,
    pub trigger: String,
    /// How a swap target was written (`swap`, `in_place`), when it was.
    pub write_path: Option<String>,
    pub finished_at: Option<DateTime<Utc>>,
    pub rows_read: i64,
    pub records_written: i64,
    pub duplicates_merged: i64,
    pub rejected: i64,
    pub warnings: i64,
    pub changes: Changes,
    /// The error in full; signed in only.
    pub error: Option<String>,
    /// Rejected rows, then warnings; signed in only.
    pub issues: Vec<IssueView>,
}

#[derive(Debug, Clone, Default)]
pub struct IssueView {
    pub rejected: bool,
    pub row: i64,
    pub column: Option<String>,
    pub value: Option<String>,
    pub reason: String,
}

/// One run of a sync's history, for the chart.
#[derive(Debug, Clone, Default)]
pub struct RunPoint {
    pub started_at: Option<DateTime<Utc>>,
    pub duration_ms: i64,
    pub records: i64,
    pub failed: bool,
}

/// Where a sync stands in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Idle,
    Running,
    /// Running, with another run waiting for it.
    Queued,
}

/// Everything one rendering needs.
#[derive(Debug)]
pub struct Page<'a> {
    pub now: DateTime<Utc>,
    pub zone: Tz,
    pub next_run: Option<DateTime<Utc>>,
    pub syncs: Vec<(&'a SyncPage, State)>,
    /// Each sync's source as the watcher last saw it, by sync name (`None`
    /// when the daemon does not watch).
    pub freshness: Option<std::collections::HashMap<String, Freshness>>,
    /// Where each running sync is, by sync name.
    pub progress: std::collections::HashMap<String, ProgressSnapshot>,
    /// Why the syncs could not be read last time (signed in only).
    pub problem: Option<String>,
    pub refreshed_at: Option<DateTime<Utc>>,
    /// The session's CSRF token, when signed in.
    pub csrf: Option<&'a str>,
    /// Whether a login form is offered (an admin token is configured).
    pub can_sign_in: bool,
    /// A message for the reader (a failed sign-in, a refresh started).
    pub flash: Option<&'a str>,
}

/// Text made safe for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

/// "2 h ago", "in 5 min": how people read times at a glance.
pub fn relative(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let seconds = (now - at).num_seconds();
    let (amount, future) = (seconds.unsigned_abs(), seconds < 0);
    let text = match amount {
        0..=59 => {
            return if future {
                "in a moment".to_owned()
            } else {
                "just now".to_owned()
            };
        }
        60..=3599 => format!("{} min", amount / 60),
        3600..=86_399 => format!("{} h", amount / 3600),
        _ => format!("{} d", amount / 86_400),
    };
    if future {
        format!("in {text}")
    } else {
        format!("{text} ago")
    }
}

/// A `<time>` showing the relative time, the exact one on hover.
fn time(at: Option<DateTime<Utc>>, page: &Page<'_>) -> String {
    match at {
        None => "never".to_owned(),
        Some(at) => {
            let local = at.with_timezone(&page.zone);
            format!(
                "<time datetime=\"{}\" title=\"{}\">{}</time>",
                at.to_rfc3339(),
                local.format("%Y-%m-%d %H:%M:%S %Z"),
                relative(at, page.now)
            )
        }
    }
}

const STYLE: &str = "body{font:15px/1.45 system-ui,sans-serif;margin:1.5rem auto;max-width:72rem;padding:0 1rem;color:#1d2430}\
h1{font-size:1.4rem}h2{font-size:1.1rem;margin:0}table{border-collapse:collapse;width:100%}\
td,th{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #e3e6ea;vertical-align:top}\
.sync{border:1px solid #d5d9de;border-radius:8px;padding:1rem;margin:1rem 0}\
.head{display:flex;gap:1rem;align-items:center;flex-wrap:wrap}.muted{color:#5b6573}\
.badge{border-radius:999px;padding:.1rem .6rem;font-size:.85rem;background:#eef0f3}\
.success{background:#dcf5e3}.success_with_warnings{background:#fff1c7}.failed{background:#fddede}\
.running,.queued{background:#dbe9ff}.counts span{margin-right:1rem}.error{color:#9b1c1c;white-space:pre-wrap}\
form{display:inline}button{font:inherit;padding:.25rem .8rem;border-radius:6px;border:1px solid #8a94a3;background:#fff;cursor:pointer}\
.bar{fill:#8fb3e8}.bar.failed{fill:#e89090}.line{fill:none;stroke:#2e7d4f;stroke-width:1.5}";

/// Reloads the page now and then, faster while something runs, never while
/// someone is typing the token.
const SCRIPT: &str = "setTimeout(function(){var a=document.activeElement;\
if(!a||a.tagName!=='INPUT'){location.replace(location.pathname);}},";

/// The page.
pub fn render(page: &Page<'_>) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let busy = page.syncs.iter().any(|(_, state)| *state != State::Idle);
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>sheetsync status</title><style>{STYLE}</style></head><body>\
         <h1>sheetsync</h1>"
    );
    render_header(&mut out, page);
    for (sync, state) in &page.syncs {
        render_sync(&mut out, page, sync, *state);
    }
    if page.syncs.is_empty() {
        out.push_str("<p>No syncs yet: the views collection is empty and the config declares none.</p>");
    }
    let delay = if busy { 3000 } else { 15000 };
    let _ = write!(out, "<script>{SCRIPT}{delay});</script></body></html>");
    out
}

fn render_header(out: &mut String, page: &Page<'_>) {
    let _ = write!(
        out,
        "<p class=\"muted\">Next scheduled run: {} ({}). Read {}.</p>",
        page.next_run.map_or("none".to_owned(), |next| {
            next.with_timezone(&page.zone).format("%a %d %b %H:%M %Z").to_string()
        }),
        escape(page.zone.name()),
        time(page.refreshed_at, page)
    );
    if let Some(flash) = page.flash {
        let _ = write!(out, "<p class=\"badge\">{}</p>", escape(flash));
    }
    if let (Some(problem), Some(_)) = (&page.problem, page.csrf) {
        let _ = write!(
            out,
            "<p class=\"error\">Could not read the syncs: {}</p>",
            escape(problem)
        );
    }
    match page.csrf {
        Some(csrf) => {
            let _ = write!(
                out,
                "<p><form method=\"post\" action=\"/refresh\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                 <button type=\"submit\" id=\"refresh-all\">Refresh all now</button></form> \
                 <form method=\"post\" action=\"/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                 <button type=\"submit\">Sign out</button></form></p>",
                csrf = escape(csrf)
            );
        }
        None if page.can_sign_in => out.push_str(
            "<form method=\"post\" action=\"/login\" id=\"login\"><label>Admin token \
             <input type=\"password\" name=\"token\" autocomplete=\"current-password\" required></label> \
             <button type=\"submit\">Sign in</button></form>\
             <p class=\"muted\">Sign in to see sources, errors and the rows to fix, and to refresh.</p>",
        ),
        None => {}
    }
}

fn render_sync(out: &mut String, page: &Page<'_>, sync: &SyncPage, state: State) {
    let signed_in = page.csrf.is_some();
    let id = sync_id(&sync.name);
    let (state_class, state_text) = match state {
        State::Idle => ("idle", "idle"),
        State::Running => ("running", "running"),
        State::Queued => ("queued", "running, another run queued"),
    };
    let _ = write!(
        out,
        "<section class=\"sync\" id=\"{id}\" data-state=\"{state_class}\"><div class=\"head\"><h2>{}</h2>\
         <span class=\"badge {state_class}\">{state_text}</span>",
        escape(&sync.name)
    );
    if let Some(now) = page.progress.get(&sync.name).filter(|_| state != State::Idle) {
        let _ = write!(out, "<span class=\"progress\">{}</span>", escape(&now.describe_phase()));
    }
    if let Some(run) = &sync.last_run {
        let _ = write!(
            out,
            "<span class=\"badge {}\">{}</span><span class=\"last-run\">last run {}</span>",
            escape(&run.outcome),
            escape(&run.outcome.replace('_', " ")),
            time(run.finished_at, page)
        );
    }
    if let Some(csrf) = page.csrf {
        let _ = write!(
            out,
            "<form method=\"post\" action=\"/refresh\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <input type=\"hidden\" name=\"sync\" value=\"{}\"><button type=\"submit\" class=\"refresh\">Refresh now</button></form>",
            escape(csrf),
            escape(&sync.name)
        );
    }
    out.push_str("</div>");
    for notice in &sync.columns {
        render_column_notice(out, notice, sync.last_success, page);
    }
    out.push_str("<table>");
    let row = |out: &mut String, label: &str, value: String| {
        let _ = write!(out, "<tr><th>{label}</th><td>{value}</td></tr>");
    };
    row(out, "Collection", escape(sync.collection.as_deref().unwrap_or("-")));
    if signed_in {
        let source = match (&sync.source, &sync.sheet_link) {
            (Some(source), Some(link)) => format!("<a href=\"{}\">{}</a>", escape(link), escape(source)),
            (Some(source), None) => escape(source),
            _ => "-".to_owned(),
        };
        row(out, "Source", source);
    }
    if let Some(freshness) = &page.freshness {
        row(out, "Sheet last edited", edited(freshness.get(&sync.name), page));
    }
    row(out, "Last success", time(sync.last_success, page));
    row(
        out,
        "Records",
        sync.records.map_or("-".to_owned(), |records| records.to_string()),
    );
    if let Some(run) = &sync.last_run {
        row(out, "Last run", run_counts(run));
    }
    if !sync.history.is_empty() {
        row(out, "History", chart(&sync.history));
    }
    out.push_str("</table>");
    if let (true, Some(run)) = (signed_in, &sync.last_run) {
        render_details(out, sync, run);
    }
    out.push_str("</section>");
}

/// When the source was last edited, and when it is checked next: what
/// people need to tell whether their edit is on its way.
fn edited(freshness: Option<&Freshness>, page: &Page<'_>) -> String {
    match freshness {
        None => "<span class=\"muted\">not looked at yet</span>".to_owned(),
        Some(freshness) if freshness.not_watched => format!(
            "{} <span class=\"muted\">(not watched: synced on schedule only)</span>",
            freshness.edited.map_or("unknown".to_owned(), |at| time(Some(at), page))
        ),
        Some(freshness) => format!(
            "{} <span class=\"muted next-check\">· next check {}</span>",
            freshness.edited.map_or("unknown".to_owned(), |at| time(Some(at), page)),
            time(freshness.next_check, page)
        ),
    }
}

/// "The column Expected MRR is missing from the sheet since 14:02; the
/// dashboard keeps the values of 12:00 until it is back or mapped."
fn render_column_notice(out: &mut String, notice: &ColumnNotice, last_success: Option<DateTime<Utc>>, page: &Page<'_>) {
    let what = match notice.lost {
        true => "is missing from the sheet",
        false => "was emptied in the sheet",
    };
    let until = match notice.lost {
        true => "until it is back or mapped",
        false => "until it is filled again or the refresh is forced",
    };
    let since = notice
        .since
        .map(|since| format!(" since {}", clock(since, page)))
        .unwrap_or_default();
    let keeps = match (notice.kept, last_success) {
        (true, _) => "its last values are kept".to_owned(),
        (false, Some(at)) => format!("the dashboard keeps the values of {}", clock(at, page)),
        (false, None) => "the dashboard keeps its previous values".to_owned(),
    };
    let _ = write!(
        out,
        "<p class=\"error column\">The column {} {what}{since}; {keeps} {until}.</p>",
        escape(&notice.column)
    );
}

/// A moment as a wall clock in the page's zone: the time today, else the
/// date and time.
fn clock(at: DateTime<Utc>, page: &Page<'_>) -> String {
    let local = at.with_timezone(&page.zone);
    let today = page.now.with_timezone(&page.zone).date_naive() == local.date_naive();
    let shown = match today {
        true => local.format("%H:%M").to_string(),
        false => local.format("%Y-%m-%d %H:%M").to_string(),
    };
    format!("<time datetime=\"{}\">{shown}</time>", at.to_rfc3339())
}

fn run_counts(run: &RunView) -> String {
    let changes = run.changes;
    format!(
        "<div class=\"counts\"><span>read {}</span><span>written {}</span><span>merged {}</span>\
         <span>rejected {}</span><span>warnings {}</span></div><div class=\"counts muted\">\
         <span>inserted {}</span><span>updated {}</span><span>removed {}</span><span>moved {}</span>\
         <span>unchanged {}</span><span>({}{})</span></div>",
        run.rows_read,
        run.records_written,
        run.duplicates_merged,
        run.rejected,
        run.warnings,
        changes.inserted,
        changes.updated,
        changes.removed,
        changes.moved,
        changes.unchanged,
        escape(&run.trigger),
        match run.write_path.as_deref() {
            Some("in_place") => ", written in place",
            Some("swap") => ", swapped",
            _ => "",
        }
    )
}

fn render_details(out: &mut String, sync: &SyncPage, run: &RunView) {
    if let Some(error) = &run.error {
        let _ = write!(out, "<p class=\"error\">{}</p>", escape(error));
    }
    if run.issues.is_empty() {
        return;
    }
    out.push_str(
        "<table class=\"issues\"><tr><th></th><th>Row</th><th>Column</th><th>Value as read</th><th>Reason</th></tr>",
    );
    for issue in &run.issues {
        let row = match &sync.sheet_link {
            Some(link) => format!(
                "<a href=\"{}&amp;range=A{}\">{}</a>",
                escape(link),
                issue.row,
                issue.row
            ),
            None => issue.row.to_string(),
        };
        let _ = write!(
            out,
            "<tr class=\"issue\"><td>{}</td><td>{row}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            if issue.rejected { "rejected" } else { "warning" },
            escape(issue.column.as_deref().unwrap_or("")),
            escape(issue.value.as_deref().unwrap_or("")),
            escape(&issue.reason)
        );
    }
    out.push_str("</table>");
}

/// Bars of duration and a line of records, oldest run on the left.
fn chart(history: &[RunPoint]) -> String {
    const WIDTH: usize = 240;
    const HEIGHT: i64 = 40;
    let longest = history.iter().map(|run| run.duration_ms).max().unwrap_or(1).max(1);
    let most = history.iter().map(|run| run.records).max().unwrap_or(1).max(1);
    let step = WIDTH / HISTORY_RUNS;
    let mut bars = String::new();
    let mut points = Vec::new();
    for (index, run) in history.iter().rev().enumerate() {
        let x = index * step;
        let height = (run.duration_ms * HEIGHT / longest).max(1);
        let class = if run.failed { "bar failed" } else { "bar" };
        let _ = write!(
            bars,
            "<rect class=\"{class}\" x=\"{x}\" y=\"{}\" width=\"{}\" height=\"{height}\"><title>{} ms, {} records</title></rect>",
            HEIGHT - height,
            step - 2,
            run.duration_ms,
            run.records
        );
        points.push(format!("{},{}", x + step / 2, HEIGHT - run.records * HEIGHT / most));
    }
    format!(
        "<svg width=\"{WIDTH}\" height=\"{HEIGHT}\" role=\"img\" aria-label=\"duration (bars) and records (line) of \
         the last runs\">{bars}<polyline class=\"line\" points=\"{}\"/></svg> \
         <span class=\"muted\">duration (bars), records (line); longest {longest} ms</span>",
        points.join(" ")
    )
}

/// An HTML id for a sync's section.
pub fn sync_id(name: &str) -> String {
    let slug: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    format!("sync-{slug}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SyncPage {
        SyncPage {
            name: "Organic <x>".into(),
            collection: Some("sales_records".into()),
            source: Some("https://docs.google.com/spreadsheets/d/abc".into()),
            sheet_link: Some("https://docs.google.com/spreadsheets/d/abc/edit#gid=7".into()),
            last_run: Some(RunView {
                outcome: "success_with_warnings".into(),
                trigger: "schedule".into(),
                rows_read: 14,
                rejected: 1,
                error: Some("bad <thing>".into()),
                issues: vec![IssueView {
                    rejected: true,
                    row: 14,
                    column: Some("Stage".into()),
                    value: Some("31/02/2025".into()),
                    reason: "unreadable date".into(),
                }],
                ..RunView::default()
            }),
            history: vec![RunPoint {
                duration_ms: 120,
                records: 13,
                ..RunPoint::default()
            }],
            ..SyncPage::default()
        }
    }

    fn page<'a>(sync: &'a SyncPage, csrf: Option<&'a str>) -> Page<'a> {
        Page {
            now: Utc::now(),
            zone: chrono_tz::Europe::Paris,
            next_run: None,
            syncs: vec![(sync, State::Running)],
            freshness: None,
            progress: std::collections::HashMap::new(),
            problem: None,
            refreshed_at: None,
            csrf,
            can_sign_in: true,
            flash: None,
        }
    }

    #[test]
    fn the_page_says_when_the_sheet_was_edited_and_checked_next() {
        let sync = sample();
        let now = Utc::now();
        let mut watched = page(&sync, None);
        let freshness = Freshness {
            edited: Some(now - chrono::Duration::minutes(3)),
            next_check: Some(now + chrono::Duration::seconds(90)),
            not_watched: false,
        };
        watched.freshness = Some([(sync.name.clone(), freshness.clone())].into_iter().collect());
        let html = render(&watched);
        assert!(html.contains("Sheet last edited"), "{html}");
        assert!(
            html.contains("3 min ago") && html.contains("next check <time"),
            "{html}"
        );
        let refused = Freshness {
            not_watched: true,
            ..freshness
        };
        watched.freshness = Some([(sync.name.clone(), refused)].into_iter().collect());
        assert!(render(&watched).contains("not watched: synced on schedule only"));
        assert!(
            !render(&page(&sync, None)).contains("Sheet last edited"),
            "not watching"
        );
    }

    #[test]
    fn without_a_session_only_names_states_times_and_counts() {
        let sync = sample();
        let html = render(&page(&sync, None));
        assert!(html.contains("Organic &lt;x&gt;"), "escaped");
        assert!(html.contains("rejected 1"));
        assert!(html.contains("id=\"login\""));
        for hidden in [
            "docs.google.com",
            "bad &lt;thing&gt;",
            "31/02/2025",
            "unreadable date",
            "Refresh now",
        ] {
            assert!(!html.contains(hidden), "{hidden} shown without a session");
        }
    }

    #[test]
    fn signed_in_shows_sources_errors_rows_and_buttons() {
        let sync = sample();
        let html = render(&page(&sync, Some("tok")));
        for shown in [
            "href=\"https://docs.google.com/spreadsheets/d/abc/edit#gid=7&amp;range=A14\"",
            "bad &lt;thing&gt;",
            "31/02/2025",
            "Refresh now",
            "name=\"csrf\" value=\"tok\"",
        ] {
            assert!(html.contains(shown), "{shown} missing");
        }
        assert!(!html.contains("id=\"login\""));
    }

    #[test]
    fn times_read_at_a_glance() {
        let now = Utc::now();
        assert_eq!(relative(now - chrono::Duration::hours(2), now), "2 h ago");
        assert_eq!(relative(now + chrono::Duration::minutes(5), now), "in 5 min");
        assert_eq!(relative(now, now), "just now");
    }

    #[test]
    fn a_lost_column_is_told_in_plain_words_signed_in_or_not() {
        let now = Utc::now();
        let sync = SyncPage {
            last_success: Some(now - chrono::Duration::minutes(5)),
            columns: vec![ColumnNotice {
                column: "Expected <MRR>".into(),
                lost: true,
                since: Some(now - chrono::Duration::minutes(2)),
                kept: false,
            }],
            ..sample()
        };
        for csrf in [None, Some("tok")] {
            let html = render(&page(&sync, csrf));
            let notice = html
                .split("<p class=\"error column\">")
                .nth(1)
                .and_then(|rest| rest.split("</p>").next())
                .expect("the notice is shown");
            assert!(
                notice.starts_with("The column Expected &lt;MRR&gt; is missing from the sheet since <time"),
                "{notice}"
            );
            assert!(
                notice.contains("; the dashboard keeps the values of <time")
                    && notice.ends_with("until it is back or mapped."),
                "{notice}"
            );
        }
        let kept = SyncPage {
            columns: vec![ColumnNotice {
                column: "ARR".into(),
                lost: false,
                since: None,
                kept: true,
            }],
            ..sample()
        };
        let html = render(&page(&kept, None));
        assert!(
            html.contains("The column ARR was emptied in the sheet; its last values are kept until it is filled again"),
            "{html}"
        );
    }
}
