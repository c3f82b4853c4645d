//! When to try a Sheets API call again, and how long to wait first.
//!
//! Exponential backoff with full jitter (a random wait between zero and the
//! doubled step), a `Retry-After` from Google taking precedence, all capped
//! in attempts and in total time since the first attempt.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::settings::GoogleSettings;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    pub max_elapsed: Duration,
}

impl RetryPolicy {
    pub fn from_settings(settings: &GoogleSettings) -> RetryPolicy {
        RetryPolicy {
            max_attempts: settings.max_attempts.max(1),
            base_delay: Duration::from_millis(settings.retry_base_delay_ms),
            max_delay: Duration::from_millis(settings.retry_max_delay_ms),
            max_elapsed: Duration::from_millis(settings.retry_max_elapsed_ms),
        }
    }

    /// The exponential step before retry number `retry` (1 for the first
    /// retry): `base * 2^(retry-1)`, capped at `max_delay`.
    pub fn step(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.saturating_sub(1).min(30)).unwrap_or(u32::MAX);
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }

    /// A full-jitter wait before retry number `retry`: uniform in `[0, step]`.
    pub fn jittered(&self, retry: u32) -> Duration {
        let step = self.step(retry);
        let millis = u64::try_from(step.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(fastrand::u64(0..=millis))
    }

    /// How long to wait before retry number `retry`, or `None` when the
    /// attempts or the time budget are spent. `elapsed` is the time since the
    /// first attempt; `retry_after` is what Google asked for, if anything.
    pub fn next_delay(&self, retry: u32, elapsed: Duration, retry_after: Option<Duration>) -> Option<Duration> {
        if retry >= self.max_attempts {
            return None;
        }
        let delay = retry_after.unwrap_or_else(|| self.jittered(retry));
        (elapsed.saturating_add(delay) < self.max_elapsed).then_some(delay)
    }
}

/// A `Retry-After` header: delay-seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let moment = DateTime::parse_from_rfc2822(value).ok()?.with_timezone(&Utc);
    Some((moment - now).to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            max_elapsed: Duration::from_secs(10),
        }
    }

    #[test]
    fn steps_double_up_to_the_cap_and_jitter_stays_inside() {
        let policy = policy();
        let steps: Vec<u128> = (1..=6).map(|retry| policy.step(retry).as_millis()).collect();
        assert_eq!(steps, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(
            policy.step(200),
            Duration::from_millis(1000),
            "no overflow on many retries"
        );
        for retry in 1..=6 {
            for _ in 0..50 {
                assert!(policy.jittered(retry) <= policy.step(retry));
            }
        }
    }

    #[test]
    fn stops_on_attempts_or_time_and_honours_retry_after() {
        let policy = policy();
        assert!(policy.next_delay(4, Duration::ZERO, None).is_some());
        assert_eq!(policy.next_delay(5, Duration::ZERO, None), None, "5 attempts made");
        assert_eq!(
            policy.next_delay(1, Duration::ZERO, Some(Duration::from_secs(3))),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            policy.next_delay(1, Duration::from_secs(8), Some(Duration::from_secs(3))),
            None,
            "waiting would overrun the time budget"
        );
    }

    #[test]
    fn reads_both_retry_after_forms() {
        let now = DateTime::parse_from_rfc3339("2025-01-15T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Wed, 15 Jan 2025 12:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 15 Jan 2025 11:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
