//! The integration tests, in one binary so that the crate is linked once: a
//! module per area, against a real MongoDB wire-protocol server
//! (`TEST_MONGO_URL`, which `scripts/test` starts), with [`harness`] for what
//! they share.

mod harness;

mod browser;
mod cli;
mod credentials;
mod customer_success;
mod daemon;
mod deployment;
mod google_sheets;
mod layers;
mod recovery;
mod robustness;
mod shape_changes;
mod source_policy;
mod status_page;
mod sync_engine;
mod value_examples;
mod watch;
mod workbooks;
