//! sheetsync keeps a MongoDB database in step with spreadsheets.
//!
//! The library is the whole product; the `sheetsync` binary is a thin shell.
//! Data flows one way through its modules:
//!
//! ```text
//! syncs (views collection, [[syncs]]) -> source (csv, Google Sheets) -> table
//!   -> mapping (target profiles) -> identity -> apply (swap | merge) -> store::{metadata, runs}
//! ```
//!
//! [`sync::Engine`] drives one cycle through them and fills a
//! [`report::SyncReport`]; [`daemon`] wraps it in a scheduled, observable,
//! multi-replica-safe service (`sheetsync run`), and `main.rs` in a CLI.

pub mod apply;
pub mod bson_dates;
pub mod config;
pub mod daemon;
pub mod engine;
pub mod mapping;
pub mod redact;
pub mod report;
pub mod schedule;
pub mod source;
pub mod store;
pub mod syncs;
pub mod telemetry;
pub mod tls;
