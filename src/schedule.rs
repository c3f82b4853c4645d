//! When to sync: a cron expression read in an IANA time zone, and the ticker
//! that turns wall-clock readings into fire decisions.
//!
//! Every fire time is computed from the wall clock in the schedule's zone
//! (croner walks local civil time, chrono-tz gives the offset of *that* day),
//! so 12:00 Paris stays 12:00 Paris on both sides of a DST change. The
//! [`Ticker`] is pure: it is fed readings of the clock and answers "fire this
//! slot" or "sleep this long", which is what the tests drive with a fake clock.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;

/// The longest single sleep of the scheduler loop: a suspended host, a
/// clock that jumps or a stuck timer is noticed within this.
pub const MAX_SLICE: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("daemon.schedule {expression:?} is not a valid cron expression: {message}")]
    Cron { expression: String, message: String },
    #[error("daemon.time_zone {0:?} is not an IANA time zone name (like Europe/Paris)")]
    Zone(String),
    #[error("daemon.schedule {0:?} never fires")]
    Never(String),
}

/// A cron expression in a time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    zone: Tz,
    expression: String,
}

impl Schedule {
    pub fn parse(expression: &str, zone: &str) -> Result<Schedule, ScheduleError> {
        let cron = Cron::from_str(expression).map_err(|error| ScheduleError::Cron {
            expression: expression.to_owned(),
            message: error.to_string(),
        })?;
        let zone = Tz::from_str(zone.trim()).map_err(|_| ScheduleError::Zone(zone.to_owned()))?;
        let schedule = Schedule {
            cron,
            zone,
            expression: expression.to_owned(),
        };
        if schedule.next_after(Utc::now()).is_none() {
            return Err(ScheduleError::Never(expression.to_owned()));
        }
        Ok(schedule)
    }

    pub fn zone(&self) -> Tz {
        self.zone
    }

    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The first fire time strictly after `moment`.
    pub fn next_after(&self, moment: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = moment.with_timezone(&self.zone);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|next| next.with_timezone(&Utc))
    }

    /// The last fire time at or before `moment`: the slot a host that was
    /// down should still honour.
    pub fn latest_at_or_before(&self, moment: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = moment.with_timezone(&self.zone);
        self.cron
            .find_previous_occurrence(&local, true)
            .ok()
            .map(|previous| previous.with_timezone(&Utc))
    }

    /// The next `count` fire times after `from`, in the schedule's zone.
    pub fn upcoming(&self, from: DateTime<Utc>, count: usize) -> Vec<DateTime<Tz>> {
        // `count` comes from the command line: do not trust it with memory.
        let mut times = Vec::with_capacity(count.min(1024));
        let mut cursor = from;
        while times.len() < count {
            let Some(next) = self.next_after(cursor) else { break };
            times.push(next.with_timezone(&self.zone));
            cursor = next;
        }
        times
    }
}

/// What the scheduler loop should do after reading the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tick {
    /// Sync for this slot now.
    Fire(DateTime<Utc>),
    /// Nothing is due; sleep this long, then read the clock again.
    Sleep(Duration),
}

/// Decides, from successive readings of the wall clock, when a slot is due.
///
/// A slot fires when a reading reaches it. If the clock jumps forward over
/// several slots (suspend, NTP step), only the latest of them fires, once. A
/// slot that already fired never fires again, even if the clock is set back.
#[derive(Debug, Clone)]
pub struct Ticker {
    schedule: Schedule,
    /// The previous reading; slots in (last_seen, now] are due.
    last_seen: DateTime<Utc>,
    last_fired: Option<DateTime<Utc>>,
    max_slice: Duration,
}

impl Ticker {
    /// Starts at `now`: slots before it are the catch-up's business.
    pub fn new(schedule: Schedule, now: DateTime<Utc>, max_slice: Duration) -> Ticker {
        Ticker {
            schedule,
            last_seen: now,
            last_fired: None,
            max_slice,
        }
    }

    /// Feeds one reading of the clock.
    pub fn tick(&mut self, now: DateTime<Utc>) -> Tick {
        let since = self.last_seen;
        self.last_seen = now;
        if now > since
            && let Some(slot) = self.schedule.latest_at_or_before(now)
        {
            let already = self.last_fired.is_some_and(|fired| slot <= fired);
            if slot > since && !already {
                self.last_fired = Some(slot);
                return Tick::Fire(slot);
            }
        }
        Tick::Sleep(self.sleep_from(now))
    }

    /// The next fire time as of the last reading.
    pub fn next_fire(&self) -> Option<DateTime<Utc>> {
        self.schedule.next_after(self.last_seen)
    }

