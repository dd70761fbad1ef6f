//! Per-provider protection around every HTTP call: a concurrency limit (calls beyond it wait
//! for a slot, at most `max_slot_wait_ms`: a call that gets none is not sent) and a circuit breaker that counts transport failures (timeouts, connection
//! errors, 5xx) but never declines or other answers. After `breaker_failures` failures in a row
//! the circuit opens for `breaker_open_ms`: calls fail fast, and payments are refused before
//! they are recorded, so nothing is sent into an outage. When the time is up calls go through
//! again; the first failure reopens it, the first success closes it. Exported as
//! `billpay_provider_circuit_open{provider}` (1 from opening until a call succeeds) and
//! `billpay_provider_circuit_opened_total{provider}`.

use std::{sync::Mutex, time::Duration};

use serde::{Deserialize, Deserializer};
use tokio::{sync::Semaphore, time::Instant};

use crate::domain::ProviderError;

/// `[providers.<name>.limits]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallLimits {
    /// Most calls to this provider at once; more wait for a slot.
    #[serde(deserialize_with = "number")]
    pub max_concurrent_calls: u64,
    /// Transport failures in a row that open the circuit.
    #[serde(deserialize_with = "number")]
    pub breaker_failures: u64,
    /// How long an open circuit refuses calls, milliseconds.
    #[serde(deserialize_with = "number")]
    pub breaker_open_ms: u64,
    /// Longest wait for a free slot, milliseconds; a call that gets none in time is not sent
    /// (`NotSent`: a payment ends FAILED "not sent", nothing moved). Bounded so that a
    /// payment's whole call fits in `payments.in_flight_expiry_ms` (see `providers::call_time`).
    #[serde(deserialize_with = "number")]
    pub max_slot_wait_ms: u64,
}

impl Default for CallLimits {
    fn default() -> Self {
        Self {
            max_concurrent_calls: 64,
            breaker_failures: 5,
            breaker_open_ms: 10_000,
            max_slot_wait_ms: 2_000,
        }
    }
}

/// A number from TOML, or from an environment override (which arrives as a string).
fn number<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Int(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Int(n) => Ok(n),
        Raw::Text(s) => s.trim().parse().map_err(serde::de::Error::custom),
    }
}

#[derive(Default)]
struct Breaker {
    failures_in_a_row: u64,
    open_until: Option<Instant>,
}

/// The limit and breaker of one provider.
pub struct CallGuard {
    provider: &'static str,
    slots: Semaphore,
    slot_wait: Duration,
    breaker: Mutex<Breaker>,
    failures_to_open: u64,
    open_for: Duration,
}

