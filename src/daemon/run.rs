//! `sheetsync run`: the wiring of the daemon's tasks, and its shutdown.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::client::ClientAddresses;
use super::lifecycle::{self, Notifier};
use super::shared::{Clock, Daemon, MongoState, StatusSnapshot, SystemClock};
use super::state::Runs;
use super::throttle::{AuthThrottle, ThrottleSettings};
use super::watched::WatchState;
use super::{http, recorder, serve, session};
use crate::concurrency::lock;
use crate::config::Config;
use crate::engine::Engine;
use crate::report::Trigger;
use crate::schedule::{self, Schedule};
use crate::store::StoreError;
use crate::store::lease::{self, Leases};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Schedule(#[from] schedule::ScheduleError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Source(#[from] crate::source::SourceError),
    #[error("cannot listen on {addr}: {source} (set daemon.listen or SHEETSYNC_LISTEN)")]
    Bind { addr: String, source: std::io::Error },
    #[error("cannot install the metrics recorder: {0}")]
    Metrics(String),
    #[error("cannot handle signals: {0}")]
    Signals(std::io::Error),
    #[error("{0}")]
    WeakToken(String),
}

/// How long a spreadsheet fetched for one view's run waits for the runs of
/// the other views that read it (the views of one cycle start together).
const SHARED_FETCH_TTL: Duration = Duration::from_secs(120);

/// How long syncs called off at shutdown get to stop at their next
/// checkpoint (one insert batch) or finish a swap already sent.
const CALL_OFF_WAIT: Duration = Duration::from_secs(15);

/// After the grace period: every running sync is told to stop before its
/// swap, and given a moment to do so, so that none is cut between its swap
/// and its bookkeeping.
async fn call_off_running_syncs(daemon: &Arc<Daemon>) {
    let views = daemon.runs.running();
    for abort in lock(&daemon.aborts).values() {
        abort.abort("sheetsync is shutting down and the grace period ran out");
    }
    let stopped = tokio::time::timeout(CALL_OFF_WAIT, daemon.runs.wait_until(Runs::is_idle))
        .await
        .is_ok();
    if stopped {
        tracing::warn!(
            ?views,
            "running sync(s) called off at shutdown before their swap; the previous data stands"
        );
    } else {
        tracing::error!(
            ?views,
            "running sync(s) did not stop within {} s; exiting anyway (a sync cut mid-way never swapped; one cut \
             after its swap has the new data but may lack its data_metadata entry until the next run)",
            CALL_OFF_WAIT.as_secs()
        );
    }
}

/// Runs the daemon until SIGTERM or SIGINT; returns once it stopped cleanly
/// (a sync still running after the grace period is abandoned: its swap had
/// not happened, so the previous data stands).
pub async fn run(config: Config) -> Result<(), DaemonError> {
    crate::tls::install_crypto_provider();
    // The admin endpoints and the page's sign-in face the network: a token
    // that can be guessed would hand them out.
    if let Some(weakness) = config.daemon.admin_token.as_ref().and_then(|token| token.weakness()) {
        return Err(DaemonError::WeakToken(weakness));
    }
    let schedule = Schedule::parse(&config.daemon.schedule, &config.daemon.time_zone)?;
    let mut signals = lifecycle::Signals::install().map_err(DaemonError::Signals)?;
    let metrics = recorder::install().map_err(DaemonError::Metrics)?;
    let db = config.open_database().await?;
    // Views are synced one by one; a spreadsheet still costs one fetch per
    // cycle for all the views that read it.
    let sources = config.daemon_sources()?.sharing_spreadsheet_fetches(SHARED_FETCH_TTL);
    let listen = config.daemon.listen.clone();
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|source| DaemonError::Bind {
            addr: listen.clone(),
            source,
        })?;
    let addr = listener
        .local_addr()
        .map_err(|source| DaemonError::Bind { addr: listen, source })?;
    let notifier = Notifier::from_env();
    let leases = Leases::new(db.clone(), lease::owner_id("daemon"), config.daemon.lease());
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let (shutdown, _) = watch::channel(false);
    let grace = config.daemon.shutdown_grace();
    let config_slots = config.daemon.max_concurrent_syncs;
    let auth_throttle = AuthThrottle::new(ThrottleSettings::of(&config.daemon));
    let clients = ClientAddresses::new(&config.daemon);
    let daemon = Arc::new(Daemon {
        engine: Engine::new(db, config, sources),
        leases,
        started_at: clock.now(),
        clock,
        schedule,
        runs: Runs::default(),
        metrics,
        started: Instant::now(),
        heartbeat: Mutex::new(Instant::now()),
        next_run: Mutex::new(None),
        mongo: Mutex::new(MongoState {
            reachable: false,
            detail: "not checked yet".to_owned(),
            checked_at: None,
        }),
        shutdown,
        slice: notifier.slice(schedule::MAX_SLICE),
        aborts: Mutex::new(HashMap::new()),
        sync_slots: tokio::sync::Semaphore::new(config_slots),
        status: Mutex::new(StatusSnapshot::default()),
        status_stale: tokio::sync::Notify::new(),
        sessions: session::Sessions::default(),
        auth_throttle,
        clients,
        watch: Mutex::new(WatchState::default()),
        known_plans: Mutex::new(None),
        progress: Mutex::new(HashMap::new()),
    });
    tracing::info!(
        %addr, owner = daemon.leases.owner(), schedule = daemon.schedule.expression(),
        time_zone = %daemon.schedule.zone(), admin = daemon.config().daemon.admin_token.is_some(),
        "HTTP server listening"
    );
    let server = {
        let daemon = Arc::clone(&daemon);
        let app = http::router(Arc::clone(&daemon));
        tokio::spawn(async move {
            let limits = serve::Limits::of(&daemon.config().daemon);
            serve::serve(listener, app, limits, async move { daemon.until_shutdown().await }).await
        })
    };
    tokio::spawn(Arc::clone(&daemon).scheduler(notifier.clone()));
    tokio::spawn(Arc::clone(&daemon).status_refresher());
    tokio::spawn(Arc::clone(&daemon).watcher());
    tokio::spawn(Arc::clone(&daemon).start(notifier.clone()));

    loop {
        match signals.next().await {
            lifecycle::Signal::Refresh => {
                tracing::info!("SIGHUP: refreshing every view");
                tokio::spawn(Arc::clone(&daemon).job(Trigger::Signal, None));
            }
            lifecycle::Signal::Stop(name) => {
                tracing::info!(
                    signal = name,
                    grace_secs = grace.as_secs(),
                    "stopping: no new work; waiting for running syncs"
                );
                break;
            }
        }
    }
    notifier.stopping();
    daemon.runs.stop_accepting();
    let drained = tokio::select! {
        () = daemon.runs.wait_until(Runs::is_idle) => true,
        () = tokio::time::sleep(grace) => false,
        _ = signals.next_stop() => false,
    };
    if !drained {
        call_off_running_syncs(&daemon).await;
    }
    daemon.shutdown.send_replace(true);
    match tokio::time::timeout(Duration::from_secs(5), server).await {
        Ok(Err(error)) => tracing::warn!(%error, "the HTTP server task failed"),
        Ok(Ok(())) => {}
        Err(_) => tracing::warn!("the HTTP server did not stop within 5 s; exiting anyway"),
    }
    tracing::info!("stopped");
    Ok(())
}
