//! Routed payments: a payment that names a directory biller instead of a provider.
//!
//! The routes are tried in the order of the routing policy (`directory.rs`). Before the claim,
//! each route runs its provider's own steps (caller permission, circuit, catalog check,
//! customer validation and amount rule, OnePipe options for an order_reference, the provider's
//! order rules); a route refused there was certainly not sent and the next one is tried. The
//! first route that passes is claimed under the payment's ONE record (the same claim -> in
//! flight -> outcome journal as a direct payment, keyed by `request_id`), with the routes
//! refused so far in it: a duplicate on any replica replays that record or is told it is in
//! flight, and never starts a route of its own.
//!
//! After the claim the payment moves to another route only when its call was refused before
//! anything was sent (`call_provider`'s [`CallEnd::NotSent`]: circuit open, no access token,
//! no call slot, an order the adapter cannot send). The move is one compare-and-swap of the
//! in-flight record: the attempt is closed as not sent, and the record names the next route
//! with a fresh provider reference and is claimed again, before that route is called. An
//! unknown outcome (timeout, 5xx, unreadable answer) is recorded on its route like any
//! payment's: PENDING, reconciled with that provider, never tried elsewhere.

use std::{collections::VecDeque, sync::Arc, time::Duration};

use tokio::sync::oneshot;

use super::events::Cause;
use super::{
    ms,
    payments::{within, CallEnd, Claim, Next, Owner, RouteClaim, Source},
    Gateway,
};
use crate::auth::CallerScope;
use crate::domain::{
    directory::{Route, RouteAttempt, RoutedOrder},
    payment::CallPhase,
    Capability, OffersQuery, PaymentOptions, PaymentOrder, PaymentOutcome, PaymentRecord,
    PaymentSecrets, PaymentState, Product, Provider, Resource,
};
use crate::error::{FieldViolation, GatewayError};

/// A route that passed its provider's steps: ready to be claimed and sent.
struct Prepared {
    route: Route,
    provider: Arc<dyn Provider>,
    order: PaymentOrder,
    product: Option<Product>,
}

/// What the routing needs to prepare a route: the request and its keys.
struct RouteRequest<'a> {
    routed: &'a RoutedOrder,
    secrets: &'a PaymentSecrets,
    request_id: &'a str,
    payment_id: &'a str,
    fingerprint: &'a str,
}

/// Errors that are not the route's: trying another route would not help (or would race a
/// duplicate), so they are answered as they are.
fn stops_routing(e: &GatewayError) -> bool {
    matches!(
        e,
        GatewayError::Store(_)
            | GatewayError::StoreDataLost
            | GatewayError::StoreUnfit { .. }
            | GatewayError::RequestInFlight { .. }
            | GatewayError::Internal(_)
            | GatewayError::IdempotencyKeyReused { .. }
            | GatewayError::RequestPredatesRecovery { .. }
    )
}

/// `PROVIDER_X: why; ...` for NO_ROUTE_AVAILABLE.
fn attempts_text(attempts: &[RouteAttempt]) -> String {
    if attempts.is_empty() {
        return "the biller has no route".into();
    }
    attempts
        .iter()
        .map(|a| format!("{}: {}", a.provider.proto_name(), a.reason))
        .collect::<Vec<_>>()
        .join("; ")
}

