//! Single flight within this process: concurrent callers of one key share one run of the work
//! and all get its result. The work runs in its own task, so it completes (and the key is
//! freed) even when every caller has gone away; a caller that comes after it ended starts a new
//! run. Used for customer validation (keyed by payment, so concurrent duplicates of one
//! `request_id` make one provider call) and for the catalog read again after a product miss.

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, Mutex},
};
use tracing::Instrument;

use futures_util::future::{BoxFuture, FutureExt, Shared};

/// A run that ended without a result: its task panicked or was cancelled at shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlightLost;

type Running<V> = Shared<BoxFuture<'static, Result<V, FlightLost>>>;

/// The runs in progress, by key.
pub struct Flights<V> {
    running: Arc<Mutex<HashMap<String, Running<V>>>>,
}

impl<V> Default for Flights<V> {
    fn default() -> Self {
        Self {
            running: Arc::default(),
        }
    }
}

impl<V: Clone + Send + Sync + 'static> Flights<V> {
    /// The result of `work` for `key`: this call's own run, or the run another caller of the
    /// same key started and has not finished (then `work` is dropped unrun).
    pub async fn run<F>(&self, key: &str, work: F) -> Result<V, FlightLost>
    where
        F: Future<Output = V> + Send + 'static,
    {
        let flight = {
            let mut running = self.running.lock().expect("flights lock");
            match running.get(key) {
                Some(flight) => flight.clone(),
                None => {
                    let registry = self.running.clone();
                    let owned_key = key.to_owned();
                    // The task frees the key when done; it cannot do so before the insert
                    // below, which happens under the lock it needs.
                    let task = tokio::spawn(
                        async move {
                            let value = work.await;
                            registry.lock().expect("flights lock").remove(&owned_key);
                            value
                        }
                        // In the first caller's span (the others share its work).
                        .in_current_span(),
                    );
                    let registry = self.running.clone();
                    let owned_key = key.to_owned();
                    let flight = async move {
                        let joined = task.await;
                        if joined.is_err() {
                            // Panicked before freeing its key.
                            registry.lock().expect("flights lock").remove(&owned_key);
                        }
                        joined.map_err(|_| FlightLost)
                    }
                    .boxed()
                    .shared();
                    running.insert(key.to_owned(), flight.clone());
                    flight
                }
            }
        };
        flight.await
    }

    /// How many runs are in progress (for tests).
    pub fn running(&self) -> usize {
        self.running.lock().expect("flights lock").len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::sync::Notify;

    #[tokio::test]
    async fn concurrent_callers_of_one_key_share_one_run() {
        let flights = Arc::new(Flights::<usize>::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(Notify::new());
        let mut callers = Vec::new();
        for _ in 0..50 {
            let (flights, runs, release) = (flights.clone(), runs.clone(), release.clone());
            callers.push(tokio::spawn(async move {
                flights
                    .run("k", async move {
                        release.notified().await;
                        runs.fetch_add(1, Ordering::SeqCst) + 1
                    })
                    .await
            }));
        }
        // Every caller has joined the one run before it is let go.
        while flights.running() == 0 {
            tokio::task::yield_now().await;
        }
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        release.notify_one();
        for caller in callers {
            assert_eq!(caller.await.unwrap(), Ok(1));
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(flights.running(), 0, "the key is freed when the run ends");
        // A later caller runs again.
        let again = flights.run("k", async { 7 }).await;
        assert_eq!(again, Ok(7));
    }

    #[tokio::test]
    async fn a_run_completes_when_its_callers_went_away() {
        let flights = Arc::new(Flights::<()>::default());
        let done = Arc::new(Notify::new());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let signal = done.clone();
        let caller = {
            let flights = flights.clone();
            tokio::spawn(async move {
                flights
                    .run("k", async move {
                        let _ = rx.await;
                        signal.notify_one();
                    })
                    .await
            })
        };
        while flights.running() == 0 {
            tokio::task::yield_now().await;
        }
        caller.abort();
        let _ = caller.await;
        let finished = done.notified();
        tx.send(()).unwrap();
        finished.await;
        while flights.running() != 0 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn a_panicking_run_frees_its_key() {
        let flights = Flights::<u8>::default();
        let lost = flights
            .run("k", async {
                if true {
                    panic!("boom");
                }
                0
            })
            .await;
        assert_eq!(lost, Err(FlightLost));
        assert_eq!(flights.running(), 0);
        assert_eq!(flights.run("k", async { 1 }).await, Ok(1));
    }
}
