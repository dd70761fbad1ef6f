//! `billpay.v1.PaymentService`.

use std::collections::BTreeMap;

use secrecy::SecretString;
use tonic::{Request, Response, Status};

use super::audit;
use super::{
    catalog::provider_page,
    convert,
    customer::{MAX_CUSTOMER_ID, MAX_PRODUCT_ID},
    deadline::answer_within,
    page::KeysetPage,
    validate::Violations,
    Api,
};
use crate::auth::ObjectScope;
use crate::domain::{
    options::{
        FundingSecret, InterIntelOptions, Ip2Options, OnePipeOptions, PaymentOptions, SwitchOptions,
    },
    payment::{Contact, PaymentKind},
    PaymentOrder, PaymentSecrets, ProviderId, TransactionQuery,
};
use crate::error::GatewayError;
use crate::gateway::{operator::JournalFilter, own_payments::OwnCursor};
use crate::pb::{
    self, create_payment_request::ProviderOptions, one_pipe_payment_options::Funding,
    payment_service_server::PaymentService,
};

/// Longest payment description.
const MAX_DESCRIPTION: usize = 200;
/// Longest IP2 memo (the spec's limit).
const MAX_IP2_MEMO: usize = 500;

/// Checks a payment id's shape (`pay_` and 32 hex digits).
pub(crate) fn check_payment_id(v: &mut Violations, payment_id: &str) {
    let ok = payment_id
        .strip_prefix("pay_")
        .is_some_and(|h| h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit()));
    if !ok {
        v.add(
            "payment_id",
            "must be a payment_id returned by CreatePayment",
        );
    }
}

/// Checks optional contact details.
pub(crate) fn contact(v: &mut Violations, c: Option<pb::Contact>) -> Contact {
    let c = c.unwrap_or_default();
    if !c.mobile_number.is_empty()
        && (c.mobile_number.len() > 13
            || !c
                .mobile_number
                .trim_start_matches('+')
                .bytes()
                .all(|b| b.is_ascii_digit()))
    {
        v.add(
            "contact.mobile_number",
            "at most 13 characters: digits, optional leading +",
        );
    }
    v.optional_text("contact.email", &c.email, 50);
    if !c.email.is_empty() && !c.email.contains('@') {
        v.add("contact.email", "must be an email address");
    }
    v.optional_text("contact.first_name", &c.first_name, 50);
    v.optional_text("contact.last_name", &c.last_name, 50);
    Contact {
        mobile_number: c.mobile_number,
        email: c.email,
        first_name: c.first_name,
        last_name: c.last_name,
    }
}

