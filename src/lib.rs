//! sheetsync keeps a MongoDB database in step with spreadsheets.
//!
//! The library is the whole product; the `sheetsync` binary and the daemon
//! are thin shells around it. Data flows one way:
//!
//! ```text
//! syncs (views collection, [[syncs]]) -> source (CSV, Google Sheets) -> table
//!   -> mapping (survey, later passes) -> apply (swap with identity | merge)
//!   -> store (data_metadata, sync_runs)
//! ```
//!
//! [`engine::Engine`] drives one cycle through them and fills a
//! [`report::SyncReport`]; [`daemon`] wraps it in a scheduled, observable,
//! multi-replica-safe service (`sheetsync run`), and `main.rs` in a CLI.
//!
//! Dependencies point one way too: each module imports only modules of a
//! lower layer (the README's Layout section lists them, and
//! `tests/it/layers.rs` fails on an import that goes up or round a circle).

pub mod apply;
pub mod bson_dates;
pub mod concurrency;
pub mod config;
pub mod daemon;
pub mod engine;
pub mod mapping;
pub mod progress;
pub mod redact;
pub mod report;
pub mod schedule;
pub mod source;
pub mod store;
pub mod syncs;
pub mod telemetry;
pub mod tls;
