//! Short leases in the store, and the customer validation of a payment made once across its
//! concurrent duplicates.
//!
//! A lease is one key written `SET NX PX`: the process that writes it does the work, and when
//! done leaves the result under the same key for the rest of the lease, so a duplicate in
//! another replica takes the result instead of doing the work again. A duplicate that finds
//! the work still running answers ABORTED/REQUEST_IN_FLIGHT (retry the same request). Within a
//! process the duplicates share one run by [`super::flight::Flights`], so one lease read or
//! write serves them all.
//!
//! Customer validation runs before a payment is claimed, so the payment record cannot guard
//! it: without the lease, 500 concurrent duplicates of one `request_id` made 500 validation
//! calls. The lease is keyed by payment id and order fingerprint (the same request), so a
//! different request under the same `request_id` validates on its own and is then refused by
//! the claim.

use std::{sync::Arc, time::Duration};

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use super::{ms, Gateway};
use crate::domain::{CustomerValidation, PaymentOrder, Provider, ProviderError};
use crate::error::GatewayError;
use crate::store::{keys, StoreError};

/// How long a validation lease (and the result it leaves) lasts. Longer than a validation
/// call normally takes; when one takes longer, a duplicate arriving after the lease ended
/// validates again (one more read, never a payment: the claim still admits one).
pub(crate) const VALIDATION_LEASE: Duration = Duration::from_secs(10);

/// How long a released lease lingers: a lease is released by a swap (so only its holder can
/// release it), and a swap leaves a value, so the value expires almost at once.
const RELEASED: Duration = Duration::from_millis(1);

/// What a lease key holds.
#[derive(Serialize, Deserialize)]
enum LeaseValue<T> {
    /// Work in progress by the holder of this token.
    Held { token: String },
    /// The holder's result, for duplicates.
    Done { result: T },
    /// Released without a result: the next comer takes the lease.
    Released,
}

/// A lease this process holds.
pub(crate) struct Lease {
    key: String,
    held: Vec<u8>,
}

/// What taking a lease found.
pub(crate) enum Leased<T> {
    /// This process holds it and does the work.
    Mine(Lease),
    /// The holder finished: its result.
    Shared(T),
    /// The holder is still working.
    Busy,
}

/// Why a shared validation gave no answer, in a form every waiter can have a copy of.
#[derive(Debug, Clone)]
pub(crate) enum Failure {
    Provider(ProviderError),
    InFlight,
    Store(String),
    Lost,
}

/// The result every duplicate of one validation shares.
pub(crate) type SharedValidation = Result<CustomerValidation, Failure>;

impl Gateway {
    /// Takes the lease `key` for `ttl`, or reports what holds it.
    pub(crate) async fn take_lease<T: Serialize + DeserializeOwned>(
        &self,
        key: &str,
        ttl: Duration,
    ) -> Result<Leased<T>, StoreError> {
        let held = serde_json::to_vec(&LeaseValue::<T>::Held {
            token: uuid::Uuid::new_v4().simple().to_string(),
        })
        .expect("a lease serializes");
        // Twice at most: a lease released (or expired) between the write and the read is
        // taken on the second look.
        for _ in 0..2 {
            if self.store.set_if_absent(key, &held, Some(ttl)).await? {
                return Ok(Leased::Mine(Lease {
                    key: key.to_owned(),
                    held,
                }));
            }
            match self.store.get(key).await? {
                None => continue,
                Some(bytes) => match serde_json::from_slice::<LeaseValue<T>>(&bytes) {
                    Ok(LeaseValue::Done { result }) => return Ok(Leased::Shared(result)),
                    Ok(LeaseValue::Released) => {
                        // Lingering for a millisecond: replace it if it is still there.
                        let released = serde_json::to_vec(&LeaseValue::<T>::Released)
                            .expect("a lease serializes");
                        if self
                            .store
                            .compare_and_swap_with_ttl(key, &released, &held, Some(ttl))
                            .await?
                        {
                            return Ok(Leased::Mine(Lease {
                                key: key.to_owned(),
                                held,
                            }));
                        }
                    }
                    // Held, or unreadable (another version's): busy until it expires.
                    _ => return Ok(Leased::Busy),
                },
            }
        }
        Ok(Leased::Busy)
    }

    /// Ends a lease: with `result`, kept for duplicates for `ttl`; without one, released at
    /// once. Only the holder's own value is replaced; a store error leaves the lease to expire.
    pub(crate) async fn finish_lease<T: Serialize>(
        &self,
        lease: Lease,
        result: Option<&T>,
        ttl: Duration,
    ) {
        let (value, ttl) = match result {
            Some(result) => (LeaseValue::Done { result }, ttl),
            None => (LeaseValue::Released, RELEASED),
        };
        let value = serde_json::to_vec(&value).expect("a lease serializes");
        if let Err(e) = self
            .store
            .compare_and_swap_with_ttl(&lease.key, &lease.held, &value, Some(ttl))
            .await
        {
            tracing::warn!(error = %e, "lease not ended; it expires on its own");
        }
    }

