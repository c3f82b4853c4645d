//! Guessing the admin token, slowed to uselessness.
//!
//! Every failed authentication (a wrong or missing token on `/admin/*`, a
//! wrong one on `/login` or `/status`) is counted against the client's
//! address in one table shared by those routes. An address that fails
//! `failures_allowed` times within `window` is refused with 429 on all of
//! them for `first_wait`, doubled at each new block up to `max_wait`; an
//! address that signs in correctly starts afresh. A correct token from
//! another address is never slowed by it.
//!
//! Many addresses together are held by a global budget: failures refill at
//! `global_failures_per_sec`. While it is spent, addresses that have not
//! authenticated successfully lately wait a second before their token is
//! even looked at; addresses that have keep working.
//!
//! The table holds at most `max_entries` addresses: when full, the entry
//! seen longest ago is dropped, so that an attacker with many addresses
//! cannot grow it. Failures are counted in Prometheus and logged at most
//! once a minute per address, never with the token tried.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::telemetry::{AUTH_FAILURES, AUTH_THROTTLED};

/// The throttle's settings (`[daemon] auth_*`).
#[derive(Debug, Clone, Copy)]
pub struct ThrottleSettings {
    pub failures_allowed: u32,
    pub window: Duration,
    pub first_wait: Duration,
    pub max_wait: Duration,
    pub global_failures_per_sec: u32,
    pub max_entries: usize,
}

impl ThrottleSettings {
    pub fn of(settings: &crate::config::DaemonSettings) -> ThrottleSettings {
        ThrottleSettings {
            failures_allowed: settings.auth_failures_allowed,
            window: Duration::from_secs(settings.auth_failure_window_secs),
            first_wait: Duration::from_secs(settings.auth_first_wait_secs),
            max_wait: Duration::from_secs(settings.auth_max_wait_secs),
            global_failures_per_sec: settings.auth_global_failures_per_sec,
            max_entries: settings.auth_max_tracked_addresses,
        }
    }
}

/// What a request from an address may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Its token may be checked.
    Check,
    /// Refused for this long (429, `Retry-After`).
    Wait(Duration),
}

#[derive(Debug)]
struct Entry {
    /// Failures since `window_start`.
    failures: u32,
    window_start: Instant,
    blocked_until: Option<Instant>,
    /// Blocks so far; each doubles the next wait.
    blocks: u32,
    last_seen: Instant,
    last_logged: Option<Instant>,
    /// Authenticated successfully lately: not held by the global budget.
    trusted_until: Option<Instant>,
}

impl Entry {
    fn new(now: Instant) -> Entry {
        Entry {
            failures: 0,
            window_start: now,
            blocked_until: None,
            blocks: 0,
            last_seen: now,
            last_logged: None,
            trusted_until: None,
        }
    }
}

#[derive(Debug)]
struct Table {
    entries: HashMap<IpAddr, Entry>,
    /// Failures the global budget still allows now (refilled continuously).
    budget: f64,
    refilled_at: Instant,
}

/// How long a successful sign-in exempts its address from the global budget.
const TRUSTED_FOR: Duration = Duration::from_secs(3600);
/// A failure is logged at most this often per address.
const LOG_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct AuthThrottle {
    settings: ThrottleSettings,
    table: Mutex<Table>,
}

impl AuthThrottle {
    pub fn new(settings: ThrottleSettings) -> AuthThrottle {
        AuthThrottle {
            settings,
            table: Mutex::new(Table {
                entries: HashMap::new(),
                budget: f64::from(settings.global_failures_per_sec),
                refilled_at: Instant::now(),
            }),
        }
    }

    /// Whether a request from `address` may have its token checked.
    pub fn admit(&self, address: IpAddr, route: &'static str) -> Admission {
        let address = counted_as(address);
        let now = Instant::now();
        let mut table = self.lock();
        self.refill(&mut table, now);
        let global_spent = table.budget < 1.0;
        let refill_wait = self.refill_wait(&table);
        let admission = match table.entries.get_mut(&address) {
            Some(entry) => {
                entry.last_seen = now;
                match entry.blocked_until {
                    Some(until) if until > now => Admission::Wait(until - now),
                    _ if global_spent && entry.trusted_until.is_none_or(|until| until <= now) => {
                        Admission::Wait(refill_wait)
                    }
                    _ => Admission::Check,
                }
            }
            None if global_spent => Admission::Wait(refill_wait),
            None => Admission::Check,
        };
        if admission != Admission::Check {
            metrics::counter!(AUTH_THROTTLED, "route" => route).increment(1);
        }
        admission
    }

