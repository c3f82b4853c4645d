//! Signals (SIGHUP refresh, SIGTERM/SIGINT stop) and systemd notifications.

use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};

/// What a signal asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGHUP (`systemctl reload`): refresh every view.
    Refresh,
    /// SIGTERM or SIGINT: drain and exit.
    Stop(&'static str),
}

/// The daemon's signal handlers, installed once at start (from then on
/// SIGHUP no longer kills the process).
#[derive(Debug)]
pub struct Signals {
    hangup: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    pub fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            hangup: signal(SignalKind::hangup())?,
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    /// The next signal.
    pub async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.hangup.recv() => Signal::Refresh,
            _ = self.terminate.recv() => Signal::Stop("SIGTERM"),
            _ = self.interrupt.recv() => Signal::Stop("SIGINT"),
        }
    }

    /// The next stop signal (a second one while draining abandons the wait);
    /// SIGHUPs are ignored meanwhile.
    pub async fn next_stop(&mut self) -> Signal {
        loop {
            if let stop @ Signal::Stop(_) = self.next().await {
                tracing::warn!("second stop signal: not waiting any longer");
                return stop;
            }
        }
    }
}

/// systemd notifications, sent only when `NOTIFY_SOCKET` is set.
#[derive(Debug, Clone)]
pub struct Notifier {
    enabled: bool,
    watchdog: Option<Duration>,
}

impl Notifier {
    pub fn from_env() -> Notifier {
        let enabled = std::env::var_os("NOTIFY_SOCKET").is_some();
        Notifier {
            enabled,
            watchdog: if enabled { sd_notify::watchdog_enabled() } else { None },
        }
    }

    /// The scheduler's sleep slice: `max`, or less so that the watchdog is
    /// pinged at least twice per `WatchdogSec`.
    pub fn slice(&self, max: Duration) -> Duration {
        match self.watchdog {
            Some(timeout) => (timeout / 2).clamp(Duration::from_millis(100), max),
            None => max,
        }
    }

    fn send(&self, state: &[sd_notify::NotifyState]) {
        if self.enabled
            && let Err(error) = sd_notify::notify(state)
        {
            tracing::warn!(%error, "could not notify systemd");
        }
    }

    /// MongoDB answered and the HTTP port is bound.
    pub fn ready(&self) {
        self.send(&[sd_notify::NotifyState::Ready]);
    }

    pub fn watchdog(&self) {
        if self.watchdog.is_some() {
            self.send(&[sd_notify::NotifyState::Watchdog]);
        }
    }

    pub fn stopping(&self) {
        self.send(&[sd_notify::NotifyState::Stopping]);
    }
}
