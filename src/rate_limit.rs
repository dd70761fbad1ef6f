//! Per-caller rate limits: one GCRA token bucket (`governor`) per configured caller, built at
//! start from `[auth]` (`rate_per_second`, `burst`, per caller or the default). The auth layer
//! asks it right after authorization and before any work; a caller over its limit is answered
//! RESOURCE_EXHAUSTED (RATE_LIMITED) with a RetryInfo of when its next call conforms.
//!
//! Limits are per replica (in process memory): with N replicas behind a balancer a caller gets
//! up to N times its rate. Every call counts, a replay of a known request_id included: the
//! limit is checked before the store is read, so it cannot know a replay from a new request.

use std::{num::NonZeroU32, time::Duration};

use governor::{
    clock::{Clock, DefaultClock},
    middleware::NoOpMiddleware,
    state::{InMemoryState, NotKeyed},
    Quota, RateLimiter,
};

/// The shortest RetryInfo delay given: "now" would invite an immediate, refused retry.
const MIN_RETRY: Duration = Duration::from_millis(1);

/// One caller's rate limit.
pub struct CallLimit<C: Clock = DefaultClock> {
    limiter: RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<C::Instant>>,
    rate_per_second: f64,
    burst: u32,
}

impl<C: Clock> std::fmt::Debug for CallLimit<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallLimit")
            .field("rate_per_second", &self.rate_per_second)
            .field("burst", &self.burst)
            .finish()
    }
}

impl CallLimit {
    /// The limit of `rate_per_second` calls (sustained) with bursts of `burst` (unset: one
    /// second's worth, at least 1), on the real clock. `Ok(None)`: a rate of 0, unlimited.
    pub fn new(rate_per_second: f64, burst: Option<u32>) -> Result<Option<Self>, String> {
        Self::with_clock(rate_per_second, burst, DefaultClock::default())
    }
}

impl<C: Clock> CallLimit<C> {
    /// [`CallLimit::new`] on `clock` (tests use governor's fake clock).
    pub fn with_clock(
        rate_per_second: f64,
        burst: Option<u32>,
        clock: C,
    ) -> Result<Option<Self>, String> {
        if !rate_per_second.is_finite() || rate_per_second < 0.0 {
            return Err(format!(
                "rate_per_second must be a number >= 0, not {rate_per_second}"
            ));
        }
        if rate_per_second == 0.0 {
            return match burst {
                Some(_) => Err("burst needs a rate_per_second above 0".into()),
                None => Ok(None),
            };
        }
        let period = Duration::try_from_secs_f64(1.0 / rate_per_second)
            .ok()
            .filter(|p| !p.is_zero())
            .ok_or_else(|| format!("rate_per_second {rate_per_second} is out of range"))?;
        // One second's worth by default; `as` saturates, and a rate that high is unlimited in
        // practice anyway.
        let burst = burst.unwrap_or(rate_per_second.ceil() as u32);
        let burst = NonZeroU32::new(burst).ok_or("burst must be at least 1")?;
        let quota = Quota::with_period(period)
            .expect("period is not zero")
            .allow_burst(burst);
        Ok(Some(Self {
            limiter: RateLimiter::direct_with_clock(quota, clock),
            rate_per_second,
            burst: burst.get(),
        }))
    }

    /// Takes one call from the bucket, or says how long until the next call would conform.
    pub fn admit(&self) -> Result<(), Duration> {
        self.limiter.check().map_err(|not_until| {
            not_until
                .wait_time_from(self.limiter.clock().now())
                .max(MIN_RETRY)
        })
    }

    /// The sustained rate, calls per second.
    pub fn rate_per_second(&self) -> f64 {
        self.rate_per_second
    }

    /// The burst, calls.
    pub fn burst(&self) -> u32 {
        self.burst
    }
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    #[test]
    fn a_burst_then_one_call_per_period_with_the_wait_until_the_next() {
        let clock = FakeRelativeClock::default();
        let limit = CallLimit::with_clock(2.0, Some(3), clock.clone())
            .unwrap()
            .expect("limited");
        for _ in 0..3 {
            limit.admit().expect("within the burst");
        }
        assert_eq!(limit.admit(), Err(Duration::from_millis(500)));
        clock.advance(Duration::from_millis(200));
        assert_eq!(limit.admit(), Err(Duration::from_millis(300)));
        clock.advance(Duration::from_millis(300));
        limit.admit().expect("one call replenished");
        assert_eq!(limit.admit(), Err(Duration::from_millis(500)));
        // A long pause refills the burst, never more.
        clock.advance(Duration::from_secs(60));
        for _ in 0..3 {
            limit.admit().expect("refilled");
        }
        assert!(limit.admit().is_err());
    }

    #[test]
    fn the_default_burst_is_one_seconds_worth() {
        let clock = FakeRelativeClock::default();
        let fast = CallLimit::with_clock(2.5, None, clock.clone())
            .unwrap()
            .unwrap();
        assert_eq!(fast.burst(), 3);
        let slow = CallLimit::with_clock(1.0 / 60.0, None, clock)
            .unwrap()
            .unwrap();
        assert_eq!(slow.burst(), 1);
        slow.admit().unwrap();
        let wait = slow.admit().unwrap_err();
        assert!(wait > Duration::from_secs(59) && wait <= Duration::from_secs(60));
    }

    #[test]
    fn zero_is_unlimited_and_nonsense_is_refused() {
        assert!(CallLimit::new(0.0, None).unwrap().is_none());
        for (rate, burst) in [
            (-1.0, None),
            (f64::NAN, None),
            (f64::INFINITY, None),
            (0.0, Some(5)),
            (1.0, Some(0)),
            (1e-30, None),
        ] {
            assert!(
                CallLimit::new(rate, burst).is_err(),
                "{rate} {burst:?} refused"
            );
        }
    }
}