/// Checks a string map's size and entry lengths.
fn string_map(
    v: &mut Violations,
    field: &str,
    map: &std::collections::HashMap<String, String>,
    max_entries: usize,
) -> BTreeMap<String, String> {
    if map.len() > max_entries {
        v.add(field, format!("at most {max_entries} entries"));
    }
    for (key, value) in map {
        if key.is_empty() || key.chars().count() > 64 {
            v.add(field, "keys are 1-64 characters");
        }
        if value.chars().count() > 256 {
            v.add(&format!("{field}[{key}]"), "at most 256 characters");
        }
    }
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn secret(value: String) -> SecretString {
    SecretString::from(value)
}

fn millis(t: &prost_types::Timestamp) -> i64 {
    t.seconds
        .saturating_mul(1000)
        .saturating_add(i64::from(t.nanos / 1_000_000))
}

/// Splits provider options into what is stored (options) and what is only sent (secrets).
fn provider_options(
    v: &mut Violations,
    options: Option<ProviderOptions>,
) -> (PaymentOptions, PaymentSecrets) {
    let mut secrets = PaymentSecrets::default();
    let options = match options {
        None => PaymentOptions::None,
        Some(ProviderOptions::Switch(o)) => {
            if !o.pin.is_empty() && (o.pin.len() != 4 || !o.pin.bytes().all(|b| b.is_ascii_digit()))
            {
                v.add("switch.pin", "4 digits");
            }
            if !o.otp.is_empty()
                && (!(4..=8).contains(&o.otp.len()) || !o.otp.bytes().all(|b| b.is_ascii_digit()))
            {
                v.add("switch.otp", "4 to 8 digits");
            }
            if o.repeat && !matches!(o.repeat_pattern.as_str(), "monthly" | "weekly" | "custom") {
                v.add(
                    "switch.repeat_pattern",
                    "monthly, weekly or custom when repeat is set",
                );
            }
            if o.repeat_pattern == "custom" && o.custom_interval_days <= 0 {
                v.add(
                    "switch.custom_interval_days",
                    "required (> 0) with pattern custom",
                );
            }
            secrets.pin = Some(o.pin).filter(|p| !p.is_empty()).map(secret);
            secrets.otp = Some(o.otp).filter(|p| !p.is_empty()).map(secret);
            PaymentOptions::Switch(SwitchOptions {
                save_information: o.save_information,
                start_time_ms: o.start_time.as_ref().map(millis),
                repeat: o.repeat,
                repeat_pattern: o.repeat_pattern,
                custom_interval_days: o.custom_interval_days,
            })
        }
        Some(ProviderOptions::Onepipe(o)) => {
            v.optional_text("onepipe.order_reference", &o.order_reference, 64);
            let funding = match o.funding {
                None => {
                    v.add(
                        "onepipe.funding",
                        "required (card, bank_account, wallet, airtime or voucher)",
                    );
                    None
                }
                Some(Funding::Card(c)) => Some(FundingSecret::Card {
                    pan: secret(c.pan),
                    cvv: secret(c.cvv),
                    expiry_mmyy: secret(c.expiry_mmyy),
                    pin: secret(c.pin),
                }),
                Some(Funding::BankAccount(b)) => Some(FundingSecret::BankAccount {
                    account_number: secret(b.account_number),
                    bank_cbn_code: b.bank_cbn_code,
                }),
                Some(Funding::Wallet(w)) => Some(FundingSecret::Wallet {
                    wallet_number: secret(w.wallet_number),
                    provider_code: w.provider_code,
                }),
                Some(Funding::Airtime(a)) => Some(FundingSecret::Airtime {
                    phone_number: secret(a.phone_number),
                    telco_code: a.telco_code,
                }),
                Some(Funding::Voucher(f)) => Some(FundingSecret::Voucher {
                    voucher_code: secret(f.voucher_code),
                    provider_code: f.provider_code,
                }),
            };
            let Some(funding) = funding else {
                return (PaymentOptions::None, secrets);
            };
            let kind = funding.kind();
            secrets.funding = Some(funding);
            PaymentOptions::OnePipe(OnePipeOptions {
                order_reference: o.order_reference,
                funding: kind,
            })
        }
        Some(ProviderOptions::Ip2(o)) => PaymentOptions::Ip2(ip2_options(v, "ip2", o)),
        Some(ProviderOptions::Interintel(o)) => PaymentOptions::InterIntel(InterIntelOptions {
            scheduled_send_ms: o.scheduled_send_time.as_ref().map(millis),
        }),
    };
    (options, secrets)
}

/// Checks IP2 options (shared by debits and credits).
fn ip2_options(v: &mut Violations, field: &str, o: pb::Ip2PaymentOptions) -> Ip2Options {
    v.optional_text(&format!("{field}.account_id"), &o.account_id, 64);
    v.optional_text(
        &format!("{field}.payment_method_id"),
        &o.payment_method_id,
        64,
    );
    v.optional_text(&format!("{field}.memo"), &o.memo, MAX_IP2_MEMO);
    v.optional_text(&format!("{field}.channel_id"), &o.channel_id, 64);
    v.optional_text(
        &format!("{field}.channel_reference"),
        &o.channel_reference,
        64,
    );
    v.optional_text(
        &format!("{field}.customer_reference"),
        &o.customer_reference,
        64,
    );
    if !o.country_code.is_empty()
        && (o.country_code.len() != 2 || !o.country_code.bytes().all(|b| b.is_ascii_uppercase()))
    {
        v.add(
            &format!("{field}.country_code"),
            "ISO-3166 alpha-2, upper case",
        );
    }
    Ip2Options {
        payment_method_reference: string_map(
            v,
            &format!("{field}.payment_method_reference"),
            &o.payment_method_reference,
            20,
        ),
        product_reference: string_map(
            v,
            &format!("{field}.product_reference"),
            &o.product_reference,
            20,
        ),
        account_id: o.account_id,
        payment_method_id: o.payment_method_id,
        country_code: o.country_code,
        memo: o.memo,
        channel_id: o.channel_id,
        channel_reference: o.channel_reference,
        customer_reference: o.customer_reference,
    }
}

/// The proto field of a oneof option (its path in BadRequest).
fn options_field(options: &ProviderOptions) -> &'static str {
    match options {
        ProviderOptions::Switch(_) => "switch",
        ProviderOptions::Onepipe(_) => "onepipe",
        ProviderOptions::Ip2(_) => "ip2",
        ProviderOptions::Interintel(_) => "interintel",
    }
}