    /// A wrong or missing token from `address` on `route`.
    pub fn failed(&self, address: IpAddr, route: &'static str) {
        metrics::counter!(AUTH_FAILURES, "route" => route).increment(1);
        let address = counted_as(address);
        let now = Instant::now();
        let mut table = self.lock();
        self.refill(&mut table, now);
        table.budget = (table.budget - 1.0).max(0.0);
        if !table.entries.contains_key(&address) && table.entries.len() >= self.settings.max_entries {
            evict_oldest(&mut table.entries, now);
        }
        let settings = self.settings;
        let entry = table.entries.entry(address).or_insert_with(|| Entry::new(now));
        entry.last_seen = now;
        entry.trusted_until = None;
        if now.duration_since(entry.window_start) > settings.window {
            entry.failures = 0;
            entry.window_start = now;
        }
        entry.failures += 1;
        let mut blocked_for = None;
        if entry.failures >= settings.failures_allowed {
            let wait = settings
                .first_wait
                .saturating_mul(1u32 << entry.blocks.min(16))
                .min(settings.max_wait);
            entry.blocked_until = Some(now + wait);
            entry.blocks += 1;
            entry.failures = 0;
            entry.window_start = now;
            blocked_for = Some(wait);
        }
        if entry
            .last_logged
            .is_none_or(|logged| now.duration_since(logged) >= LOG_EVERY)
            || blocked_for.is_some()
        {
            entry.last_logged = Some(now);
            match blocked_for {
                Some(wait) => tracing::warn!(
                    client = %address,
                    route,
                    wait_secs = wait.as_secs(),
                    "repeated authentication failures; this address is refused for a while"
                ),
                None => tracing::warn!(client = %address, route, "authentication failed (wrong or missing token)"),
            }
        }
    }

    /// A correct token from `address`: its count starts afresh, and it is
    /// exempt from the global budget for a while.
    pub fn succeeded(&self, address: IpAddr) {
        let address = counted_as(address);
        let now = Instant::now();
        let mut table = self.lock();
        if !table.entries.contains_key(&address) && table.entries.len() >= self.settings.max_entries {
            evict_oldest(&mut table.entries, now);
        }
        let entry = table.entries.entry(address).or_insert_with(|| Entry::new(now));
        *entry = Entry {
            trusted_until: Some(now + TRUSTED_FOR),
            ..Entry::new(now)
        };
    }

    fn refill(&self, table: &mut Table, now: Instant) {
        let rate = f64::from(self.settings.global_failures_per_sec);
        let elapsed = now.duration_since(table.refilled_at).as_secs_f64();
        table.budget = (table.budget + elapsed * rate).min(rate.max(1.0));
        table.refilled_at = now;
    }

    /// Until the global budget allows one more failure.
    fn refill_wait(&self, table: &Table) -> Duration {
        let rate = f64::from(self.settings.global_failures_per_sec.max(1));
        Duration::from_secs_f64(((1.0 - table.budget) / rate).max(0.0)).max(Duration::from_secs(1))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        // Every critical section leaves the table consistent (plain field
        // updates), so a panic elsewhere cannot leave it half-written.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[cfg(test)]
    fn entries(&self) -> usize {
        self.lock().entries.len()
    }
}

/// Drops one entry when the table is full (O(n), only then): the one seen
/// longest ago among those neither trusted (a recent sign-in) nor blocked,
/// else among the blocked, trusted ones last; so that flooding the table
/// neither locks the admin out nor frees the guessers.
fn evict_oldest(entries: &mut HashMap<IpAddr, Entry>, now: Instant) {
    if let Some(oldest) = entries
        .iter()
        .min_by_key(|(_, entry)| {
            let trusted = entry.trusted_until.is_some_and(|until| until > now);
            let blocked = entry.blocked_until.is_some_and(|until| until > now);
            (trusted, blocked, entry.last_seen)
        })
        .map(|(address, _)| *address)
    {
        entries.remove(&oldest);
    }
}

/// Whose count an address adds to: an IPv4 address (also written as
/// IPv6), or an IPv6 /64, which one host usually holds whole (else an
/// attacker would have 2^64 fresh addresses).
fn counted_as(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(std::net::Ipv6Addr::from(prefix))
            }
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ThrottleSettings {
        ThrottleSettings {
            failures_allowed: 3,
            window: Duration::from_secs(60),
            first_wait: Duration::from_secs(10),
            max_wait: Duration::from_secs(25),
            global_failures_per_sec: 1000,
            max_entries: 4,
        }
    }

