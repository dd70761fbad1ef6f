//! `billpay-chaos-client`: one CreatePayment (Interswitch, product 90101, customer
//! 0000000000 of the sandbox test data) for `scripts/chaos.sh`, which retries and counts.
//! Prints one JSON line: `{"ok": true, "state": ..., "provider_reference": ...}` or
//! `{"ok": false, "code": ..., "reason": ..., "message": ...}` (reason from ErrorInfo).
//!
//! Usage: `billpay-chaos-client ADDR REQUEST_ID AMOUNT_KOBO`

use std::time::Duration;

use billpay_gateway::pb::{self, payment_service_client::PaymentServiceClient};
use tonic_types::StatusExt;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, request_id, amount] = args.as_slice() else {
        eprintln!("usage: billpay-chaos-client ADDR REQUEST_ID AMOUNT_KOBO");
        std::process::exit(2);
    };
    let answer = match call(addr, request_id, amount.parse().unwrap_or(0)).await {
        Ok(payment) => serde_json::json!({
            "ok": true,
            "state": pb::PaymentState::try_from(payment.state)
                .map(|s| s.as_str_name())
                .unwrap_or("?"),
            "provider_reference": payment.provider_reference,
        }),
        Err(status) => serde_json::json!({
            "ok": false,
            "code": format!("{:?}", status.code()),
            "reason": status
                .get_error_details()
                .error_info()
                .map(|i| i.reason.clone())
                .unwrap_or_default(),
            "message": status.message(),
        }),
    };
    println!("{answer}");
}

async fn call(addr: &str, request_id: &str, kobo: i64) -> Result<pb::Payment, tonic::Status> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .map_err(|e| tonic::Status::invalid_argument(e.to_string()))?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(15))
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("connect: {e}")))?;
    let request = pb::CreatePaymentRequest {
        request_id: request_id.into(),
        provider: pb::Provider::Interswitch as i32,
        biller_id: "901".into(),
        product_id: "90101".into(),
        customer_id: "0000000000".into(),
        amount: Some(pb::Money {
            currency_code: "NGN".into(),
            minor_units: kobo,
        }),
        ..pb::CreatePaymentRequest::default()
    };
    PaymentServiceClient::new(channel)
        .create_payment(request)
        .await?
        .into_inner()
        .payment
        .ok_or_else(|| tonic::Status::internal("no payment in the answer"))
}
