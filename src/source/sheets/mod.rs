//! Google Sheets through the Sheets API v4: a thin client on the shared
//! reqwest client, covering just `spreadsheets.get` and `values:batchGet`.
//!
//! Per spreadsheet and per sync cycle it makes one call, whatever the number
//! of views reading from it: a `values:batchGet` over every tab those views
//! read (`UNFORMATTED_VALUE`, `SERIAL_NUMBER`, `ROWS`). A tab taller than
//! `page_rows` is read in pages of rows, one round of pages (of every such
//! tab) per call, so that no call runs into Google's request deadline and a
//! failed call repeats one page. Each answer is parsed as it arrives and its
//! rows go straight to a spool file (`pages`, `source::spool`): memory holds
//! a few network chunks and a row, not the page nor the sheet. Every request
//! waits for room in Google's per-minute
//! read quota (`max_requests_per_minute`), kept here rather than met with
//! 429s.
//!
//! Reading a tab by A1 range needs its title, paging needs its grid height,
//! and reading a date serial needs the spreadsheet's time zone; they come
//! from `spreadsheets.get` with the fields mask
//! `properties.timeZone,sheets.properties(sheetId,title,gridProperties.rowCount)`. That
//! answer changes rarely, so it is kept for `metadata_max_age_secs` (a week by
//! default) and read again sooner only when it proves stale: a named tab
//! missing from it, or a range Google no longer knows. (Addressing tabs by id
//! with `values:batchGetByDataFilter` would avoid titles, but it needs the
//! read-write `spreadsheets` scope; sheetsync asks only for read-only.)
//!
//! Plus about one token request per hour for the whole process (`auth`
//! caches the token; `credentials` gets it, whatever the kind of credential).

mod a1;
pub mod auth;
mod body;
mod client;
pub mod credentials;
mod error;
mod pages;
mod quota;
mod retry;
pub mod settings;
mod stats;
mod transport;
mod wire;

pub use client::{DriveStamp, GoogleSheets, SheetCheck, SpreadsheetInfo};
pub use error::SheetsError;
pub use stats::GoogleStatsSnapshot;
