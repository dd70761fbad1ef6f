//! A real OTLP trace receiver for tests: the collector's `TraceService` (generated from the
//! published OTLP protos by the `opentelemetry-proto` crate) served by tonic on a loopback
//! port, keeping every export it is sent; and helpers to read the spans.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        trace_service_server::{TraceService, TraceServiceServer},
        ExportTraceServiceRequest, ExportTraceServiceResponse,
    },
    common::v1::{any_value::Value, AnyValue},
    trace::v1::Span,
};
use tokio::{net::TcpListener, sync::oneshot};
use tonic::{Request, Response, Status};

#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<ExportTraceServiceRequest>>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        self.0.lock().unwrap().push(request.into_inner());
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// A running receiver; stops when dropped.
pub struct Receiver {
    /// `http://127.0.0.1:PORT`, for `[telemetry] otlp_endpoint`.
    pub endpoint: String,
    collector: Collector,
    _stop: oneshot::Sender<()>,
}

impl Receiver {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let collector = Collector::default();
        let (stop, stopped) = oneshot::channel::<()>();
        let service = TraceServiceServer::new(collector.clone());
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(listener),
                    async {
                        let _ = stopped.await;
                    },
                )
                .await
                .expect("OTLP receiver serves");
        });
        Self {
            endpoint,
            collector,
            _stop: stop,
        }
    }

    /// Every export request received so far.
    pub fn exports(&self) -> Vec<ExportTraceServiceRequest> {
        self.collector.0.lock().unwrap().clone()
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Span> {
        self.exports()
            .into_iter()
            .flat_map(|e| e.resource_spans)
            .flat_map(|r| r.scope_spans)
            .flat_map(|s| s.spans)
            .collect()
    }
}

/// A span's attribute as text (numbers and booleans formatted), if it has it.
pub fn attr(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .map(value_text)
}

fn value_text(value: &AnyValue) -> String {
    match &value.value {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

/// Whether `span` descends from the span `ancestor` (by span id), within `spans`.
pub fn descends_from(span: &Span, ancestor: &[u8], spans: &[Span]) -> bool {
    let by_id: HashMap<&[u8], &Span> = spans.iter().map(|s| (s.span_id.as_slice(), s)).collect();
    let mut parent = span.parent_span_id.as_slice();
    // A chain longer than the span count would be a cycle.
    for _ in 0..=spans.len() {
        if parent == ancestor {
            return true;
        }
        match by_id.get(parent) {
            Some(s) => parent = s.parent_span_id.as_slice(),
            None => return false,
        }
    }
    false
}

/// Every text a collector got: span and event names, attribute keys and values, resource
/// attributes and status messages (as their Debug rendering, which quotes every string).
pub fn all_text(exports: &[ExportTraceServiceRequest]) -> String {
    format!("{exports:?}")
}
