//! The forwarded identity in `forwarded` mode, through a real client and server: an
//! `x-forwarded-client-cert` value is read by Envoy's grammar (an escaped quote stays inside its
//! quoted Subject, so the text after it cannot name another caller), several header fields are
//! one list whose last element is the caller, and every malformed or ambiguous value identifies
//! nobody (UNAUTHENTICATED); another configured header carries a plain identity.

mod common;

use std::sync::Arc;

use billpay_gateway::{
    auth::{AuthConfig, AuthMode, Authenticator, CallerConfig},
    config::ServerConfig,
    gateway::PaymentSettings,
    pb,
    store::memory::MemoryStore,
};
use common::*;
use tonic::{metadata::MetadataValue, Code, Request};

const SHOP: &str = "spiffe://example.org/ns/shop/sa/checkout";
const CATALOG: &str = "spiffe://example.org/ns/web/sa/catalog";
/// The Subject Envoy's grammar reads from [`ESCAPED_QUOTE_AS_QUOTED`]: the escaped quotes are
/// part of it, and so is the `URI=` between them.
const QUOTED_SUBJECT: &str = r#"CN=x",URI=spiffe://example.org/ns/shop/sa/checkout;O="y"#;
/// One element whose Subject holds escaped quotes around text that looks like shop's URI. A
/// reader that ends the quoted value at `\"` sees a second element `URI=<shop>;O=...` instead.
const ESCAPED_QUOTE_AS_QUOTED: &str = r#"By=spiffe://example.org/ns/pay/sa/gateway;Hash=0a1b;Subject="CN=x\",URI=spiffe://example.org/ns/shop/sa/checkout;O=\"y""#;
/// The same trick with a Subject no caller has: a loose reader took it for shop.
const ESCAPED_QUOTE_AS_NOBODY: &str = r#"By=spiffe://example.org/ns/pay/sa/gateway;Hash=0a1b;Subject="CN=y\",URI=spiffe://example.org/ns/shop/sa/checkout""#;

/// Every caller may call only GetPayment, so a ListProviders call answers PERMISSION_DENIED
/// naming the caller it was identified as.
fn caller(name: &str, identity: &str) -> CallerConfig {
    CallerConfig {
        name: name.into(),
        identity: identity.into(),
        methods: vec!["billpay.v1.PaymentService/GetPayment".into()],
        ..Default::default()
    }
}

async fn gateway(forwarded_header: &str) -> TestGateway {
    let auth = AuthConfig {
        mode: AuthMode::Forwarded,
        forwarded_header: forwarded_header.into(),
        callers: vec![
            caller("shop", SHOP),
            caller("catalog", CATALOG),
            caller("ops", "CN=ops,O=Example"),
            caller("quoted", QUOTED_SUBJECT),
        ],
        payment_id_key: Some("test-payment-id-key-5e1f".to_owned().into()),
        ..Default::default()
    };
    TestGateway::start_serving(
        Default::default(),
        Arc::new(MemoryStore::default()),
        PaymentSettings::default(),
        ServerConfig {
            auth: Some(Arc::new(Authenticator::new(&auth).expect("valid auth"))),
            ..Default::default()
        },
    )
    .await
}

/// The caller a call with `fields` of `header` (one header field each, in order) is
/// identified as; `None` when it is UNAUTHENTICATED.
async fn identified_as(gw: &TestGateway, header: &'static str, fields: &[&str]) -> Option<String> {
    let mut request = Request::new(pb::ListProvidersRequest::default());
    for field in fields {
        request.metadata_mut().append(
            header,
            MetadataValue::try_from(*field).expect("visible ASCII"),
        );
    }
    let status = gw
        .catalog()
        .list_providers(request)
        .await
        .expect_err("no caller may list providers");
    match status.code() {
        Code::Unauthenticated => {
            assert_error(&status, Code::Unauthenticated, "CALLER_UNAUTHENTICATED");
            None
        }
        _ => {
            assert_error(&status, Code::PermissionDenied, "CALLER_NOT_ALLOWED");
            Some(error_meta(&status, "caller").expect("the caller is named"))
        }
    }
}

const XFCC: &str = "x-forwarded-client-cert";

