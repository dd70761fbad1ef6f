//! `billpay.v1.PaymentService`.

use tonic::{Request, Response, Status};

use super::{
    catalog::provider_page,
    convert,
    customer::{MAX_CUSTOMER_ID, MAX_PRODUCT_ID},
    deadline::answer_within,
    validate::Violations,
    Api,
};
use crate::domain::{
    payment::{Contact, PaymentKind},
    Capability, PaymentOrder, PaymentRecord, ProviderId,
};
use crate::error::GatewayError;
use crate::pb::{
    self, create_payment_request::ProviderOptions, payment_service_server::PaymentService,
};

/// Checks a payment id's shape (`pay_` and 32 hex digits).
fn check_payment_id(v: &mut Violations, payment_id: &str) {
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

fn contact(v: &mut Violations, c: Option<pb::Contact>) -> Contact {
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
    /// Validates a create request into an idempotency key and an order.
    fn payment_order(r: pb::CreatePaymentRequest) -> Result<(String, PaymentOrder), GatewayError> {
        let mut v = Violations::default();
        v.request_id(&r.request_id);
        let provider = v.provider("provider", r.provider);
        v.optional_text("biller_id", &r.biller_id, 50);
        v.text("product_id", &r.product_id, MAX_PRODUCT_ID);
        v.text("customer_id", &r.customer_id, MAX_CUSTOMER_ID);
        let amount = v.amount("amount", r.amount.as_ref());
        let contact = contact(&mut v, r.contact);
        if let (Some(options), Some(provider)) = (&r.provider_options, provider) {
            if options_provider(options) != provider {
                v.add(
                    "provider_options",
                    format!(
                        "options for {} sent to {provider}",
                        options_provider(options)
                    ),
                );
            }
        }
        v.finish()?;
        let order = PaymentOrder {
            provider: provider.expect("checked above"),
            kind: PaymentKind::Bill,
            biller_id: r.biller_id,
            product_id: r.product_id,
            customer_id: r.customer_id,
            amount: amount.expect("checked above"),
            contact,
        };
        Ok((r.request_id, order))
    }

    /// Validates a follow-up on an existing payment (OTP, reversal) and answers for it: the
    /// payment must exist, and no configured adapter supports these operations yet.
    async fn follow_up(
        &self,
        request_id: &str,
        payment_id: &str,
        extra: impl FnOnce(&mut Violations),
        capability: Capability,
    ) -> Result<PaymentRecord, GatewayError> {
        let mut v = Violations::default();
        v.request_id(request_id);
        check_payment_id(&mut v, payment_id);
        extra(&mut v);
        v.finish()?;
        let record = self
            .gateway
            .load_payment(payment_id)
            .await?
            .ok_or_else(|| GatewayError::NotFound(format!("payment {payment_id}")))?;
        Err(self.gateway.unsupported(record.order.provider, capability))
    }
}

#[tonic::async_trait]
impl PaymentService for Api {
    async fn create_payment(
        &self,
        request: Request<pb::CreatePaymentRequest>,
    ) -> Result<Response<pb::CreatePaymentResponse>, Status> {
        let within = answer_within(request.metadata(), self.deadline_margin);
        let (request_id, order) = Self::payment_order(request.into_inner())?;
        let record = self
            .gateway
            .create_payment(request_id, order, within)
            .await?;
        Ok(Response::new(pb::CreatePaymentResponse {
            payment: Some(convert::payment(record)),
        }))
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
        let r = request.into_inner();
        let otp_ok = (4..=8).contains(&r.otp.len()) && r.otp.bytes().all(|b| b.is_ascii_digit());
        let record = self
            .follow_up(
                &r.request_id,
                &r.payment_id,
                |v| {
                    if !otp_ok {
                        v.add("otp", "4 to 8 digits");
                    }
                },
                Capability::ValidatePaymentOtp,
            )
            .await?;
        Ok(Response::new(pb::ValidatePaymentOtpResponse {
            payment: Some(convert::payment(record)),
        }))
    }

    async fn reverse_payment(
        &self,
        request: Request<pb::ReversePaymentRequest>,
    ) -> Result<Response<pb::ReversePaymentResponse>, Status> {
        let r = request.into_inner();
        let record = self
            .follow_up(
                &r.request_id,
                &r.payment_id,
                |v| v.optional_text("reason", &r.reason, 200),
                Capability::ReversePayment,
            )
            .await?;
        Ok(Response::new(pb::ReversePaymentResponse {
            payment: Some(convert::payment(record)),
        }))
    }

    async fn list_payments(
        &self,
        request: Request<pb::ListPaymentsRequest>,
    ) -> Result<Response<pb::ListPaymentsResponse>, Status> {
        let r = request.into_inner();
        let (id, _page) = provider_page(r.provider, r.page_size, &r.page_token, &r.account_id)?;
        Err(self
            .gateway
            .unsupported(id, Capability::ListProviderPayments)
            .into())
    }

    async fn list_saved_bills(
        &self,
        request: Request<pb::ListSavedBillsRequest>,
    ) -> Result<Response<pb::ListSavedBillsResponse>, Status> {
        let r = request.into_inner();
        let (id, _page) = provider_page(r.provider, r.page_size, &r.page_token, "")?;
        Err(self.gateway.unsupported(id, Capability::SavedBills).into())
    }

    async fn delete_saved_bill(
        &self,
        request: Request<pb::DeleteSavedBillRequest>,
    ) -> Result<Response<pb::DeleteSavedBillResponse>, Status> {
        let r = request.into_inner();
        let mut v = Violations::default();
        v.request_id(&r.request_id);
        let id = v.provider("provider", r.provider);
        v.text("saved_bill_id", &r.saved_bill_id, 64);
        v.finish()?;
        Err(self
            .gateway
            .unsupported(id.expect("checked above"), Capability::SavedBills)
            .into())
    }

    async fn create_collection(
        &self,
        request: Request<pb::CreateCollectionRequest>,
    ) -> Result<Response<pb::CreateCollectionResponse>, Status> {
        let r = request.into_inner();
        let mut v = Violations::default();
        v.request_id(&r.request_id);
        let id = v.provider("provider", r.provider);
        v.text("payer_id", &r.payer_id, MAX_CUSTOMER_ID);
        v.amount("amount", r.amount.as_ref());
        if r.ip2.is_none() {
            v.add("ip2", "required: the account and payment method");
        }
        v.finish()?;
        Err(self
            .gateway
            .unsupported(id.expect("checked above"), Capability::CreateCollection)
            .into())
    }
}