impl Gateway {
    /// Pays a directory biller once per `request_id`, through the first route that takes it
    /// (see the module documentation). Arguments as [`Gateway::create_payment`].
    pub async fn create_routed_payment(
        self: &Arc<Self>,
        request_id: String,
        routed: RoutedOrder,
        secrets: PaymentSecrets,
        answer_within: Option<Duration>,
        created_at_ms: Option<i64>,
    ) -> Result<PaymentRecord, GatewayError> {
        let deadline = answer_within.map(|d| tokio::time::Instant::now() + d);
        let directory = self.directory();
        let biller = directory
            .get(&routed.directory_biller_id)
            .cloned()
            .ok_or_else(|| {
                GatewayError::not_found(Resource::DirectoryBiller, &routed.directory_biller_id)
            })?;
        if routed.template.amount.currency != biller.currency {
            return Err(GatewayError::invalid(
                "amount.currency_code",
                format!("{} is paid in {}", biller.id, biller.currency.code()),
            ));
        }
        self.check_posture().await?;
        self.checked_identity().await?;
        let payment_id = crate::auth::scoped_payment_id(&request_id)
            .unwrap_or_else(|| PaymentRecord::id_for_request(&request_id));
        let fingerprint = routed.fingerprint();
        if let Some(answer) = self
            .earlier_answer(&request_id, &payment_id, &fingerprint)
            .await?
        {
            return answer;
        }
        self.check_created_after_recovery(&request_id, created_at_ms)?;

        // The routes in policy order; those that cannot pay (not configured, not allowed,
        // broken catalog entry) are recorded as not sent and never tried.
        let view = self.biller_view(&biller).await;
        let now = self.clock.now_ms();
        let mut attempts: Vec<RouteAttempt> = view
            .routes
            .iter()
            .filter(|v| !v.can_pay)
            .map(|v| RouteAttempt::not_sent(&v.route, v.note.clone(), now))
            .collect();
        let mut candidates: VecDeque<Route> = view
            .routes
            .iter()
            .filter(|v| v.can_pay)
            .map(|v| v.route.clone())
            .collect();
        let request = RouteRequest {
            routed: &routed,
            secrets: &secrets,
            request_id: &request_id,
            payment_id: &payment_id,
            fingerprint: &fingerprint,
        };
        let mut chosen = None;
        while let Some(route) = candidates.pop_front() {
            match self.prepare_route(&route, &request).await {
                Ok(prepared) => {
                    chosen = Some(prepared);
                    break;
                }
                Err(e) if stops_routing(&e) => return Err(e),
                Err(e) => {
                    tracing::info!(
                        directory_biller = biller.id,
                        provider = %route.provider,
                        why = %e,
                        "route not taken; nothing sent"
                    );
                    attempts.push(RouteAttempt::not_sent(
                        &route,
                        e.to_string(),
                        self.clock.now_ms(),
                    ));
                }
            }
        }
        let Some(prepared) = chosen else {
            return Err(GatewayError::NoRouteAvailable {
                directory_biller_id: biller.id.clone(),
                attempts: attempts_text(&attempts),
            });
        };

        let (claimed_tx, claimed_rx) = oneshot::channel();
        let this = self.clone();
        let request_id_copy = request_id.clone();
        let owner = Owner {
            payment_id: payment_id.clone(),
            caller: crate::auth::current_caller().unwrap_or_default(),
            created_at_ms,
            routing: Some(RouteClaim {
                directory_biller_id: routed.directory_biller_id.clone(),
                attempts,
            }),
        };
        // The next routes are prepared as this caller (its provider permissions).
        let scope = CallerScope::current();
        let mut task = self.tasks.spawn(async move {
            let Prepared {
                route: _,
                provider,
                order,
                product,
            } = prepared;
            let claim = this
                .claim(
                    provider.as_ref(),
                    request_id.clone(),
                    order,
                    product,
                    fingerprint.clone(),
                    owner,
                )
                .await;
            let (record, written) = match claim {
                Ok(Claim::Won(record, written)) => (record, written),
                Ok(Claim::Replay(answer)) => {
                    let _ = claimed_tx.send(answer);
                    return None;
                }
                Err(e) => {
                    let _ = claimed_tx.send(Err(e));
                    return None;
                }
            };
            let _ = claimed_tx.send(Ok(record.clone()));
            let payment_id = record.payment_id.clone();
            let request = RouteRequest {
                routed: &routed,
                secrets: &secrets,
                request_id: &request_id,
                payment_id: &payment_id,
                fingerprint: &fingerprint,
            };
            this.run_routes(provider, record, written, candidates, &request, &scope)
                .await
        });

        let pending = match within(deadline, claimed_rx).await {
            Some(Ok(answer)) => answer?,
            Some(Err(_)) => {
                return Err(GatewayError::Internal("payment task ended early".into()));
            }
            None => {
                return Err(GatewayError::RequestInFlight {
                    request_id: request_id_copy,
                    retry_after: ms(self.payments.in_flight_retry_ms),
                });
            }
        };
        match within(deadline, &mut task).await {
            Some(Ok(Some(record))) => Ok(record),
            Some(Ok(None)) | None => Ok(pending),
            Some(Err(e)) => Err(GatewayError::Internal(format!("payment task failed: {e}"))),
        }
    }

