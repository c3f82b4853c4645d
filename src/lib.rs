//! sheetsync keeps a MongoDB database in step with spreadsheets.
//!
//! The library is the whole product; the `sheetsync` binary is a thin shell.
//! Data flows one way through its modules:
//!
//! ```text
//! views -> source (csv, Google Sheets) -> table -> mapping -> store::apply -> store::{metadata, runs}
//! ```
//!
//! [`sync::Syncer`] drives one cycle through them; [`daemon`] wraps it in a
//! scheduled, observable, multi-replica-safe service (`sheetsync run`).

pub mod config;
pub mod daemon;
pub mod identity;
pub mod mapping;
pub mod redact;
pub mod source;
pub mod store;
pub mod sync;
pub mod syncs;
pub mod telemetry;
pub mod tls;
