//! What the watcher (`watch`) knows of each source, and when a change is
//! due: the quiet period and the longest delay, as a pure state machine.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::config::WatchSettings;

/// What the watcher knows of one source.
#[derive(Debug, Default)]
pub struct Watched {
    /// Its change mark when last asked.
    mark: Option<String>,
    /// The first and the latest change seen since its syncs last ran.
    first_change: Option<Instant>,
    last_change: Option<Instant>,
}

impl Watched {
    /// Takes a new mark; whether the source's syncs are due now.
    pub fn observe(&mut self, mark: String, now: Instant, settings: &WatchSettings) -> bool {
        match &self.mark {
            // The first look is the baseline, not a change.
            None => self.mark = Some(mark),
            Some(known) if *known != mark => {
                self.mark = Some(mark);
                self.last_change = Some(now);
                self.first_change.get_or_insert(now);
            }
            Some(_) => {}
        }
        let (Some(first), Some(last)) = (self.first_change, self.last_change) else {
            return false;
        };
        let quiet = now.duration_since(last) >= Duration::from_secs(settings.quiet_secs);
        let overdue = now.duration_since(first) >= Duration::from_secs(settings.max_delay_secs);
        if quiet || overdue {
            self.first_change = None;
            self.last_change = None;
            return true;
        }
        false
    }

    pub fn pending(&self) -> bool {
        self.first_change.is_some()
    }
}

/// What the page shows of a sync's source.
#[derive(Debug, Clone, Default)]
pub struct Freshness {
    pub edited: Option<DateTime<Utc>>,
    pub next_check: Option<DateTime<Utc>>,
    /// Left to the schedule (Google refused to describe it).
    pub not_watched: bool,
}

impl WatchState {
    /// The page's view of sync `name`'s source; `None` before the first look.
    pub fn freshness(&self, name: &str) -> Option<Freshness> {
        let key = self.source_of.get(name)?;
        Some(Freshness {
            edited: self.edited.get(key).copied(),
            next_check: self.next_check,
            not_watched: self.refused.contains_key(key),
        })
    }
}

/// The watcher's state: per source, and the sources left to the schedule.
#[derive(Debug, Default)]
pub struct WatchState {
    pub sources: HashMap<String, Watched>,
    /// Each sync's source key, as of the last look.
    pub source_of: HashMap<String, String>,
    /// When each source was last edited, where it says.
    pub edited: HashMap<String, DateTime<Utc>>,
    /// When the sources are asked next.
    pub next_check: Option<DateTime<Utc>>,
    /// Sources that cannot be watched, with why (shown on `/status`).
    pub refused: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_runs_once_quiet_or_once_overdue() {
        let settings = WatchSettings {
            enabled: true,
            interval_secs: 10,
            quiet_secs: 30,
            max_delay_secs: 100,
            ..WatchSettings::default()
        };
        let start = Instant::now();
        let at = |secs| start + Duration::from_secs(secs);
        let mut watched = Watched::default();
        assert!(!watched.observe("a".into(), at(0), &settings), "the baseline");
        assert!(!watched.observe("a".into(), at(10), &settings), "no change");
        assert!(
            !watched.observe("b".into(), at(20), &settings),
            "changed: wait for quiet"
        );
        assert!(!watched.observe("b".into(), at(40), &settings), "quiet 20 s");
        assert!(watched.observe("b".into(), at(50), &settings), "quiet 30 s: due");
        assert!(!watched.observe("b".into(), at(60), &settings), "once");

        // Someone typing without a pause: due at the latest max_delay after.
        let mut typing = Watched::default();
        typing.observe("0".into(), at(0), &settings);
        let mut fired_at = None;
        for step in 1..=20u64 {
            if typing.observe(step.to_string(), at(step * 10), &settings) {
                fired_at = Some(step * 10);
                break;
            }
        }
        assert_eq!(fired_at, Some(110), "first change at 10 s, due 100 s later");
    }
}
