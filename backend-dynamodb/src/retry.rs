//! Bounded exponential backoff with full jitter, for work DynamoDB hands back (unprocessed
//! batch items, throttled or conflicting transactions, lost optimistic races).
//!
//! Jitter spreads the retries of many clients that failed together, so they do not collide
//! again; the bound turns a server that never lets the work through into a typed error.

use std::time::Duration;

/// Tracks attempts and sleeps between them.
#[derive(Debug)]
pub(crate) struct Backoff {
    failures: u32,
    max_failures: u32,
    base: Duration,
    cap: Duration,
}

impl Backoff {
    /// For batches: AWS asks clients to back off when items come back unprocessed.
    pub(crate) fn batch() -> Self {
        Self {
            failures: 0,
            max_failures: 10,
            base: Duration::from_millis(25),
            cap: Duration::from_secs(2),
        }
    }

    /// For optimistic writes and transactions that lost a race to another writer: short
    /// delays, many attempts, because every lost race means another writer made progress.
    pub(crate) fn contention() -> Self {
        Self {
            failures: 0,
            max_failures: 100,
            base: Duration::from_millis(2),
            cap: Duration::from_millis(200),
        }
    }

    /// How many failures were counted so far.
    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }

    /// Forgets past failures after progress was made.
    pub(crate) fn reset(&mut self) {
        self.failures = 0;
    }

    /// Counts a failure and sleeps before the next attempt; false once the attempts are used up.
    pub(crate) async fn wait(&mut self) -> bool {
        self.failures += 1;
        if self.failures >= self.max_failures {
            return false;
        }
        tokio::time::sleep(self.delay()).await;
        true
    }

    /// A random delay between zero and `base * 2^failures`, capped.
    fn delay(&self) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32 << self.failures.min(16))
            .min(self.cap);
        // Without randomness, the full ceiling is still a valid (if less spread) delay.
        let fraction = getrandom::u32().map_or(1.0, |r| f64::from(r) / f64::from(u32::MAX));
        ceiling.mul_f64(fraction)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn backoff_is_bounded_and_capped() {
        let mut backoff = Backoff::contention();
        backoff.failures = 30;
        assert!(backoff.delay() <= Duration::from_millis(200));
        let mut backoff = Backoff {
            base: Duration::ZERO,
            ..Backoff::contention()
        };
        let mut attempts = 1;
        while backoff.wait().await {
            attempts += 1;
        }
        assert_eq!(attempts, 100);
    }
}