    /// Asks the routes of a directory biller that can pay and have `capability`, in the
    /// routing policy's order, until one answers `ask` (a read: customer validation, payment
    /// options): that route and its answer. A route whose provider fails or refuses is left
    /// for the next; none answering is NO_ROUTE_AVAILABLE.
    pub async fn ask_routes<T, F, Fut>(
        self: &Arc<Self>,
        directory_biller_id: &str,
        capability: Capability,
        mut ask: F,
    ) -> Result<(Route, T), GatewayError>
    where
        F: FnMut(Route) -> Fut,
        Fut: std::future::Future<Output = Result<T, GatewayError>>,
    {
        let directory = self.directory();
        let biller = directory.get(directory_biller_id).cloned().ok_or_else(|| {
            GatewayError::not_found(Resource::DirectoryBiller, directory_biller_id)
        })?;
        let view = self.biller_view(&biller).await;
        let mut refused = Vec::new();
        let now = self.clock.now_ms();
        for v in view.routes {
            let supported = self
                .providers
                .get(&v.route.provider)
                .is_some_and(|p| p.capabilities().contains(&capability));
            if !v.can_pay || !supported {
                let why = if v.can_pay {
                    format!(
                        "{} does not support {}",
                        v.route.provider.proto_name(),
                        capability.proto_name()
                    )
                } else {
                    v.note.clone()
                };
                refused.push(RouteAttempt::not_sent(&v.route, why, now));
                continue;
            }
            match ask(v.route.clone()).await {
                Ok(answer) => return Ok((v.route, answer)),
                Err(e) if stops_routing(&e) => return Err(e),
                Err(e) => refused.push(RouteAttempt::not_sent(&v.route, e.to_string(), now)),
            }
        }
        Err(GatewayError::NoRouteAvailable {
            directory_biller_id: biller.id,
            attempts: attempts_text(&refused),
        })
    }

    /// Runs `route`'s provider steps for the request; `Err` says why the route is not taken
    /// (nothing was sent for the payment).
    async fn prepare_route(
        self: &Arc<Self>,
        route: &Route,
        request: &RouteRequest<'_>,
    ) -> Result<Prepared, GatewayError> {
        let id = route.provider;
        let provider = self.provider(id, Capability::CreatePayment)?.clone();
        let mut order = request.routed.order_for(route);
        if !provider.currencies().contains(&order.amount.currency) {
            return Err(GatewayError::invalid(
                "amount.currency_code",
                format!(
                    "{} does not pay in {}",
                    id.proto_name(),
                    order.amount.currency.code()
                ),
            ));
        }
        // An open circuit first: no validation is sent into an outage either.
        provider
            .accepting_calls()
            .map_err(|e| GatewayError::provider(id, "pay", e))?;
        let listed = self
            .listed_product(id, &order.biller_id, &order.product_id)
            .await?;
        if provider
            .capabilities()
            .contains(&Capability::ValidateCustomer)
        {
            // Once per request and route, across replicas.
            let customer = self
                .validate_once(
                    provider.clone(),
                    request.request_id,
                    request.payment_id,
                    &format!("{}/{id}", request.fingerprint),
                    &order,
                )
                .await?;
            customer
                .amount_rule
                .check(order.amount)
                .map_err(|(field, why)| GatewayError::AmountRuleViolated {
                    provider: id,
                    violation: FieldViolation::new(field, why),
                })?;
        }
        // OnePipe pays an option it quoted for this customer: the gateway asks for one.
        if let PaymentOptions::OnePipe(options) = &mut order.options {
            if options.order_reference.trim().is_empty() {
                let offers = self
                    .payment_offers(
                        id,
                        &OffersQuery {
                            biller_id: order.biller_id.clone(),
                            product_id: order.product_id.clone(),
                            customer_id: order.customer_id.clone(),
                            amount: Some(order.amount),
                            contact: order.contact.clone(),
                        },
                    )
                    .await?;
                let offer = offers
                    .offers
                    .iter()
                    .find(|o| o.product_id == order.product_id)
                    .ok_or_else(|| {
                        GatewayError::invalid(
                            "directory_biller_id",
                            format!(
                                "{} offers no {} to this customer",
                                id.proto_name(),
                                order.product_id
                            ),
                        )
                    })?;
                options.order_reference = offer.order_reference.clone();
            }
        }
        let product = if provider.pays_from_catalog() {
            Some(listed.ok_or_else(|| {
                GatewayError::invalid("product_id", format!("required for {}", id.proto_name()))
            })?)
        } else {
            None
        };
        provider
            .check_order(&order, product.as_ref(), request.secrets)
            .map_err(|e| GatewayError::provider(id, "pay", e))?;
        Ok(Prepared {
            route: route.clone(),
            provider,
            order,
            product,
        })
    }