impl CallGuard {
    /// A guard for `provider` with `limits`.
    pub fn new(provider: &'static str, limits: &CallLimits) -> Self {
        Self {
            provider,
            slots: Semaphore::new(limits.max_concurrent_calls.clamp(1, 100_000) as usize),
            slot_wait: Duration::from_millis(limits.max_slot_wait_ms),
            breaker: Mutex::new(Breaker::default()),
            failures_to_open: limits.breaker_failures.max(1),
            open_for: Duration::from_millis(limits.breaker_open_ms),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the circuit gauge; counts an opening (a reopening after the open time too).
    fn export_circuit(&self, open: bool) {
        let m = crate::metrics::global();
        let labels = crate::metrics::ProviderName {
            provider: self.provider.to_owned(),
        };
        m.provider_circuit_open
            .get_or_create(&labels)
            .set(i64::from(open));
        if open {
            m.provider_circuit_opened.get_or_create(&labels).inc();
        }
    }

    /// `Err(CircuitOpen)` while the circuit is open.
    pub fn check(&self) -> Result<(), ProviderError> {
        match self.lock().open_until {
            Some(until) if until > Instant::now() => Err(ProviderError::CircuitOpen {
                retry_after: until - Instant::now(),
            }),
            _ => Ok(()),
        }
    }

    /// Runs one call within the limit, unless the circuit is open, and counts its result:
    /// `transport_failure` says whether it failed to reach a working provider.
    pub async fn run<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, ProviderError>>,
        transport_failure: impl FnOnce(&Result<T, ProviderError>) -> bool,
    ) -> Result<T, ProviderError> {
        self.check()?;
        let Ok(slot) = tokio::time::timeout(self.slot_wait, self.slots.acquire()).await else {
            tracing::warn!(
                provider = self.provider,
                wait_ms = self.slot_wait.as_millis() as u64,
                "no call slot free in time; not sent"
            );
            return Err(ProviderError::Transport(format!(
                "no free call slot within {} ms (limits.max_concurrent_calls reached)",
                self.slot_wait.as_millis()
            ))
            .not_sent());
        };
        let _slot = slot.expect("the semaphore is never closed");
        let result = call.await;
        let transport_failure = transport_failure(&result);
        let mut breaker = self.lock();
        if transport_failure {
            breaker.failures_in_a_row += 1;
            if breaker.failures_in_a_row >= self.failures_to_open {
                if breaker
                    .open_until
                    .is_none_or(|until| until <= Instant::now())
                {
                    self.export_circuit(true);
                    tracing::warn!(
                        provider = self.provider,
                        failures = breaker.failures_in_a_row,
                        open_ms = self.open_for.as_millis() as u64,
                        "circuit open: calls refused"
                    );
                }
                breaker.open_until = Some(Instant::now() + self.open_for);
            }
        } else {
            if breaker.open_until.is_some() {
                self.export_circuit(false);
                tracing::info!(provider = self.provider, "circuit closed");
            }
            *breaker = Breaker::default();
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    };

    fn guard(limit: u64) -> CallGuard {
        CallGuard::new(
            "test",
            &CallLimits {
                max_concurrent_calls: limit,
                breaker_failures: 3,
                breaker_open_ms: 1_000,
                max_slot_wait_ms: 500,
            },
        )
    }

    /// The classification HTTP calls use, for unit results.
    fn transport(result: &Result<(), ProviderError>) -> bool {
        matches!(
            result,
            Err(ProviderError::Timeout
                | ProviderError::Transport(_)
                | ProviderError::Upstream { .. })
        )
    }

    async fn fail(g: &CallGuard) -> Result<(), ProviderError> {
        g.run(async { Err::<(), _>(ProviderError::Timeout) }, transport)
            .await
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_failures_in_a_row_and_closes_on_success() {
        let g = guard(8);
        for _ in 0..2 {
            assert!(matches!(fail(&g).await, Err(ProviderError::Timeout)));
        }
        assert!(g.check().is_ok(), "two failures do not open it");
        assert!(matches!(fail(&g).await, Err(ProviderError::Timeout)));
        let ran = AtomicUsize::new(0);
        let refused = g
            .run(
                async {
                    ran.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                },
                transport,
            )
            .await;
        assert!(matches!(refused, Err(ProviderError::CircuitOpen { .. })));
        assert_eq!(
            ran.load(Ordering::SeqCst),
            0,
            "an open circuit calls nothing"
        );

        tokio::time::advance(Duration::from_millis(1_001)).await;
        // Half-open: the first failure reopens at once.
        assert!(matches!(fail(&g).await, Err(ProviderError::Timeout)));
        assert!(g.check().is_err());
        tokio::time::advance(Duration::from_millis(1_001)).await;
        assert!(g.run(async { Ok(()) }, transport).await.is_ok());
        assert!(g.check().is_ok());
        // Closed again: it takes three new failures to open.
        fail(&g).await.unwrap_err();
        fail(&g).await.unwrap_err();
        assert!(g.check().is_ok());
    }

    /// The gauge an alert watches: 1 from the opening until a call succeeds (also through the
    /// half-open time), each opening counted.
    #[tokio::test(start_paused = true)]
    async fn the_circuit_gauge_follows_opening_and_closing() {
        let g = CallGuard::new(
            "gauge_test_provider",
            &CallLimits {
                breaker_failures: 2,
                breaker_open_ms: 1_000,
                ..CallLimits::default()
            },
        );
        let labels = crate::metrics::ProviderName {
            provider: "gauge_test_provider".into(),
        };
        let m = crate::metrics::global();
        let open = || m.provider_circuit_open.get_or_create(&labels).get();
        let opened = || m.provider_circuit_opened.get_or_create(&labels).get();
        fail(&g).await.unwrap_err();
        assert_eq!((open(), opened()), (0, 0), "one failure opens nothing");
        fail(&g).await.unwrap_err();
        assert_eq!((open(), opened()), (1, 1));
        tokio::time::advance(Duration::from_millis(1_001)).await;
        assert_eq!(open(), 1, "half-open is not closed");
        fail(&g).await.unwrap_err();
        assert_eq!((open(), opened()), (1, 2), "a reopening counts");
        tokio::time::advance(Duration::from_millis(1_001)).await;
        g.run(async { Ok(()) }, transport).await.unwrap();
        assert_eq!((open(), opened()), (0, 2));
        assert!(crate::metrics::global()
            .render()
            .contains("billpay_provider_circuit_open{provider=\"gauge_test_provider\"} 0"));
    }

    #[tokio::test(start_paused = true)]
    async fn declines_and_odd_answers_do_not_count() {
        let g = guard(8);
        for _ in 0..10 {
            let declined = g
                .run(
                    async {
                        Err::<(), _>(ProviderError::Rejected {
                            code: "70120".into(),
                            message: String::new(),
                        })
                    },
                    transport,
                )
                .await;
            assert!(declined.is_err());
            let refused = g
                .run(
                    async { Err::<(), _>(ProviderError::Auth { status: 401 }) },
                    transport,
                )
                .await;
            assert!(refused.is_err());
        }
        assert!(g.check().is_ok());
        // A decline between failures breaks the run.
        fail(&g).await.unwrap_err();
        fail(&g).await.unwrap_err();
        g.run(
            async {
                Err::<(), _>(ProviderError::NotFound {
                    resource: crate::domain::Resource::Biller,
                    name: "x".into(),
                })
            },
            transport,
        )
        .await
        .unwrap_err();
        fail(&g).await.unwrap_err();
        assert!(g.check().is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn calls_beyond_the_limit_wait_for_a_slot() {
        let g = Arc::new(guard(2));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let mut calls = Vec::new();
        for _ in 0..6 {
            let (g, in_flight, most) = (g.clone(), in_flight.clone(), most.clone());
            calls.push(tokio::spawn(async move {
                g.run(
                    async {
                        let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        in_flight.fetch_sub(1, Ordering::SeqCst);
                        Ok::<(), ProviderError>(())
                    },
                    transport,
                )
                .await
            }));
        }
        for c in calls {
            c.await.unwrap().unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
    }

    /// A call that waits longer than `max_slot_wait_ms` for a slot is not sent, and says so;
    /// one that gets a slot in time runs.
    #[tokio::test(start_paused = true)]
    async fn the_wait_for_a_slot_is_bounded_and_a_call_without_one_is_not_sent() {
        let g = Arc::new(guard(1));
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let holder = {
            let g = g.clone();
            tokio::spawn(async move {
                g.run(
                    async {
                        let _ = released.await;
                        Ok::<(), ProviderError>(())
                    },
                    transport,
                )
                .await
            })
        };
        tokio::task::yield_now().await;
        let ran = AtomicUsize::new(0);
        let started = Instant::now();
        let refused = g
            .run(
                async {
                    ran.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                },
                transport,
            )
            .await;
        assert!(
            matches!(&refused, Err(ProviderError::NotSent(_))),
            "{refused:?}"
        );
        assert_eq!(ran.load(Ordering::SeqCst), 0, "nothing was sent");
        assert!(started.elapsed() >= Duration::from_millis(500));
        assert!(g.check().is_ok(), "a full limit is not a provider failure");
        release.send(()).unwrap();
        holder.await.unwrap().unwrap();
        assert!(g.run(async { Ok(()) }, transport).await.is_ok());
    }

    #[test]
    fn limits_read_numbers_from_toml_or_environment_strings() {
        let from_toml: CallLimits = toml::from_str("max_concurrent_calls = 8").unwrap();
        assert_eq!(from_toml.max_concurrent_calls, 8);
        assert_eq!(from_toml.breaker_failures, 5);
        let from_env: CallLimits = toml::from_str("breaker_open_ms = \"2500\"").unwrap();
        assert_eq!(from_env.breaker_open_ms, 2_500);
        assert!(toml::from_str::<CallLimits>("breaker_open_ms = \"soon\"").is_err());
    }
}
