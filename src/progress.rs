//! How far a running sync has come: its phase and its rows, counted by the
//! run and read by whoever shows them (the CLI's progress line, the
//! daemon's log and `/status`).
//!
//! The run only adds to atomics, a batch at a time, and never waits for a
//! reader; readers take a [`ProgressSnapshot`] whenever they like. A sync
//! without anyone watching pays a few relaxed additions.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::concurrency::lock;

/// What a sync is doing, in the order it does it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Downloading or opening the source.
    Reading,
    /// The first pass: rows read, mapped and de-duplicated.
    Mapping,
    /// The stored records read and compared with the new ones.
    Comparing,
    /// Documents written (staging, in place, or a merge's writes).
    Writing,
    /// Indexes built and the staging collection renamed over the target.
    Swapping,
}

impl Phase {
    const ALL: [Phase; 5] = [
        Phase::Reading,
        Phase::Mapping,
        Phase::Comparing,
        Phase::Writing,
        Phase::Swapping,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Reading => "reading",
            Phase::Mapping => "mapping",
            Phase::Comparing => "comparing",
            Phase::Writing => "writing",
            Phase::Swapping => "swapping",
        }
    }

    /// What the phase counts.
    fn unit(self) -> &'static str {
        match self {
            Phase::Reading | Phase::Mapping => "rows",
            Phase::Comparing | Phase::Writing | Phase::Swapping => "records",
        }
    }
}

/// One sync's progress, shared by the run and its watchers (cloning shares).
#[derive(Debug, Clone, Default)]
pub struct Progress(Arc<Shared>);

#[derive(Debug, Default)]
struct Shared {
    /// The phase's index in [`Phase::ALL`], plus one; 0 before the first.
    phase: AtomicU8,
    done: AtomicU64,
    /// 0 while unknown.
    known: AtomicU64,
    /// The sync being run, and when its phase began.
    current: Mutex<Option<(String, Instant)>>,
}

/// A reading of a [`Progress`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProgressSnapshot {
    pub sync: String,
    pub phase: Phase,
    /// Rows (or records) done in this phase.
    pub done: u64,
    /// How many the phase will do, when known.
    pub known: Option<u64>,
    /// Seconds since the phase began.
    pub phase_secs: f64,
}

impl Progress {
    /// `sync` enters `phase`, which will count `known` rows or records
    /// when that is known.
    pub fn enter(&self, sync: &str, phase: Phase, known: Option<u64>) {
        let index = Phase::ALL.iter().position(|each| *each == phase).unwrap_or_default();
        self.0.done.store(0, Ordering::Relaxed);
        self.0.known.store(known.unwrap_or(0), Ordering::Relaxed);
        self.0.phase.store(index as u8 + 1, Ordering::Relaxed);
        *lock(&self.0.current) = Some((sync.to_owned(), Instant::now()));
    }

    /// The current sync moves on to `phase`.
    pub fn next(&self, phase: Phase, known: Option<u64>) {
        let sync = lock(&self.0.current).as_ref().map(|(sync, _)| sync.clone());
        self.enter(sync.as_deref().unwrap_or_default(), phase, known);
    }

    /// Counts `count` more rows or records done.
    pub fn add(&self, count: u64) {
        self.0.done.fetch_add(count, Ordering::Relaxed);
    }

    /// No sync is running any more.
    pub fn finish(&self) {
        self.0.phase.store(0, Ordering::Relaxed);
        *lock(&self.0.current) = None;
    }

    /// Where the sync is now; `None` between syncs.
    pub fn snapshot(&self) -> Option<ProgressSnapshot> {
        let phase = usize::from(self.0.phase.load(Ordering::Relaxed));
        let phase = *Phase::ALL.get(phase.checked_sub(1)?)?;
        let (sync, began) = lock(&self.0.current).clone()?;
        let known = self.0.known.load(Ordering::Relaxed);
        Some(ProgressSnapshot {
            sync,
            phase,
            done: self.0.done.load(Ordering::Relaxed),
            known: (known > 0).then_some(known),
            phase_secs: began.elapsed().as_secs_f64(),
        })
    }
}

impl ProgressSnapshot {
    /// Rows or records a second in this phase, once it has run a moment.
    pub fn rate(&self) -> Option<f64> {
        (self.phase_secs >= 0.5 && self.done > 0).then(|| self.done as f64 / self.phase_secs)
    }

    /// Time left in this phase at the rate so far, when the total is known.
    pub fn left(&self) -> Option<Duration> {
        let (rate, known) = (self.rate()?, self.known?);
        let left = known.saturating_sub(self.done) as f64 / rate;
        Some(Duration::from_secs_f64(left.min(1e6)))
    }

    /// One line: `Organic: writing 120,000 of 500,000 records (24%), 45,210
    /// records/s, about 8 s left`.
    pub fn describe(&self) -> String {
        format!("{}: {}", self.sync, self.describe_phase())
    }

    /// The line without the sync's name: `writing 120,000 of ...`.
    pub fn describe_phase(&self) -> String {
        let unit = self.phase.unit();
        let mut line = format!("{} {}", self.phase.as_str(), thousands(self.done));
        match self.known {
            Some(known) => {
                let percent = (self.done.min(known) * 100).checked_div(known).unwrap_or(0);
                line.push_str(&format!(" of {} {unit} ({percent}%)", thousands(known)));
            }
            None => line.push_str(&format!(" {unit}")),
        }
        if let Some(rate) = self.rate() {
            line.push_str(&format!(", {} {unit}/s", thousands(rate.round() as u64)));
        }
        if let Some(left) = self.left() {
            line.push_str(&format!(", about {} left", short_duration(left)));
        }
        line
    }
}

/// `1234567` as `1,234,567`.
fn thousands(number: u64) -> String {
    let digits = number.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

fn short_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min {} s", secs / 60, secs % 60),
        _ => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(done: u64, known: Option<u64>, phase_secs: f64) -> ProgressSnapshot {
        ProgressSnapshot {
            sync: "Organic".to_owned(),
            phase: Phase::Writing,
            done,
            known,
            phase_secs,
        }
    }

    #[test]
    fn a_line_says_phase_count_rate_and_time_left() {
        assert_eq!(
            snapshot(120_000, Some(500_000), 2.0).describe(),
            "Organic: writing 120,000 of 500,000 records (24%), 60,000 records/s, about 6 s left"
        );
        assert_eq!(snapshot(0, None, 0.1).describe(), "Organic: writing 0 records");
        assert_eq!(
            snapshot(7, None, 1.0).describe(),
            "Organic: writing 7 records, 7 records/s",
            "no time left without a total"
        );
    }

    #[test]
    fn phases_are_entered_counted_and_finished() {
        let progress = Progress::default();
        assert_eq!(progress.snapshot(), None);
        progress.enter("Organic", Phase::Mapping, None);
        progress.add(500);
        progress.add(12);
        let now = progress.snapshot().unwrap();
        assert_eq!(
            (now.sync.as_str(), now.phase, now.done, now.known),
            ("Organic", Phase::Mapping, 512, None)
        );
        progress.next(Phase::Writing, Some(1000));
        let now = progress.snapshot().unwrap();
        assert_eq!(
            (now.sync.as_str(), now.phase, now.done, now.known),
            ("Organic", Phase::Writing, 0, Some(1000))
        );
        progress.finish();
        assert_eq!(progress.snapshot(), None);
    }

    #[test]
    fn long_times_and_big_numbers_read_well() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(short_duration(Duration::from_secs(75)), "1 min 15 s");
        assert_eq!(short_duration(Duration::from_secs(7_500)), "2 h 5 min");
    }
}
