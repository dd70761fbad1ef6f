//! The shipped binary: `serve --sandbox` comes up with every service SERVING and reflection
//! answering, and on SIGTERM flips health to NOT_SERVING before it drains and exits 0.

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};
use tonic_reflection::pb::v1alpha::{
    server_reflection_client::ServerReflectionClient, server_reflection_request::MessageRequest,
    server_reflection_response::MessageResponse, ServerReflectionRequest,
};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn connect(addr: &str) -> Channel {
    for _ in 0..100 {
        if let Ok(c) = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
        {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("gateway did not start on {addr}");
}

#[tokio::test]
async fn serve_sandbox_health_reflection_and_graceful_shutdown() {
    let addr = format!("127.0.0.1:{}", free_port());
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_billpay-gateway"))
        .env_remove("DATABASE_URL")
        .args(["serve", "--sandbox", "--listen", &addr])
        .env_remove("REDIS_URL")
        .env("BILLPAY__SERVER__METRICS_LISTEN", &metrics_addr)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let channel = connect(&addr).await;
    let mut health = HealthClient::new(channel.clone());
    for service in [
        "",
        "billpay.v1.CatalogService",
        "billpay.v1.CustomerService",
        "billpay.v1.PaymentService",
        "billpay.v1.AccountService",
    ] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
    }

    // Reflection v1alpha (what grpcurl 1.8.6 speaks) lists our services.
    let mut reflection = ServerReflectionClient::new(channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        responses.next().await.unwrap().unwrap().message_response
    else {
        panic!("expected a service list");
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    for expected in ["billpay.v1.PaymentService", "grpc.health.v1.Health"] {
        assert!(names.iter().any(|n| n == expected), "{names:?}");
    }

    // Metrics count the calls above, by method and status code.
    let metrics = reqwest::get(format!("http://{metrics_addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            r#"billpay_rpc_requests_total{method="/grpc.health.v1.Health/Check",code="0"} 5"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("billpay_payments_needs_attention_total 0"),
        "{metrics}"
    );

    // Watch the overall health, then SIGTERM: NOT_SERVING arrives before the process exits.
    let mut watch = health
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        watch.next().await.unwrap().unwrap().status,
        ServingStatus::Serving as i32
    );
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let next = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .expect("health changes on SIGTERM");
    assert_eq!(
        next.unwrap().unwrap().status,
        ServingStatus::NotServing as i32
    );
    // Open streams would hold the drain until its timeout; a client closes them.
    drop((watch, responses, health, reflection, channel));
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "exit status {exit:?}");
}