    /// Calls the claimed route; while a call is refused before anything was sent, moves the
    /// payment to the next route that takes it (one journal write) and calls that. With no
    /// route left the payment is FAILED: nothing was sent anywhere.
    async fn run_routes(
        self: &Arc<Self>,
        mut provider: Arc<dyn Provider>,
        mut record: PaymentRecord,
        mut written: Vec<u8>,
        mut rest: VecDeque<Route>,
        request: &RouteRequest<'_>,
        scope: &CallerScope,
    ) -> Option<PaymentRecord> {
        let payment_id = record.payment_id.clone();
        loop {
            let reference = record.provider_reference.clone();
            let (known, why) = match self
                .call_provider(provider.as_ref(), record, written, request.secrets, true)
                .await
            {
                CallEnd::Recorded(record) => return record.map(|r| *r),
                CallEnd::NotSent { known, why } => (known, why),
            };
            tracing::info!(payment_id, %why, "route refused the call before sending; trying the next route");
            let mut skipped = Vec::new();
            let mut next = None;
            while let Some(route) = rest.pop_front() {
                match scope.run(self.prepare_next(&route, request)).await {
                    Ok(found) => {
                        next = Some(found);
                        break;
                    }
                    Err(e) => skipped.push(RouteAttempt::not_sent(
                        &route,
                        e.to_string(),
                        self.clock.now_ms(),
                    )),
                }
            }
            // Only from the in-flight record of the attempt just refused.
            let ours = |r: &PaymentRecord| {
                matches!(r.call, CallPhase::InFlight { .. })
                    && r.state == PaymentState::Pending
                    && r.provider_reference == reference
            };
            let close = |r: &mut PaymentRecord, now: i64| {
                if let Some(last) = r.route_attempts.last_mut() {
                    last.sent = false;
                    last.reason = why.clone();
                    last.at_ms = now;
                }
                r.route_attempts.extend(skipped.iter().cloned());
            };
            let Some((prepared, sequence, new_reference)) = next else {
                // No route left: nothing was sent anywhere.
                let closed = self
                    .update_payment_from(
                        known,
                        &payment_id,
                        Next::Keep,
                        Cause::ProviderAnswer,
                        |r, now| {
                            if !ours(r) {
                                return false;
                            }
                            close(r, now);
                            true
                        },
                    )
                    .await;
                let known = match closed {
                    Ok(Some((_, bytes))) => Some(bytes),
                    Ok(None) => return self.load_payment(&payment_id).await.ok().flatten(),
                    Err(e) => {
                        tracing::warn!(payment_id, error = %e, "route attempts not recorded");
                        None
                    }
                };
                let outcome = PaymentOutcome {
                    state: PaymentState::Failed,
                    provider_message: format!("{why}; no other route could take it"),
                    ..PaymentOutcome::default()
                };
                return self
                    .record_outcome_from(known, &payment_id, outcome, Source::Payment, None)
                    .await;
            };
            let moved = self
                .update_payment_from(
                    known,
                    &payment_id,
                    Next::Keep,
                    Cause::ProviderAnswer,
                    |r, now| {
                        if !ours(r) {
                            return false;
                        }
                        close(r, now);
                        r.route_attempts.push(RouteAttempt {
                            provider: prepared.route.provider,
                            biller_id: prepared.route.biller_id.clone(),
                            product_id: prepared.route.product_id.clone(),
                            sent: true,
                            reason: String::new(),
                            provider_reference: new_reference.clone(),
                            at_ms: now,
                        });
                        r.order = prepared.order.clone();
                        r.product = prepared.product.clone();
                        r.provider_reference = new_reference.clone();
                        r.reference_sequence = sequence;
                        r.provider_code.clear();
                        r.provider_message.clear();
                        r.call = CallPhase::Claimed { since_ms: now };
                        r.updated_at_ms = now;
                        true
                    },
                )
                .await;
            match moved {
                Ok(Some((moved, bytes))) => {
                    self.claimed.note(&payment_id, &bytes).await;
                    tracing::info!(
                        payment_id,
                        provider = %prepared.provider.id(),
                        reference = moved.provider_reference,
                        "payment moved to its next route"
                    );
                    record = moved;
                    written = bytes;
                    provider = prepared.provider;
                }
                Ok(None) => return self.load_payment(&payment_id).await.ok().flatten(),
                Err(e) => {
                    // Still in flight on the refused route (never sent): reconciliation asks
                    // that provider and hands it to an operator; it never moves on unrecorded.
                    tracing::error!(payment_id, error = %e, "payment not moved to its next route");
                    return None;
                }
            }
        }
    }