#[tokio::test]
async fn an_escaped_quote_stays_inside_the_subject_and_never_names_another_caller() {
    let gw = gateway(XFCC).await;
    // The plain cases first: URI, else Subject, of the one element.
    assert_eq!(
        identified_as(
            &gw,
            XFCC,
            &[&format!("Hash=1;Subject=\"CN=checkout\";URI={SHOP}")]
        )
        .await,
        Some("shop".into())
    );
    assert_eq!(
        identified_as(&gw, XFCC, &[r#"Hash=1;Subject="CN=ops,O=Example";URI="#]).await,
        Some("ops".into())
    );
    // The escaped quotes keep `URI=<shop>` inside the Subject: the caller is the one whose
    // identity is that Subject, or nobody, never shop.
    assert_eq!(
        identified_as(&gw, XFCC, &[ESCAPED_QUOTE_AS_QUOTED]).await,
        Some("quoted".into())
    );
    assert_eq!(
        identified_as(&gw, XFCC, &[ESCAPED_QUOTE_AS_NOBODY]).await,
        None
    );
    gw.stop().await;
}

#[tokio::test]
async fn several_header_fields_are_one_list_and_its_last_element_is_the_caller() {
    let gw = gateway(XFCC).await;
    let shop = format!("By=spiffe://example.org/ns/pay/sa/gateway;Hash=2;URI={SHOP}");
    let catalog = format!("Hash=1;URI={CATALOG}");
    assert_eq!(
        identified_as(&gw, XFCC, &[&catalog, &shop]).await,
        Some("shop".into())
    );
    assert_eq!(
        identified_as(&gw, XFCC, &[&shop, &catalog]).await,
        Some("catalog".into())
    );
    // Two elements in one field, one in the next: still the last.
    assert_eq!(
        identified_as(&gw, XFCC, &[&format!("{shop},{catalog}"), &shop]).await,
        Some("shop".into())
    );
    // Commas and semicolons inside quotes split nothing.
    assert_eq!(
        identified_as(
            &gw,
            XFCC,
            &[&format!(
                "{catalog},Hash=3;Subject=\"CN=a,O=b;c\";URI={SHOP}"
            )]
        )
        .await,
        Some("shop".into())
    );
    // A quoted value may not run from one field into the next.
    assert_eq!(
        identified_as(&gw, XFCC, &[r#"Hash=1;Subject="CN=ops,"#, r#"O=Example""#]).await,
        None
    );
    gw.stop().await;
}

#[tokio::test]
async fn malformed_or_ambiguous_values_identify_nobody() {
    let gw = gateway(XFCC).await;
    let refused = [
        // A bare value is not an identity in this header.
        SHOP.to_owned(),
        // A certificate with two URI SANs names two callers.
        format!("Hash=1;URI={SHOP};URI={CATALOG}"),
        format!("Hash=1;URI={CATALOG};uri={SHOP}"),
        // A key twice in one element.
        format!("Hash=1;Subject=\"CN=ops,O=Example\";Subject=\"CN=x\";URI={SHOP}"),
        // An unterminated quote, a bad escape.
        format!("Hash=1;Subject=\"CN=x;URI={SHOP}"),
        format!("Hash=1;Subject=\"CN=x\\,y\";URI={SHOP}"),
        // A key without `=`, an empty element, an unknown key.
        format!("Hash;URI={SHOP}"),
        format!("URI={SHOP},"),
        format!("Identity={SHOP}"),
        // A stray quote in an unquoted value, text after a closing quote.
        format!("URI={SHOP}\"x\""),
        format!("Subject=\"CN=x\"y;URI={SHOP}"),
        // A malformed earlier element.
        format!("Subject=\"CN=x\\q\",URI={SHOP}"),
        // The caller's element has neither URI nor Subject.
        format!("URI={SHOP},Hash=1;URI="),
    ];
    for value in &refused {
        assert_eq!(identified_as(&gw, XFCC, &[value]).await, None, "{value}");
    }
    // An empty field among good ones.
    assert_eq!(
        identified_as(&gw, XFCC, &[&format!("URI={SHOP}"), ""]).await,
        None
    );
    gw.stop().await;
}

#[tokio::test]
async fn another_header_carries_a_plain_identity_in_one_field() {
    const HEADER: &str = "x-client-id";
    let gw = gateway(HEADER).await;
    assert_eq!(
        identified_as(&gw, HEADER, &[SHOP]).await,
        Some("shop".into())
    );
    // Taken as sent: an XFCC value here is one (unknown) identity.
    assert_eq!(
        identified_as(&gw, HEADER, &[&format!("URI={SHOP}")]).await,
        None
    );
    // Two fields: which is the caller's?
    assert_eq!(identified_as(&gw, HEADER, &[SHOP, CATALOG]).await, None);
    // The XFCC header means nothing when another header is configured.
    assert_eq!(
        identified_as(&gw, XFCC, &[&format!("URI={SHOP}")]).await,
        None
    );
    gw.stop().await;
}