/// The provider a oneof option belongs to.
fn options_provider(options: &ProviderOptions) -> ProviderId {
    match options {
        ProviderOptions::Switch(_) => ProviderId::Switch,
        ProviderOptions::Onepipe(_) => ProviderId::OnePipe,
        ProviderOptions::Ip2(_) => ProviderId::IntelworldIp2,
        ProviderOptions::Interintel(_) => ProviderId::InterIntel,
    }
}

impl Api {
    /// Validates a create request into an idempotency key, an order and its secrets.
    fn payment_order(
        r: pb::CreatePaymentRequest,
    ) -> Result<(String, PaymentOrder, PaymentSecrets, Option<i64>), GatewayError> {
        let mut v = Violations::default();
        v.request_id(&r.request_id);
        let provider = v.provider("provider", r.provider);
        v.optional_text("biller_id", &r.biller_id, 50);
        // IP2 debits may have no product (a mobile-money top-up); every other provider
        // pays for one.
        if provider == Some(ProviderId::IntelworldIp2) {
            v.optional_text("product_id", &r.product_id, MAX_PRODUCT_ID);
        } else {
            v.text("product_id", &r.product_id, MAX_PRODUCT_ID);
        }
        v.text("customer_id", &r.customer_id, MAX_CUSTOMER_ID);
        let amount = v.amount("amount", r.amount.as_ref());
        let contact = contact(&mut v, r.contact);
        v.optional_text("description", &r.description, MAX_DESCRIPTION);
        let metadata = string_map(&mut v, "metadata", &r.metadata, 20);
        let inputs = string_map(&mut v, "inputs", &r.inputs, 50);
        let expected_total = r
            .expected_total
            .as_ref()
            .and_then(|t| v.amount("expected_total", Some(t)));
        if let (Some(options), Some(provider)) = (&r.provider_options, provider) {
            if options_provider(options) != provider {
                v.add(
                    options_field(options),
                    format!(
                        "options of {}, but provider is {}",
                        options_provider(options).proto_name(),
                        provider.proto_name()
                    ),
                );
            }
        }
        let (options, secrets) = provider_options(&mut v, r.provider_options);
        // When the client created the request: the field, else a UUIDv7 request_id's time.
        let created_at_ms = match &r.request_created_at {
            Some(at) => v.timestamp_ms("request_created_at", at),
            None => super::validate::uuid_v7_ms(&r.request_id),
        };
        v.finish()?;
        let order = PaymentOrder {
            biller_id: r.biller_id,
            contact,
            description: r.description,
            metadata,
            inputs,
            expected_total,
            options,
            ..PaymentOrder::new(
                provider.expect("checked above"),
                PaymentKind::Bill,
                r.product_id,
                r.customer_id,
                amount.expect("checked above"),
            )
        };
        Ok((r.request_id, order, secrets, created_at_ms))
    }

    /// The provider's transaction list: ListPayments and its new name ListProviderTransactions
    /// both answer with this.
    async fn provider_transactions(
        &self,
        request: Request<pb::ListPaymentsRequest>,
    ) -> Result<Response<pb::ListPaymentsResponse>, Status> {
        let scope = ObjectScope::of(request.extensions());
        let r = request.into_inner();
        let mut v = Violations::default();
        v.optional_text("account_id", &r.account_id, 64);
        let from_ms = r.start_time.as_ref().map(millis);
        let to_ms = r.end_time.as_ref().map(millis);
        if let (Some(from), Some(to)) = (from_ms, to_ms) {
            if from >= to {
                v.add("end_time", "must be after start_time");
            }
        }
        v.finish()?;
        let filter = format!("{}/{from_ms:?}/{to_ms:?}", r.account_id);
        let (id, page) = provider_page(r.provider, r.page_size, &r.page_token, &filter)?;
        let query = TransactionQuery {
            account_id: r.account_id,
            from_ms,
            to_ms,
            page: page.provider_request(),
        };
        let listed = self
            .gateway
            .list_transactions_for(id, &query, &scope)
            .await?;
        let next_page_token = page.next_after(listed.read, listed.more);
        Ok(Response::new(pb::ListPaymentsResponse {
            transactions: listed.items.into_iter().map(convert::transaction).collect(),
            next_page_token,
        }))
    }
}