    /// [`Self::prepare_route`], with the route's provider reference drawn and the objects it
    /// leaves at the provider recorded as the caller's: ready for the journal's move.
    async fn prepare_next(
        self: &Arc<Self>,
        route: &Route,
        request: &RouteRequest<'_>,
    ) -> Result<(Prepared, u64, String), GatewayError> {
        let prepared = self.prepare_route(route, request).await?;
        let id = prepared.provider.id();
        let sequence = self.next_reference(id).await?;
        let reference = prepared
            .provider
            .payment_reference(sequence)
            .ok_or_else(|| {
                GatewayError::Internal(format!("{id} payment references are exhausted"))
            })?;
        let caller = crate::auth::current_caller().unwrap_or_default();
        self.record_created_objects(
            prepared.provider.as_ref(),
            &prepared.order,
            &reference,
            &caller,
        )
        .await?;
        Ok((prepared, sequence, reference))
    }
}

#[cfg(test)]
mod tests {
    //! The journal side of routing, over scripted providers (no HTTP: each answers `pay` as
    //! told); the HTTP side is tests/directory.rs, against the simulators.
    use std::sync::{
        atomic::{AtomicUsize, Ordering},
        Mutex,
    };

    use super::*;
    use crate::domain::{
        directory::Directory, payment::PaymentKind, Currency, Money, ProviderError, ProviderId,
    };
    use crate::gateway::{directory::DirectorySettings, Registry};
    use crate::store::memory::MemoryStore;

    /// A provider whose payment call answers `answer`, counting calls.
    struct Scripted {
        id: ProviderId,
        answer: Mutex<Result<PaymentOutcome, ProviderError>>,
        pays: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl Provider for Scripted {
        fn id(&self) -> ProviderId {
            self.id
        }
        fn display_name(&self) -> &'static str {
            "scripted"
        }
        fn currencies(&self) -> &'static [Currency] {
            &[Currency::Ngn]
        }
        fn capabilities(&self) -> &'static [Capability] {
            &[Capability::CreatePayment]
        }
        fn payment_reference(&self, sequence: u64) -> Option<String> {
            Some(format!("{}-{sequence}", self.id))
        }
        async fn pay(
            &self,
            _payment: &PaymentRecord,
            _secrets: &PaymentSecrets,
        ) -> Result<PaymentOutcome, ProviderError> {
            self.pays.fetch_add(1, Ordering::SeqCst);
            self.answer.lock().unwrap().clone()
        }
    }

    const DIRECTORY: &str = r#"
