//! When a failed delivery is tried again: exponential backoff with jitter, unless the receiver
//! said when (`Retry-After`, in seconds or as an HTTP date).
use std::time::Duration;

use chrono::{DateTime, Utc};

/// The retry schedule.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    /// The delay after the first failed attempt; it doubles after each further one...
    pub base: Duration,
    /// ...up to this, which also caps a receiver's `Retry-After`.
    pub cap: Duration,
    /// Attempts in all, the first included; after the last, the delivery is given up.
    pub max_attempts: u32,
}

impl Backoff {
    /// The delay before attempt `failed + 1`, after `failed` failed attempts (from 1), before
    /// jitter: `base × 2^(failed-1)`, at most `cap`.
    pub fn delay(&self, failed: u32) -> Duration {
        let factor = 2f64.powi(failed.saturating_sub(1).min(62) as i32);
        Duration::from_secs_f64((self.base.as_secs_f64() * factor).min(self.cap.as_secs_f64()))
    }

    /// [`Backoff::delay`] with "equal jitter": half of it, plus a random part of the other half
    /// (`unit` in [0, 1)), so that deliveries failed together do not retry together.
    pub fn jittered(&self, failed: u32, unit: f64) -> Duration {
        let d = self.delay(failed).as_secs_f64();
        Duration::from_secs_f64(d / 2.0 + d / 2.0 * unit.clamp(0.0, 1.0))
    }

    /// The delay before the next attempt: the receiver's `Retry-After` when it gave one (capped),
    /// else the jittered backoff.
    pub fn next(&self, failed: u32, retry_after: Option<Duration>) -> Duration {
        match retry_after {
            Some(d) => d.min(self.cap),
            None => self.jittered(failed, rand::random::<f64>()),
        }
    }

    /// How long the retries take in all, at the least and at the most jitter.
    #[cfg(test)]
    pub fn span(&self) -> (Duration, Duration) {
        let gaps = (1..self.max_attempts).map(|n| self.delay(n));
        let most: Duration = gaps.sum();
        (most / 2, most)
    }
}

/// A `Retry-After` value: seconds, or an HTTP date (as a delay from `now`; a past date is 0).
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    // IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) reads as RFC 2822.
    let at = DateTime::parse_from_rfc2822(value).ok()?.with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULTS: Backoff = Backoff { base: Duration::from_secs(5), cap: Duration::from_secs(7200), max_attempts: 15 };

    #[test]
    fn the_delay_doubles_up_to_the_cap() {
        let secs: Vec<u64> = (1..=14).map(|n| DEFAULTS.delay(n).as_secs()).collect();
        assert_eq!(secs, [5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 5120, 7200, 7200, 7200]);
        assert_eq!(DEFAULTS.delay(1000), Duration::from_secs(7200));
        for n in 1..20 {
            let d = DEFAULTS.delay(n);
            assert_eq!(DEFAULTS.jittered(n, 0.0), d / 2);
            assert_eq!(DEFAULTS.jittered(n, 1.0), d);
            let r = DEFAULTS.next(n, None);
            assert!(r >= d / 2 && r <= d, "{r:?} for {n}");
        }
    }

    /// The defaults keep trying for over an hour whatever the jitter (4.4 to 8.8 hours).
    #[test]
    fn the_default_schedule_spans_hours() {
        let (least, most) = DEFAULTS.span();
        assert!(least >= Duration::from_secs(3600), "{least:?}");
        assert_eq!(most.as_secs(), 31_835);
    }

    #[test]
    fn retry_after_is_honoured_and_capped() {
        let now = DateTime::parse_from_rfc3339("1994-11-06T08:49:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now), Some(Duration::from_secs(37)));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(DEFAULTS.next(1, Some(Duration::from_secs(30))), Duration::from_secs(30));
        assert_eq!(DEFAULTS.next(1, Some(Duration::from_secs(86_400))), Duration::from_secs(7200));
    }
}
