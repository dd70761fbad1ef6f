//! Test harness: a real gateway server on a loopback port, real tonic clients, and helpers to
//! read rich error details. Each test binary uses the parts it needs.
#![allow(dead_code)]

pub mod error_doc;
pub mod nats;
pub mod otlp;
pub mod postgres;
pub mod process;
pub mod race;
pub mod redis;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use billpay_gateway::{
    config::{ProvidersConfig, ServerConfig},
    gateway::{registry, CatalogSettings, Gateway, PaymentSettings},
    pb::{
        self, account_service_client::AccountServiceClient,
        catalog_service_client::CatalogServiceClient,
        customer_service_client::CustomerServiceClient,
        payment_service_client::PaymentServiceClient,
    },
    providers::interswitch::{auth::SignatureMethod, InterswitchConfig},
    providers::ip2::Ip2Config,
    server,
    store::{memory::MemoryStore, Store},
};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tonic::{transport::Channel, Code, Status};
use tonic_types::StatusExt;

/// Credentials used against wiremock; the secret must never show up in logs.
pub const CLIENT_ID: &str = "IKIATEST0000000000000000000000000000000001";
pub const CLIENT_SECRET: &str = "wiremock-client-secret-9f8e7d";
pub const TERMINAL_ID: &str = "3TST0001";
pub const PREFIX: &str = "1456";

/// Interswitch client configuration pointing at `base_url`.
pub fn interswitch_config(
    base_url: &str,
    method: SignatureMethod,
    timeout_ms: u64,
) -> InterswitchConfig {
    InterswitchConfig {
        base_url: base_url.to_owned(),
        client_id: CLIENT_ID.to_owned(),
        client_secret: CLIENT_SECRET.to_owned().into(),
        terminal_id: TERMINAL_ID.to_owned(),
        request_reference_length: 12,
        request_reference_prefix: PREFIX.to_owned(),
        signature_method: method,
        timeout_ms,
        connect_timeout_ms: 1_000,
        limits: Default::default(),
    }
}

/// IP2 credentials used against wiremock; key and password must never show up in logs.
pub const IP2_API_KEY: &str = "ip2-wiremock-api-key-5c4b3a";
pub const IP2_API_PASSWORD: &str = "ip2-wiremock-password-0f1e2d";
pub const IP2_SUBSCRIPTION: &str = "SUB-TEST-77";
pub const IP2_ACCOUNT: &str = "ACC-TEST-UGX";
pub const IP2_CHANNEL: &str = "API";

/// IP2 client configuration pointing at `base_url`, reading lists `page_size` at a time.
pub fn ip2_config(base_url: &str, page_size: u32, timeout_ms: u64) -> Ip2Config {
    Ip2Config {
        base_url: base_url.to_owned(),
        api_key: IP2_API_KEY.to_owned().into(),
        api_password: IP2_API_PASSWORD.to_owned().into(),
        subscription_id: IP2_SUBSCRIPTION.to_owned(),
        account_id: IP2_ACCOUNT.to_owned(),
        channel_id: IP2_CHANNEL.to_owned(),
        country_code: "UG".into(),
        request_id_prefix: "BPG".into(),
        signing: Default::default(),
        page_size,
        max_pages: 10,
        query_window_ms: 86_400_000,
        timeout_ms,
        connect_timeout_ms: 1_000,
        limits: Default::default(),
    }
}

/// UGX money (whole shillings).
pub fn ugx(shillings: i64) -> Option<pb::Money> {
    Some(pb::Money {
        currency_code: "UGX".into(),
        minor_units: shillings,
    })
}