[[biller]]
id = "t.power"
name = "Test power"
country = "NG"
category = "electricity"
currency = "NGN"
[[biller.route]]
provider = "interswitch"
biller_id = "b1"
product_id = "p1"
[[biller.route]]
provider = "onepipe"
biller_id = "b2"
product_id = "p2"
[[biller.route]]
provider = "switch"
biller_id = "b3"
product_id = "p3"
"#;

    fn succeeded() -> Result<PaymentOutcome, ProviderError> {
        Ok(PaymentOutcome::answered(
            PaymentState::Succeeded,
            "00",
            "paid",
        ))
    }

    /// A gateway whose three routes (Interswitch, OnePipe, Switch, tried in that order) answer
    /// `answers`.
    fn scripted_gateway(
        answers: [Result<PaymentOutcome, ProviderError>; 3],
    ) -> (Arc<Gateway>, Vec<Arc<Scripted>>) {
        let ids = [
            ProviderId::Interswitch,
            ProviderId::OnePipe,
            ProviderId::Switch,
        ];
        let scripted: Vec<Arc<Scripted>> = ids
            .into_iter()
            .zip(answers)
            .map(|(id, answer)| {
                Arc::new(Scripted {
                    id,
                    answer: Mutex::new(answer),
                    pays: AtomicUsize::new(0),
                })
            })
            .collect();
        let registry: Registry = scripted
            .iter()
            .map(|p| (p.id, p.clone() as Arc<dyn Provider>))
            .collect();
        let gateway = Gateway::new(
            registry,
            Arc::new(MemoryStore::default()),
            Default::default(),
            Default::default(),
            false,
        );
        gateway.set_directory(
            Directory::parse(DIRECTORY).unwrap(),
            DirectorySettings {
                provider_priority: vec!["interswitch".into(), "onepipe".into(), "switch".into()],
                ..Default::default()
            },
        );
        (gateway, scripted)
    }

    fn routed(minor_units: i64) -> RoutedOrder {
        RoutedOrder {
            directory_biller_id: "t.power".into(),
            template: PaymentOrder::new(
                ProviderId::Interswitch,
                PaymentKind::Bill,
                "",
                "12345678901",
                Money::new(Currency::Ngn, minor_units),
            ),
        }
    }

    async fn pay(gateway: &Arc<Gateway>, request_id: &str) -> PaymentRecord {
        gateway
            .create_routed_payment(
                request_id.into(),
                routed(100_000),
                PaymentSecrets::default(),
                None,
                None,
            )
            .await
            .unwrap()
    }

    fn pays(p: &[Arc<Scripted>]) -> Vec<usize> {
        p.iter().map(|p| p.pays.load(Ordering::SeqCst)).collect()
    }

    /// A call refused before sending moves the payment to the next route in one journal
    /// write, with a fresh reference; the route that paid is the payment's.
    #[tokio::test]
    async fn a_call_refused_before_sending_moves_to_the_next_route() {
        for refusal in [
            ProviderError::Timeout.not_sent(),
            ProviderError::CircuitOpen {
                retry_after: Duration::from_secs(1),
            },
            ProviderError::InvalidOrder(vec![("x".into(), "y".into())]),
        ] {
            let (gateway, scripted) =
                scripted_gateway([Err(refusal.clone()), succeeded(), succeeded()]);
            let record = pay(&gateway, "r-1").await;
            assert_eq!(record.state, PaymentState::Succeeded, "{refusal:?}");
            assert_eq!(record.order.provider, ProviderId::OnePipe);
            assert_eq!(record.order.biller_id, "b2");
            assert_eq!(record.directory_biller_id, "t.power");
            assert_eq!(pays(&scripted), [1, 1, 0]);
            let attempts = &record.route_attempts;
            assert_eq!(attempts.len(), 2, "{attempts:?}");
            assert!(!attempts[0].sent);
            assert_eq!(attempts[0].provider, ProviderId::Interswitch);
            assert!(attempts[0].reason.contains("not sent"), "{attempts:?}");
            assert!(attempts[1].sent);
            assert_eq!(attempts[1].provider_reference, record.provider_reference);
            assert_ne!(
                attempts[0].provider_reference,
                attempts[1].provider_reference
            );
            assert!(!attempts[0].provider_reference.is_empty());
            // Replayed, never paid again; a different request under the key is refused.
            let again = pay(&gateway, "r-1").await;
            assert_eq!(again, record);
            assert_eq!(pays(&scripted), [1, 1, 0]);
            let reused = gateway
                .create_routed_payment(
                    "r-1".into(),
                    routed(100_001),
                    PaymentSecrets::default(),
                    None,
                    None,
                )
                .await
                .unwrap_err();
            assert!(matches!(reused, GatewayError::IdempotencyKeyReused { .. }));
        }
    }

    /// With every route refused before sending, the payment is FAILED: nothing was sent.
    #[tokio::test]
    async fn refused_everywhere_is_failed_with_every_attempt() {
        let refused = || Err(ProviderError::Timeout.not_sent());
        let (gateway, scripted) = scripted_gateway([refused(), refused(), refused()]);
        let record = pay(&gateway, "r-2").await;
        assert_eq!(record.state, PaymentState::Failed);
        assert!(
            record.provider_message.contains("no other route"),
            "{}",
            record.provider_message
        );
        assert_eq!(pays(&scripted), [1, 1, 1]);
        assert_eq!(record.route_attempts.len(), 3);
        assert!(record.route_attempts.iter().all(|a| !a.sent));
    }

    /// An unknown outcome (timeout, 5xx, unreadable answer) stays on its route: PENDING, and
    /// no other route is ever called.
    #[tokio::test]
    async fn an_unknown_outcome_stays_on_its_route() {
        for unknown in [
            ProviderError::Timeout,
            ProviderError::Upstream { status: 502 },
            ProviderError::Unreadable("}{".into()),
            ProviderError::Transport("connection reset".into()),
        ] {
            let (gateway, scripted) =
                scripted_gateway([Err(unknown.clone()), succeeded(), succeeded()]);
            let record = pay(&gateway, "r-3").await;
            assert_eq!(record.state, PaymentState::Pending, "{unknown:?}");
            assert_eq!(record.order.provider, ProviderId::Interswitch);
            assert_eq!(pays(&scripted), [1, 0, 0], "{unknown:?}");
            assert_eq!(record.route_attempts.len(), 1);
            assert!(record.route_attempts[0].sent);
            let again = pay(&gateway, "r-3").await;
            assert_eq!(again.order.provider, ProviderId::Interswitch);
            assert_eq!(pays(&scripted), [1, 0, 0]);
        }
    }

    /// A provider that is not configured is not a route to pay through; no route at all is
    /// NO_ROUTE_AVAILABLE with each reason, nothing recorded.
    #[tokio::test]
    async fn no_route_is_refused_with_the_reasons() {
        let (gateway, _) = scripted_gateway([succeeded(), succeeded(), succeeded()]);
        gateway.set_directory(
            Directory::parse(&DIRECTORY.replace("\"onepipe\"", "\"interintel\"")).unwrap(),
            DirectorySettings {
                provider_priority: vec!["interintel".into()],
                ..Default::default()
            },
        );
        let record = pay(&gateway, "r-4").await;
        // InterIntel is not configured: never tried, recorded as such; Interswitch paid.
        assert_eq!(record.order.provider, ProviderId::Interswitch);
        let skipped = &record.route_attempts[0];
        assert_eq!(skipped.provider, ProviderId::InterIntel);
        assert!(skipped.reason.contains("not configured"), "{skipped:?}");

        let (other, _) = scripted_gateway([succeeded(), succeeded(), succeeded()]);
        other.set_directory(
            Directory::parse(
                r#"[[biller]]
id = "t.none"
name = "n"
country = "KE"
category = "c"
currency = "NGN"
[[biller.route]]
provider = "interintel"
biller_id = "x"
product_id = "y"
"#,
            )
            .unwrap(),
            DirectorySettings::default(),
        );
        let mut order = routed(100);
        order.directory_biller_id = "t.none".into();
        let e = other
            .create_routed_payment("r-5".into(), order, PaymentSecrets::default(), None, None)
            .await
            .unwrap_err();
        match e {
            GatewayError::NoRouteAvailable { attempts, .. } => {
                assert!(attempts.contains("PROVIDER_INTERINTEL"), "{attempts}")
            }
            other => panic!("{other:?}"),
        }
        assert!(other
            .load_payment(&PaymentRecord::id_for_request("r-5"))
            .await
            .unwrap()
            .is_none());
    }
}
