//! Mutual TLS on the gateway's own listener, with real certificates (`tests/certs`, made by
//! `tests/certs/gen.sh` with the openssl command line): a client certificate from the
//! configured CA gets through and is identified by its SPIFFE URI SAN (or its subject's CN);
//! one with several URI SANs or several CNs gets through the handshake but identifies nobody
//! (UNAUTHENTICATED); no certificate, or one from another CA, is refused at the handshake.

mod common;

use std::{sync::Arc, time::Duration};

use billpay_gateway::{
    auth::{certificate_identity, AuthConfig, AuthMode, Authenticator, CallerConfig},
    config::{ServerConfig, TlsConfig},
    gateway::{registry, CatalogSettings, Gateway, PaymentSettings},
    pb::{self, catalog_service_client::CatalogServiceClient},
    sandbox::{self, Simulators},
    server,
    store::{memory::MemoryStore, Store},
};
use common::assert_error;
use tonic::{
    transport::{Certificate, Channel, ClientTlsConfig, Identity},
    Code,
};

const CERTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/certs");

fn cert(name: &str) -> String {
    format!("{CERTS}/{name}")
}

fn pem(name: &str) -> Vec<u8> {
    std::fs::read(cert(name)).expect("test certificate")
}

/// A gateway serving mTLS on a loopback port; its address.
async fn mtls_gateway() -> (Simulators, std::net::SocketAddr) {
    let sims =
        Simulators::start(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()).unwrap();
    let auth = AuthConfig {
        mode: AuthMode::Mtls,
        callers: vec![
            CallerConfig {
                name: "shop".into(),
                identity: "spiffe://example.org/ns/shop/sa/checkout".into(),
                providers: vec!["interswitch".into()],
                ..Default::default()
            },
            CallerConfig {
                name: "ops".into(),
                identity: "CN=ops".into(),
                methods: vec!["billpay.v1.CatalogService/ListProviders".into()],
                ..Default::default()
            },
        ],
        payment_id_key: Some("test-payment-id-key-5e1f".to_owned().into()),
        ..Default::default()
    };
    let config = ServerConfig {
        listen: "127.0.0.1:0".into(),
        shutdown_grace_ms: 0,
        tls: Some(TlsConfig {
            cert_file: cert("server.pem"),
            key_file: cert("server-key.pem"),
            client_ca_file: Some(cert("ca.pem")),
        }),
        auth: Some(Arc::new(Authenticator::new(&auth).unwrap())),
        ..ServerConfig::default()
    };
    let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
    let providers = registry::build(sandbox::providers_config(&sims.base_url()), &store).unwrap();
    let gateway = Gateway::new(
        providers,
        store,
        PaymentSettings::default(),
        CatalogSettings::default(),
        false,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        server::run(
            listener,
            gateway,
            config,
            Duration::from_millis(250),
            std::future::pending(),
        )
        .await
        .expect("server runs");
    });
    (sims, addr)
}

async fn connect(
    addr: std::net::SocketAddr,
    client: Option<&str>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(pem("ca.pem")))
        .domain_name("localhost");
    if let Some(name) = client {
        tls = tls.identity(Identity::from_pem(
            pem(&format!("{name}.pem")),
            pem(&format!("{name}-key.pem")),
        ));
    }
    Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
}

async fn list_billers(
    channel: Channel,
    provider: pb::Provider,
) -> Result<Vec<pb::Biller>, tonic::Status> {
    CatalogServiceClient::new(channel)
        .list_billers(pb::ListBillersRequest {
            provider: provider as i32,
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().billers)
}

#[test]
fn identities_are_read_from_the_test_certificates() {
    let der = |name: &str| {
        let pem = String::from_utf8(pem(name)).unwrap();
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64).unwrap()
    };
    assert_eq!(
        certificate_identity(&der("client.pem")).as_deref(),
        Some("spiffe://example.org/ns/shop/sa/checkout")
    );
    assert_eq!(
        certificate_identity(&der("client-subject.pem")).as_deref(),
        Some("CN=ops")
    );
    // Two names: which caller is it? None.
    for ambiguous in [
        "client-two-uris.pem",
        "client-two-cns.pem",
        "client-uri-two-cns.pem",
    ] {
        assert_eq!(certificate_identity(&der(ambiguous)), None, "{ambiguous}");
    }
}

#[tokio::test]
async fn a_client_certificate_with_several_uri_sans_or_common_names_identifies_nobody() {
    let (_sims, addr) = mtls_gateway().await;
    // Each would have been shop (its first URI SAN) or ops (its first CN), both configured.
    for name in ["client-two-uris", "client-two-cns", "client-uri-two-cns"] {
        let channel = connect(addr, Some(name))
            .await
            .expect("CA-signed: the handshake succeeds");
        let status = CatalogServiceClient::new(channel.clone())
            .list_providers(pb::ListProvidersRequest::default())
            .await
            .unwrap_err();
        assert_error(&status, Code::Unauthenticated, "CALLER_UNAUTHENTICATED");
        let status = list_billers(channel, pb::Provider::Interswitch)
            .await
            .unwrap_err();
        assert_error(&status, Code::Unauthenticated, "CALLER_UNAUTHENTICATED");
    }
    // One CN and one URI SAN: the URI.
    let shop = connect(addr, Some("client")).await.expect("CA-signed");
    list_billers(shop, pb::Provider::Interswitch)
        .await
        .expect("identified by its one URI SAN");
}

#[tokio::test]
async fn a_client_certificate_from_the_configured_ca_gets_through_and_others_are_refused() {
    let (_sims, addr) = mtls_gateway().await;
    let shop = connect(addr, Some("client"))
        .await
        .expect("CA-signed client");
    let billers = list_billers(shop.clone(), pb::Provider::Interswitch)
        .await
        .expect("identified by its SPIFFE URI");
    assert!(!billers.is_empty());
    // The identity's permissions apply: shop may not use OnePipe.
    let status = list_billers(shop, pb::Provider::Onepipe).await.unwrap_err();
    assert_error(&status, Code::PermissionDenied, "CALLER_NOT_ALLOWED");

    // A subject-only certificate is identified by its CN.
    let ops = connect(addr, Some("client-subject"))
        .await
        .expect("CA-signed");
    CatalogServiceClient::new(ops.clone())
        .list_providers(pb::ListProvidersRequest::default())
        .await
        .expect("ops may list providers");
    let status = list_billers(ops, pb::Provider::Interswitch)
        .await
        .unwrap_err();
    assert_error(&status, Code::PermissionDenied, "CALLER_NOT_ALLOWED");

    // No client certificate, or one from another CA: the handshake fails (the connection or
    // the first call errs; nothing is served).
    for client in [None, Some("stranger")] {
        let refused = match connect(addr, client).await {
            Err(_) => true,
            Ok(channel) => list_billers(channel, pb::Provider::Interswitch)
                .await
                .is_err_and(|s| s.code() == Code::Unavailable || s.code() == Code::Unknown),
        };
        assert!(refused, "{client:?} was served");
    }
}