/// A running gateway.
pub struct TestGateway {
    pub addr: SocketAddr,
    pub gateway: Arc<Gateway>,
    pub channel: Channel,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl TestGateway {
    /// Starts a gateway over `providers` with a memory store.
    pub async fn start(providers: ProvidersConfig) -> Self {
        Self::start_with(
            providers,
            Arc::new(MemoryStore::default()),
            PaymentSettings::default(),
        )
        .await
    }

    /// Starts a gateway over `providers`, `store` and payment settings.
    pub async fn start_with(
        providers: ProvidersConfig,
        store: Arc<dyn Store>,
        payments: PaymentSettings,
    ) -> Self {
        Self::start_with_catalog(providers, store, payments, CatalogSettings::default()).await
    }

    /// Starts a gateway over `providers`, `store`, payment and catalog settings.
    pub async fn start_with_catalog(
        providers: ProvidersConfig,
        store: Arc<dyn Store>,
        payments: PaymentSettings,
        catalog: CatalogSettings,
    ) -> Self {
        Self::start_full(providers, store, payments, catalog, ServerConfig::default()).await
    }

    /// Starts a gateway with `server` settings (listen address, shutdown and metrics are the
    /// harness's own).
    pub async fn start_serving(
        providers: ProvidersConfig,
        store: Arc<dyn Store>,
        payments: PaymentSettings,
        server: ServerConfig,
    ) -> Self {
        Self::start_full(
            providers,
            store,
            payments,
            CatalogSettings::default(),
            server,
        )
        .await
    }

    /// Starts a gateway with every setting given.
    pub async fn start_full(
        providers: ProvidersConfig,
        store: Arc<dyn Store>,
        payments: PaymentSettings,
        catalog: CatalogSettings,
        server: ServerConfig,
    ) -> Self {
        let registry = registry::build(providers, &store).expect("valid provider config");
        let gateway = Gateway::new(registry, store, payments, catalog, false);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let server_config = ServerConfig {
            listen: addr.to_string(),
            shutdown_grace_ms: 0,
            drain_timeout_ms: 1_000,
            json_logs: false,
            metrics_listen: String::new(),
            ..server
        };
        let g = gateway.clone();
        let task = tokio::spawn(async move {
            server::run(
                listener,
                g,
                server_config,
                Duration::from_millis(250),
                async {
                    let _ = stopped.await;
                },
            )
            .await
            .expect("server runs");
        });
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .expect("gateway accepts connections");
        Self {
            addr,
            gateway,
            channel,
            stop: Some(stop),
            task,
        }
    }

    pub fn catalog(&self) -> CatalogServiceClient<Channel> {
        CatalogServiceClient::new(self.channel.clone())
    }

    pub fn customers(&self) -> CustomerServiceClient<Channel> {
        CustomerServiceClient::new(self.channel.clone())
    }

    pub fn accounts(&self) -> AccountServiceClient<Channel> {
        AccountServiceClient::new(self.channel.clone())
    }

    pub fn payments(&self) -> PaymentServiceClient<Channel> {
        PaymentServiceClient::new(self.channel.clone())
    }

    /// CreatePayment that must succeed; the recorded payment.
    pub async fn pay(&self, request: pb::CreatePaymentRequest) -> pb::Payment {
        let id = request.request_id.clone();
        self.payments()
            .create_payment(request)
            .await
            .unwrap_or_else(|s| panic!("{id}: {s:?}"))
            .into_inner()
            .payment
            .expect("a payment")
    }

    /// GetPayment that must succeed.
    pub async fn get(&self, payment_id: &str) -> pb::Payment {
        self.payments()
            .get_payment(pb::GetPaymentRequest {
                payment_id: payment_id.into(),
            })
            .await
            .unwrap_or_else(|s| panic!("{payment_id}: {s:?}"))
            .into_inner()
            .payment
            .expect("a payment")
    }

    /// Stops the server and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.task).await;
    }
}

/// NGN money.
pub fn ngn(minor_units: i64) -> Option<pb::Money> {
    Some(pb::Money {
        currency_code: "NGN".into(),
        minor_units,
    })
}