    fn address(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    fn wait_of(admission: Admission) -> Duration {
        match admission {
            Admission::Wait(wait) => wait,
            Admission::Check => panic!("not throttled"),
        }
    }

    #[test]
    fn an_address_is_blocked_after_its_failures_and_the_wait_doubles_to_the_cap() {
        let throttle = AuthThrottle::new(settings());
        let attacker = address(1);
        for _ in 0..2 {
            assert_eq!(throttle.admit(attacker, "/login"), Admission::Check);
            throttle.failed(attacker, "/login");
        }
        assert_eq!(throttle.admit(attacker, "/admin/refresh"), Admission::Check);
        throttle.failed(attacker, "/admin/refresh");
        let first = wait_of(throttle.admit(attacker, "/login"));
        assert!(
            first > Duration::from_secs(9) && first <= Duration::from_secs(10),
            "{first:?}"
        );
        assert_eq!(
            throttle.admit(address(2), "/login"),
            Admission::Check,
            "another address is not slowed"
        );

        // Each new block doubles the wait, up to the cap.
        for expected in [20, 25, 25] {
            for _ in 0..3 {
                throttle.failed(attacker, "/login");
            }
            let wait = wait_of(throttle.admit(attacker, "/login"));
            assert!(wait > Duration::from_secs(expected - 1) && wait <= Duration::from_secs(expected));
        }
        throttle.succeeded(attacker);
        assert_eq!(throttle.admit(attacker, "/login"), Admission::Check);
    }

    #[test]
    fn the_table_is_bounded_and_forgets_the_oldest() {
        let throttle = AuthThrottle::new(settings());
        for last in 1..=10 {
            throttle.failed(address(last), "/login");
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(throttle.entries(), 4);
    }

    #[test]
    fn an_ipv6_host_counts_as_its_64_and_a_mapped_ipv4_as_itself() {
        let throttle = AuthThrottle::new(settings());
        for last in 1..=3u16 {
            let address = IpAddr::from([0x2001, 0xdb8, 0, 1, 0, 0, 0, last]);
            throttle.failed(address, "/login");
        }
        let neighbour = IpAddr::from([0x2001, 0xdb8, 0, 1, 0xffff, 0, 0, 9]);
        assert!(matches!(throttle.admit(neighbour, "/login"), Admission::Wait(_)));
        let other_network = IpAddr::from([0x2001, 0xdb8, 0, 2, 0, 0, 0, 1]);
        assert_eq!(throttle.admit(other_network, "/login"), Admission::Check);
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(counted_as(mapped), address(1));
    }

    #[test]
    fn a_full_table_forgets_guessers_before_the_admin() {
        let throttle = AuthThrottle::new(ThrottleSettings {
            global_failures_per_sec: 1,
            ..settings()
        });
        let admin = address(200);
        throttle.succeeded(admin);
        for last in 1..=10 {
            std::thread::sleep(Duration::from_millis(2));
            throttle.failed(address(last), "/login");
        }
        assert_eq!(throttle.entries(), 4);
        assert_eq!(
            throttle.admit(admin, "/admin/refresh"),
            Admission::Check,
            "still trusted while the budget is spent"
        );
    }

    #[test]
    fn a_spent_global_budget_holds_new_addresses_but_not_trusted_ones() {
        let throttle = AuthThrottle::new(ThrottleSettings {
            global_failures_per_sec: 2,
            ..settings()
        });
        let admin = address(100);
        throttle.succeeded(admin);
        for last in 1..=3 {
            throttle.failed(address(last), "/admin/refresh");
        }
        assert!(matches!(throttle.admit(address(50), "/login"), Admission::Wait(_)));
        assert!(matches!(throttle.admit(address(1), "/login"), Admission::Wait(_)));
        assert_eq!(throttle.admit(admin, "/admin/refresh"), Admission::Check);
    }
}