#[tonic::async_trait]
impl PaymentService for Api {
    type WatchPaymentStream = super::events::EventStream<pb::WatchPaymentResponse>;
    type WatchPaymentEventsStream = super::events::EventStream<pb::WatchPaymentEventsResponse>;

    async fn watch_payment(
        &self,
        request: Request<pb::WatchPaymentRequest>,
    ) -> Result<Response<Self::WatchPaymentStream>, Status> {
        super::events::watch_payment(&self.gateway, request.into_inner()).await
    }

    async fn watch_payment_events(
        &self,
        request: Request<pb::WatchPaymentEventsRequest>,
    ) -> Result<Response<Self::WatchPaymentEventsStream>, Status> {
        super::events::watch_payment_events(&self.gateway, request.into_inner()).await
    }

    async fn create_payment(
        &self,
        request: Request<pb::CreatePaymentRequest>,
    ) -> Result<Response<pb::CreatePaymentResponse>, Status> {
        let audit_request_id = request.get_ref().request_id.clone();
        let audit_payment_id = String::new();
        let result: Result<Response<pb::CreatePaymentResponse>, Status> = async move {
            let within = answer_within(request.metadata(), self.deadline_margin);
            let (request_id, order, secrets, created_at_ms) =
                Self::payment_order(request.into_inner())?;
            let record = self
                .gateway
                .create_payment(request_id, order, secrets, within, created_at_ms)
                .await?;
            Ok(Response::new(pb::CreatePaymentResponse {
                payment: Some(convert::payment(record)),
            }))
        }
        .await;
        audit::record(
            "CreatePayment",
            &audit_request_id,
            &audit_payment_id,
            &result,
            |r| r.payment.as_ref(),
        );
        result
    }

    async fn get_payment(
        &self,
        request: Request<pb::GetPaymentRequest>,
    ) -> Result<Response<pb::GetPaymentResponse>, Status> {
        let within = answer_within(request.metadata(), self.deadline_margin);
        let r = request.into_inner();
        let mut v = Violations::default();
        check_payment_id(&mut v, &r.payment_id);
        v.finish()?;
        let record = self.gateway.get_payment(&r.payment_id, within).await?;
        Ok(Response::new(pb::GetPaymentResponse {
            payment: Some(convert::payment(record)),
        }))
    }

    async fn validate_payment_otp(
        &self,
        request: Request<pb::ValidatePaymentOtpRequest>,
    ) -> Result<Response<pb::ValidatePaymentOtpResponse>, Status> {
        let audit_request_id = request.get_ref().request_id.clone();
        let audit_payment_id = request.get_ref().payment_id.clone();
        let result: Result<Response<pb::ValidatePaymentOtpResponse>, Status> = async move {
            let within = answer_within(request.metadata(), self.deadline_margin);
            let r = request.into_inner();
            let mut v = Violations::default();
            v.request_id(&r.request_id);
            check_payment_id(&mut v, &r.payment_id);
            // Required or refused by the payment's state (OTP_REQUIRED needs it,
            // VALIDATION_REQUIRED takes `fields` only): checked by the gateway on the record.
            if !r.otp.is_empty()
                && (!(4..=8).contains(&r.otp.len()) || !r.otp.bytes().all(|b| b.is_ascii_digit()))
            {
                v.add("otp", "4 to 8 digits");
            }
            if r.fields.len() > 20 {
                v.add("fields", "at most 20 entries");
            }
            for (key, value) in &r.fields {
                if key.is_empty() || key.len() > 64 || value.len() > 256 {
                    v.add("fields", "keys 1-64 and values up to 256 characters");
                }
            }
            v.finish()?;
            let secrets = PaymentSecrets {
                otp: Some(r.otp).filter(|o| !o.is_empty()).map(secret),
                fields: r.fields.into_iter().map(|(k, v)| (k, secret(v))).collect(),
                ..PaymentSecrets::default()
            };
            let record = self
                .gateway
                .validate_payment(r.request_id, r.payment_id, secrets, within)
                .await?;
            Ok(Response::new(pb::ValidatePaymentOtpResponse {
                payment: Some(convert::payment(record)),
            }))
        }
        .await;
        audit::record(
            "ValidatePaymentOtp",
            &audit_request_id,
            &audit_payment_id,
            &result,
            |r| r.payment.as_ref(),
        );
        result
    }