    /// Validates the customer of a payment once for all concurrent duplicates of the same
    /// request: once in this process (one shared run) and once across replicas (the lease).
    /// A duplicate that meets another replica's validation in progress answers
    /// REQUEST_IN_FLIGHT.
    pub(crate) async fn validate_once(
        self: &Arc<Self>,
        provider: Arc<dyn Provider>,
        request_id: &str,
        payment_id: &str,
        fingerprint: &str,
        order: &PaymentOrder,
    ) -> Result<CustomerValidation, GatewayError> {
        let key = keys::validation_lease(payment_id, fingerprint);
        let this = self.clone();
        let (product_id, customer_id) = (order.product_id.clone(), order.customer_id.clone());
        let lease_key = key.clone();
        let work = async move {
            let lease = this
                .take_lease::<CustomerValidation>(&lease_key, VALIDATION_LEASE)
                .await
                .map_err(|e| Failure::Store(e.0))?;
            match lease {
                Leased::Shared(validation) => Ok(validation),
                Leased::Busy => Err(Failure::InFlight),
                Leased::Mine(lease) => {
                    let answer = provider.validate_customer(&product_id, &customer_id).await;
                    this.finish_lease(lease, answer.as_ref().ok(), VALIDATION_LEASE)
                        .await;
                    answer.map_err(Failure::Provider)
                }
            }
        };
        let shared = self
            .validations
            .run(&key, work)
            .await
            .unwrap_or(Err(Failure::Lost));
        shared.map_err(|failure| match failure {
            Failure::Provider(e) => GatewayError::provider(order.provider, "validate_customer", e),
            Failure::InFlight => GatewayError::RequestInFlight {
                request_id: request_id.to_owned(),
                retry_after: ms(self.payments.in_flight_retry_ms),
            },
            Failure::Store(e) => GatewayError::Store(StoreError(e)),
            Failure::Lost => GatewayError::Internal("customer validation task ended early".into()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    fn gateway() -> Arc<Gateway> {
        Gateway::new(
            Default::default(),
            Arc::new(MemoryStore::default()),
            Default::default(),
            Default::default(),
            false,
        )
    }

    /// Two gateways over one store stand for two replicas.
    fn replicas() -> (Arc<Gateway>, Arc<Gateway>) {
        let store: Arc<dyn crate::store::Store> = Arc::new(MemoryStore::default());
        let one = || {
            Gateway::new(
                Default::default(),
                store.clone(),
                Default::default(),
                Default::default(),
                false,
            )
        };
        (one(), one())
    }

    #[tokio::test]
    async fn a_lease_is_held_then_shares_its_result() {
        let (a, b) = replicas();
        let ttl = Duration::from_secs(10);
        let Leased::Mine(lease) = a.take_lease::<u32>("k", ttl).await.unwrap() else {
            panic!("the first taker holds the lease");
        };
        assert!(matches!(
            b.take_lease::<u32>("k", ttl).await.unwrap(),
            Leased::Busy
        ));
        a.finish_lease(lease, Some(&7u32), ttl).await;
        assert!(matches!(
            b.take_lease::<u32>("k", ttl).await.unwrap(),
            Leased::Shared(7)
        ));
    }

    #[tokio::test]
    async fn a_lease_released_without_a_result_is_taken_again_at_once() {
        let gateway = gateway();
        let ttl = Duration::from_secs(10);
        let Leased::Mine(lease) = gateway.take_lease::<u32>("k", ttl).await.unwrap() else {
            panic!("free lease");
        };
        gateway.finish_lease::<u32>(lease, None, ttl).await;
        assert!(matches!(
            gateway.take_lease::<u32>("k", ttl).await.unwrap(),
            Leased::Mine(_)
        ));
    }

    #[tokio::test]
    async fn only_the_holder_ends_a_lease() {
        let (a, b) = replicas();
        let ttl = Duration::from_secs(10);
        let Leased::Mine(stale) = a.take_lease::<u32>("k", ttl).await.unwrap() else {
            panic!("free lease");
        };
        // The lease ran out and another replica holds it now.
        a.store.delete("k").await.unwrap();
        let Leased::Mine(_current) = b.take_lease::<u32>("k", ttl).await.unwrap() else {
            panic!("expired lease");
        };
        a.finish_lease(stale, Some(&1u32), ttl).await;
        assert!(matches!(
            a.take_lease::<u32>("k", ttl).await.unwrap(),
            Leased::Busy
        ));
    }
}