/// A OnePipe card payment (the documented test card and order reference) for wiremock tests.
pub fn onepipe_card_payment(request_id: &str) -> pb::CreatePaymentRequest {
    pb::CreatePaymentRequest {
        request_id: request_id.into(),
        provider: pb::Provider::Onepipe as i32,
        biller_id: "IKEDCPR".into(),
        product_id: "IKEDCPR-TOKEN".into(),
        customer_id: "45000000001".into(),
        amount: ngn(250_000),
        contact: Some(pb::Contact {
            mobile_number: "2348023431320".into(),
            email: "uju@example.com".into(),
            first_name: "Uju".into(),
            last_name: "Usmanu".into(),
        }),
        provider_options: Some(pb::create_payment_request::ProviderOptions::Onepipe(
            pb::OnePipePaymentOptions {
                order_reference: "101638163628490752".into(),
                funding: Some(pb::one_pipe_payment_options::Funding::Card(
                    pb::OnePipeCard {
                        pan: "5060990580000217499".into(),
                        cvv: "111".into(),
                        expiry_mmyy: "2203".into(),
                        pin: "1234".into(),
                    },
                )),
            },
        )),
        ..Default::default()
    }
}

/// A CreatePayment request for Interswitch.
pub fn payment_request(
    request_id: &str,
    product: &str,
    customer: &str,
    kobo: i64,
) -> pb::CreatePaymentRequest {
    pb::CreatePaymentRequest {
        request_id: request_id.into(),
        provider: pb::Provider::Interswitch as i32,
        biller_id: "901".into(),
        product_id: product.into(),
        customer_id: customer.into(),
        amount: ngn(kobo),
        ..pb::CreatePaymentRequest::default()
    }
}

/// Asserts a status's code and ErrorInfo reason; returns its field violations' paths.
pub fn assert_error(status: &Status, code: Code, reason: &str) -> Vec<String> {
    assert_eq!(status.code(), code, "status: {status:?}");
    let details = status.get_error_details();
    let info = details.error_info().expect("every error carries ErrorInfo");
    assert_eq!(info.reason, reason, "status: {status:?}");
    assert_eq!(info.domain, "billpay.gateway");
    details
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default()
}

/// One ErrorInfo metadata value of a status.
pub fn error_meta(status: &Status, key: &str) -> Option<String> {
    status
        .get_error_details()
        .error_info()
        .and_then(|info| info.metadata.get(key).cloned())
}

/// The RetryInfo delay of a status, if any.
pub fn retry_delay(status: &Status) -> Option<Duration> {
    status
        .get_error_details()
        .retry_info()
        .and_then(|r| r.retry_delay)
}

/// The state of a payment response.
pub fn state(p: &pb::Payment) -> pb::PaymentState {
    pb::PaymentState::try_from(p.state).unwrap()
}

/// PaymentService's health as the gateway reports it.
pub async fn payment_health(gw: &TestGateway) -> i32 {
    tonic_health::pb::health_client::HealthClient::new(gw.channel.clone())
        .check(tonic_health::pb::HealthCheckRequest {
            service: "billpay.v1.PaymentService".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
}

/// Polls PaymentService's health until it is `want` (10 s at most).
pub async fn wait_for_payment_health(
    gw: &TestGateway,
    want: tonic_health::pb::health_check_response::ServingStatus,
) {
    for _ in 0..100 {
        if payment_health(gw).await == want as i32 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("payment service health never became {want:?}");
}

/// Makes a wiremock Interswitch list product 90101 under biller 901, as the sandbox does: a
/// payment's product is checked against the provider's catalog before anything is sent.
pub async fn mock_interswitch_items(server: &wiremock::MockServer) {
    use wiremock::matchers::{method, path};
    wiremock::Mock::given(method("GET"))
        .and(path("/api/v2/quickteller/billers/901/paymentitems"))
        .respond_with(
            wiremock::ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "paymentitems": [{"categoryid": "1", "billerid": "901", "isAmountFixed": false,
                    "paymentitemid": "01", "paymentitemname": "Prepaid token", "amount": "0",
                    "code": "01", "currencyCode": "566", "paymentCode": "90101",
                    "itemFee": "0"}]
            })),
        )
        .mount(server)
        .await;
}
