//! `sheetsync run`: the long-running worker.
//!
//! Pieces, one job each:
//! - [`scheduler`]: the loop that fires the schedule's slots (`crate::schedule`
//!   computes them), and the start-up (readiness, catch-up);
//! - [`executor`]: jobs (a slot, the catch-up, a refresh) and the execution
//!   of one sync's run under its lease;
//! - [`status`]: what `/status` shows, read in the background;
//! - [`state`]: single flight per sync and the registry of runs;
//! - [`http`] and [`serve`]: the endpoints, and the bounded server under them;
//!   [`throttle`] and [`client`]: failed sign-ins counted per client address;
//! - [`watch`]: the sources followed between scheduled runs;
//! - [`lifecycle`]: signals and systemd notifications;
//! - this module: the shared state and the wiring (`run`).

pub mod client;
pub mod executor;
pub mod http;
pub mod lifecycle;
pub mod page;
pub mod recorder;
mod run;
pub mod scheduler;
pub mod serve;
pub mod session;
mod shared;
pub mod state;
pub mod status;
pub mod throttle;
pub mod watch;
pub mod watched;

pub use run::{DaemonError, run};
pub use shared::{Clock, Daemon, MongoState, StatusSnapshot, SystemClock};