    fn sleep_from(&self, now: DateTime<Utc>) -> Duration {
        let until_next = self
            .schedule
            .next_after(now)
            .and_then(|next| (next - now).to_std().ok())
            .unwrap_or(self.max_slice);
        // Wake a hair after the slot, so the reading is at or past it.
        (until_next + Duration::from_millis(5)).min(self.max_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    fn local_times(schedule: &Schedule, from: &str, count: usize) -> Vec<String> {
        schedule
            .upcoming(utc(from), count)
            .iter()
            .map(|time| time.to_rfc3339())
            .collect()
    }

    #[test]
    fn paris_noon_and_eight_across_spring_forward() {
        let schedule = Schedule::parse("0 0 12,20 * * *", "Europe/Paris").unwrap();
        // 2027-03-28 02:00 CET -> 03:00 CEST.
        assert_eq!(
            local_times(&schedule, "2027-03-27T00:00:00+01:00", 6),
            [
                "2027-03-27T12:00:00+01:00",
                "2027-03-27T20:00:00+01:00",
                "2027-03-28T12:00:00+02:00",
                "2027-03-28T20:00:00+02:00",
                "2027-03-29T12:00:00+02:00",
                "2027-03-29T20:00:00+02:00",
            ]
        );
        let in_utc: Vec<_> = schedule
            .upcoming(utc("2027-03-27T00:00:00Z"), 6)
            .iter()
            .map(|t| t.with_timezone(&Utc))
            .collect();
        assert_eq!(in_utc[0], utc("2027-03-27T11:00:00Z"));
        assert_eq!(in_utc[2], utc("2027-03-28T10:00:00Z"));
        assert_eq!(in_utc[5], utc("2027-03-29T18:00:00Z"));
    }

    #[test]
    fn paris_noon_and_eight_across_fall_back() {
        let schedule = Schedule::parse("0 0 12,20 * * *", "Europe/Paris").unwrap();
        // 2027-10-31 03:00 CEST -> 02:00 CET.
        assert_eq!(
            local_times(&schedule, "2027-10-30T00:00:00+02:00", 6),
            [
                "2027-10-30T12:00:00+02:00",
                "2027-10-30T20:00:00+02:00",
                "2027-10-31T12:00:00+01:00",
                "2027-10-31T20:00:00+01:00",
                "2027-11-01T12:00:00+01:00",
                "2027-11-01T20:00:00+01:00",
            ]
        );
    }

    #[test]
    fn another_zone_and_its_own_dst_dates() {
        // New York changes on 2027-03-14 and 2027-11-07, not on Paris's dates.
        let schedule = Schedule::parse("0 30 9 * * *", "America/New_York").unwrap();
        assert_eq!(
            local_times(&schedule, "2027-03-13T00:00:00-05:00", 3),
            [
                "2027-03-13T09:30:00-05:00",
                "2027-03-14T09:30:00-04:00",
                "2027-03-15T09:30:00-04:00",
            ]
        );
        assert_eq!(
            local_times(&schedule, "2027-11-06T00:00:00-04:00", 3),
            [
                "2027-11-06T09:30:00-04:00",
                "2027-11-07T09:30:00-05:00",
                "2027-11-08T09:30:00-05:00",
            ]
        );
        // Five-field expressions work too (seconds optional).
        let five = Schedule::parse("0 12 * * *", "Asia/Tokyo").unwrap();
        assert_eq!(
            local_times(&five, "2027-03-28T00:00:00Z", 1),
            ["2027-03-28T12:00:00+09:00"]
        );
    }

    #[test]
    fn latest_slot_is_the_catch_up_slot() {
        let schedule = Schedule::parse("0 0 12,20 * * *", "Europe/Paris").unwrap();
        assert_eq!(
            schedule.latest_at_or_before(utc("2027-03-28T11:00:00+02:00")),
            Some(utc("2027-03-27T20:00:00+01:00"))
        );
        assert_eq!(
            schedule.latest_at_or_before(utc("2027-03-28T12:00:00+02:00")),
            Some(utc("2027-03-28T12:00:00+02:00"))
        );
    }

    #[test]
    fn rejects_bad_expressions_and_zones() {
        assert!(matches!(
            Schedule::parse("61 * * * *", "UTC"),
            Err(ScheduleError::Cron { .. })
        ));
        assert!(matches!(
            Schedule::parse("0 0 12 * * *", "Mars/Olympus"),
            Err(ScheduleError::Zone(_))
        ));
    }

    /// A clock the test moves by hand: the ticker never reads the real time.
    struct FakeClock {
        now: DateTime<Utc>,
    }

    impl FakeClock {
        fn advance(&mut self, by: Duration) -> DateTime<Utc> {
            self.now += chrono::Duration::from_std(by).unwrap();
            self.now
        }
    }

    #[test]
    fn fires_each_slot_once_when_following_the_clock() {
        let schedule = Schedule::parse("0 0 12,20 * * *", "Europe/Paris").unwrap();
        let mut clock = FakeClock {
            now: utc("2027-03-27T18:00:00+01:00"),
        };
        let mut ticker = Ticker::new(schedule, clock.now, MAX_SLICE);
        let mut fired = Vec::new();
        // Three days of sleeping exactly as the ticker asks.
        let mut step = match ticker.tick(clock.now) {
            Tick::Sleep(duration) => duration,
            Tick::Fire(_) => panic!("nothing is due at start"),
        };
        while clock.now < utc("2027-03-30T00:00:00+02:00") {
            assert!(step <= MAX_SLICE, "sleeps are bounded");
            let now = clock.advance(step);
            step = match ticker.tick(now) {
                Tick::Fire(slot) => {
                    assert!(now >= slot && now - slot < chrono::Duration::seconds(1));
                    fired.push(slot.with_timezone(&Tz::Europe__Paris).to_rfc3339());
                    Duration::ZERO
                }
                Tick::Sleep(duration) => duration,
            };
        }
        assert_eq!(
            fired,
            [
                "2027-03-27T20:00:00+01:00",
                "2027-03-28T12:00:00+02:00",
                "2027-03-28T20:00:00+02:00",
                "2027-03-29T12:00:00+02:00",
                "2027-03-29T20:00:00+02:00",
            ]
        );
    }

    #[test]
    fn forward_jump_past_slots_fires_once() {
        let schedule = Schedule::parse("0 0 12,20 * * *", "Europe/Paris").unwrap();
        let start = utc("2027-10-30T11:59:50+02:00");
        let mut ticker = Ticker::new(schedule, start, MAX_SLICE);
        assert!(matches!(ticker.tick(start), Tick::Sleep(_)));
        // The host sleeps through 12:00 and 20:00 and wakes at 21:30.
        let wake = utc("2027-10-30T21:30:00+02:00");
        assert_eq!(ticker.tick(wake), Tick::Fire(utc("2027-10-30T20:00:00+02:00")));
        assert!(matches!(ticker.tick(wake), Tick::Sleep(_)));
        assert!(matches!(
            ticker.tick(wake + chrono::Duration::seconds(30)),
            Tick::Sleep(_)
        ));
        // A jump of exactly onto a slot fires it, once.
        let noon = utc("2027-10-31T12:00:00+01:00");
        assert_eq!(ticker.tick(noon), Tick::Fire(noon));
        assert!(matches!(ticker.tick(noon), Tick::Sleep(_)));
    }

    #[test]
    fn backward_jump_does_not_fire_a_slot_twice() {
        let schedule = Schedule::parse("0 0 12,20 * * *", "Europe/Paris").unwrap();
        let noon = Tz::Europe__Paris
            .with_ymd_and_hms(2027, 3, 29, 12, 0, 0)
            .unwrap()
            .with_timezone(&Utc);
        let mut ticker = Ticker::new(schedule, noon - chrono::Duration::seconds(1), MAX_SLICE);
        assert_eq!(ticker.tick(noon), Tick::Fire(noon));
        // NTP steps the clock back two minutes; 12:00 comes round again.
        assert!(matches!(
            ticker.tick(noon - chrono::Duration::minutes(2)),
            Tick::Sleep(_)
        ));
        assert!(matches!(
            ticker.tick(noon + chrono::Duration::seconds(1)),
            Tick::Sleep(_)
        ));
        assert_eq!(ticker.next_fire(), Some(utc("2027-03-29T20:00:00+02:00")));
    }

    #[test]
    fn sleeps_are_bounded_and_aim_at_the_slot() {
        let schedule = Schedule::parse("0 0 12,20 * * *", "Europe/Paris").unwrap();
        let now = utc("2027-03-28T11:59:50+02:00");
        let mut ticker = Ticker::new(schedule.clone(), now, MAX_SLICE);
        assert_eq!(ticker.tick(now), Tick::Sleep(Duration::from_millis(10_005)));
        let early = utc("2027-03-28T08:00:00+02:00");
        let mut ticker = Ticker::new(schedule, early, MAX_SLICE);
        assert_eq!(ticker.tick(early), Tick::Sleep(MAX_SLICE));
    }
}