    async fn reverse_payment(
        &self,
        request: Request<pb::ReversePaymentRequest>,
    ) -> Result<Response<pb::ReversePaymentResponse>, Status> {
        let audit_request_id = request.get_ref().request_id.clone();
        let audit_payment_id = request.get_ref().payment_id.clone();
        let result: Result<Response<pb::ReversePaymentResponse>, Status> = async move {
            let within = answer_within(request.metadata(), self.deadline_margin);
            let r = request.into_inner();
            let mut v = Violations::default();
            v.request_id(&r.request_id);
            check_payment_id(&mut v, &r.payment_id);
            v.optional_text("reason", &r.reason, 200);
            v.finish()?;
            let record = self
                .gateway
                .reverse_payment(r.request_id, r.payment_id, r.reason, within)
                .await?;
            Ok(Response::new(pb::ReversePaymentResponse {
                payment: Some(convert::payment(record)),
            }))
        }
        .await;
        audit::record(
            "ReversePayment",
            &audit_request_id,
            &audit_payment_id,
            &result,
            |r| r.payment.as_ref(),
        );
        result
    }

    async fn list_payments(
        &self,
        request: Request<pb::ListPaymentsRequest>,
    ) -> Result<Response<pb::ListPaymentsResponse>, Status> {
        self.provider_transactions(request).await
    }

    async fn list_provider_transactions(
        &self,
        request: Request<pb::ListProviderTransactionsRequest>,
    ) -> Result<Response<pb::ListProviderTransactionsResponse>, Status> {
        // The same request under its new name: every field as in ListPaymentsRequest.
        let (metadata, extensions, r) = request.into_parts();
        let request = Request::from_parts(
            metadata,
            extensions,
            pb::ListPaymentsRequest {
                provider: r.provider,
                account_id: r.account_id,
                page_size: r.page_size,
                page_token: r.page_token,
                start_time: r.start_time,
                end_time: r.end_time,
            },
        );
        let listed = self.provider_transactions(request).await?.into_inner();
        Ok(Response::new(pb::ListProviderTransactionsResponse {
            transactions: listed.transactions,
            next_page_token: listed.next_page_token,
        }))
    }

    async fn list_own_payments(
        &self,
        request: Request<pb::ListOwnPaymentsRequest>,
    ) -> Result<Response<pb::ListOwnPaymentsResponse>, Status> {
        let r = request.into_inner();
        let mut v = Violations::default();
        let state = super::operator::domain_state(r.state).unwrap_or_else(|_| {
            v.add("state", "unknown state");
            None
        });
        let provider = match r.provider {
            0 => None,
            value => v.provider("provider", value),
        };
        let from_ms = r
            .start_time
            .as_ref()
            .and_then(|t| v.timestamp_ms("start_time", t));
        let to_ms = r
            .end_time
            .as_ref()
            .and_then(|t| v.timestamp_ms("end_time", t));
        if let (Some(from), Some(to)) = (from_ms, to_ms) {
            if from >= to {
                v.add("end_time", "must be after start_time");
            }
        }
        v.finish()?;
        let filter = JournalFilter {
            state,
            provider,
            from_ms,
            to_ms,
            // Whose payments: the caller's own (every caller's for the anonymous caller).
            caller: crate::auth::own_payments_owner(),
        };
        // The token is bound to the filters, the owner included.
        let (page, position) =
            KeysetPage::parse(r.page_size, &r.page_token, format!("{filter:?}"))?;
        let cursor = position.map(|(before_ms, before_id)| OwnCursor {
            before_ms,
            before_id,
        });
        let (records, next) = self
            .gateway
            .list_own_payments(&filter, cursor, page.size())
            .await?;
        Ok(Response::new(pb::ListOwnPaymentsResponse {
            payments: records.into_iter().map(convert::payment).collect(),
            next_page_token: next
                .map_or_else(String::new, |c| page.token((c.before_ms, c.before_id))),
        }))
    }

