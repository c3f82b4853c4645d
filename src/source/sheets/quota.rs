//! Google's read quota (60 requests a minute per user, by default) kept on
//! this side: at most `max` requests start in any window of one minute.
//! Short reads never wait; a long paged read (or many spreadsheets at once)
//! is spread out instead of being answered with 429s.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

#[derive(Debug)]
pub struct Quota {
    max: usize,
    window: Duration,
    /// When the requests of the current window started, oldest first.
    started: Mutex<VecDeque<Instant>>,
}

impl Quota {
    /// `max` requests per `window`; 0 means no limit.
    pub fn new(max: usize, window: Duration) -> Quota {
        Quota {
            max,
            window,
            started: Mutex::new(VecDeque::with_capacity(max)),
        }
    }

    /// Waits until one more request fits the window, and counts it. The lock
    /// is held while waiting, so requests start in the order they asked.
    pub async fn take(&self) {
        if self.max == 0 {
            return;
        }
        let mut started = self.started.lock().await;
        while let Some(oldest) = started.front().copied() {
            if oldest.elapsed() >= self.window {
                started.pop_front();
            } else if started.len() >= self.max {
                tokio::time::sleep(self.window.saturating_sub(oldest.elapsed())).await;
            } else {
                break;
            }
        }
        started.push_back(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn requests_beyond_the_budget_wait_for_the_window() {
        let quota = Quota::new(2, Duration::from_millis(300));
        let begun = Instant::now();
        quota.take().await;
        quota.take().await;
        assert!(
            begun.elapsed() < Duration::from_millis(300),
            "within the budget: no wait"
        );
        quota.take().await;
        assert!(
            begun.elapsed() >= Duration::from_millis(300),
            "the third waited for the window"
        );
        assert!(quota.started.lock().await.len() <= 2, "expired starts are forgotten");
    }
}