    async fn list_saved_bills(
        &self,
        request: Request<pb::ListSavedBillsRequest>,
    ) -> Result<Response<pb::ListSavedBillsResponse>, Status> {
        let scope = ObjectScope::of(request.extensions());
        let r = request.into_inner();
        let (id, page) = provider_page(r.provider, r.page_size, &r.page_token, "")?;
        let listed = self
            .gateway
            .list_saved_bills_for(id, page.provider_request(), &scope)
            .await?;
        let next_page_token = page.next_after(listed.read, listed.more);
        Ok(Response::new(pb::ListSavedBillsResponse {
            saved_bills: listed.items.into_iter().map(convert::saved_bill).collect(),
            next_page_token,
        }))
    }

    async fn delete_saved_bill(
        &self,
        request: Request<pb::DeleteSavedBillRequest>,
    ) -> Result<Response<pb::DeleteSavedBillResponse>, Status> {
        let audit_request_id = request.get_ref().request_id.clone();
        let audit_payment_id = String::new();
        let result: Result<Response<pb::DeleteSavedBillResponse>, Status> = async move {
            let scope = ObjectScope::of(request.extensions());
            let r = request.into_inner();
            let mut v = Violations::default();
            v.request_id(&r.request_id);
            let id = v.provider("provider", r.provider);
            v.text("saved_bill_id", &r.saved_bill_id, 64);
            v.finish()?;
            self.gateway
                .delete_saved_bill_for(
                    r.request_id,
                    id.expect("checked above"),
                    r.saved_bill_id,
                    &scope,
                )
                .await?;
            Ok(Response::new(pb::DeleteSavedBillResponse {}))
        }
        .await;
        audit::record(
            "DeleteSavedBill",
            &audit_request_id,
            &audit_payment_id,
            &result,
            |_| None,
        );
        result
    }

    async fn create_collection(
        &self,
        request: Request<pb::CreateCollectionRequest>,
    ) -> Result<Response<pb::CreateCollectionResponse>, Status> {
        let audit_request_id = request.get_ref().request_id.clone();
        let audit_payment_id = String::new();
        let result: Result<Response<pb::CreateCollectionResponse>, Status> = async move {
            let within = answer_within(request.metadata(), self.deadline_margin);
            let r = request.into_inner();
            let mut v = Violations::default();
            v.request_id(&r.request_id);
            let id = v.provider("provider", r.provider);
            v.text("payer_id", &r.payer_id, MAX_CUSTOMER_ID);
            let amount = v.amount("amount", r.amount.as_ref());
            let options = match r.ip2 {
                Some(o) => Some(ip2_options(&mut v, "ip2", o)),
                None => {
                    v.add("ip2", "required (the account and payment method)");
                    None
                }
            };
            if id.is_some_and(|id| id != ProviderId::IntelworldIp2) {
                v.add(
                    "provider",
                    "collections are IP2 credits: PROVIDER_INTELWORLD_IP2",
                );
            }
            v.finish()?;
            let order = PaymentOrder {
                options: PaymentOptions::Ip2(options.expect("checked above")),
                ..PaymentOrder::new(
                    id.expect("checked above"),
                    PaymentKind::Collection,
                    String::new(),
                    r.payer_id,
                    amount.expect("checked above"),
                )
            };
            let record = self
                .gateway
                .create_payment(
                    r.request_id.clone(),
                    order,
                    PaymentSecrets::default(),
                    within,
                    super::validate::uuid_v7_ms(&r.request_id),
                )
                .await?;
            Ok(Response::new(pb::CreateCollectionResponse {
                payment: Some(convert::payment(record)),
            }))
        }
        .await;
        audit::record(
            "CreateCollection",
            &audit_request_id,
            &audit_payment_id,
            &result,
            |r| r.payment.as_ref(),
        );
        result
    }

    async fn send_payment_otp(
        &self,
        request: Request<pb::SendPaymentOtpRequest>,
    ) -> Result<Response<pb::SendPaymentOtpResponse>, Status> {
        let audit_request_id = String::new();
        let audit_payment_id = String::new();
        let result: Result<Response<pb::SendPaymentOtpResponse>, Status> = async move {
            let r = request.into_inner();
            let mut v = Violations::default();
            let id = v.provider("provider", r.provider);
            v.finish()?;
            let provider_message = self.gateway.send_otp(id.expect("checked above")).await?;
            Ok(Response::new(pb::SendPaymentOtpResponse {
                provider_message,
            }))
        }
        .await;
        audit::record(
            "SendPaymentOtp",
            &audit_request_id,
            &audit_payment_id,
            &result,
            |_| None,
        );
        result
    }
}
