//! Who may call: the caller's identity (an API key stored hashed in config, a client
//! certificate, or an identity a trusted mesh sidecar forwards; the last two read by
//! [`identity`]), and what that identity may call (methods, providers, the operator service). One tower layer ([`AuthLayer`]) runs before any handler: no identity
//! answers UNAUTHENTICATED, a method the caller may not call PERMISSION_DENIED, both with
//! ErrorInfo. It attaches the [`Caller`] to the request's extensions and makes it the current
//! caller of the call's task, so the gateway's provider lookup refuses a provider the caller may
//! not use ([`check_provider`]) before any work on it.
//!
//! The same layer then takes the call from the caller's rate limit ([`crate::rate_limit`]):
//! over it, RESOURCE_EXHAUSTED with RetryInfo, still before any work.
//!
//! Health and reflection stay open (the mesh health-checks without credentials; reflection
//! only describes the contract).
//!
//! A refused call costs the gateway no per-call log line: refusals are counted in
//! `billpay_auth_refusals_total{reason}` and logged at most once per second per reason, with the
//! number of refusals left out since the last line ([`RefusalLog`]); the response is marked
//! [`Refused`] so the request layer writes no `rpc finished` line for it either.

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use http::{HeaderMap, Request, Response};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tower::{Layer, Service};

use crate::domain::ProviderId;
use crate::error::GatewayError;
use crate::rate_limit::CallLimit;

pub mod identity;
pub use identity::{certificate_identity, forwarded_identity};

/// Paths served to every caller, identified or not.
const OPEN_PATHS: [&str; 2] = ["/grpc.health.v1.", "/grpc.reflection."];

/// The operator service's path prefix: only for operator identities.
const OPERATOR_PREFIX: &str = "/billpay.v1.OperatorService/";

/// Envoy's forwarded client certificate header (`By=...;Hash=...;Subject="...";URI=...`).
pub const DEFAULT_FORWARDED_HEADER: &str = "x-forwarded-client-cert";

/// How a caller proves who it is.
#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// Nobody is identified: every call is the anonymous caller and may call everything. The
    /// sandbox default; logged as a warning at start when real providers are configured.
    #[default]
    None,
    /// `authorization: Bearer <key>` or `x-api-key: <key>`, matched against
    /// `callers[].api_key_sha256`.
    ApiKey,
    /// The client certificate of a mutual-TLS connection (`[server.tls] client_ca_file`): its
    /// URI SAN (a SPIFFE id), else `CN=<common name>` of its subject, matched against
    /// `callers[].identity`; a certificate with several URI SANs or several common names
    /// identifies nobody ([`certificate_identity`]).
    Mtls,
    /// The identity a mesh sidecar that terminated mTLS forwards in `forwarded_header`. Only
    /// safe when nothing but the sidecar can reach the gateway's port.
    Forwarded,
}

/// `[auth]`.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub mode: AuthMode,
    /// `forwarded` mode: the header the sidecar sets. `x-forwarded-client-cert` is read by
    /// Envoy's XFCC grammar (`...;Subject="CN=x";URI=spiffe://...`): its last element's `URI`,
    /// else its `Subject`, and nothing when the value is malformed or ambiguous ([`identity`]);
    /// any other header holds a plain identity, one field, as sent.
    pub forwarded_header: String,
    /// Who may call, and what.
    pub callers: Vec<CallerConfig>,
    /// Key of the per-caller payment ids (HMAC-SHA256 of caller and request_id): required
    /// unless mode is `none`. Without it a payment_id cannot be computed from a request_id.
    /// Changing it makes earlier payment ids unreachable by request_id replays, unless the
    /// old key is listed in `previous_payment_id_keys`.
    pub payment_id_key: Option<secrecy::SecretString>,
    /// Keys `payment_id_key` had before, comma-separated, newest first: a request_id (payment
    /// or follow-up) that is not found under the current key is looked up under each of these
    /// before anything is claimed, so a retry across a key change replays instead of paying
    /// again. Costs one store read per key for every new request_id; drop a key once
    /// `payments.record_ttl_ms` has passed since it was replaced.
    pub previous_payment_id_keys: Option<secrecy::SecretString>,
    /// Default rate limit of a caller without its own, calls per second per replica (each
    /// caller its own bucket); also the anonymous caller's in mode `none`. 0: unlimited.
    pub rate_per_second: f64,
    /// Default burst: calls a caller may make at once. Unset: one second's worth of its rate.
    pub burst: Option<u32>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            mode: AuthMode::None,
            forwarded_header: DEFAULT_FORWARDED_HEADER.to_owned(),
            callers: Vec::new(),
            payment_id_key: None,
            previous_payment_id_keys: None,
            rate_per_second: 0.0,
            burst: None,
        }
    }
}

/// `[[auth.callers]]`: one identity and what it may call.
#[derive(Debug, Deserialize, Clone, Default)]
#[serde(deny_unknown_fields, default)]
pub struct CallerConfig {
    /// The caller's name in logs, audit lines and ErrorInfo.
    pub name: String,
    /// `api_key` mode: SHA-256 of the key, lower-case hex (`printf %s KEY | sha256sum`). The
    /// key itself is never in config.
    pub api_key_sha256: String,
    /// `forwarded` mode: the identity the sidecar forwards (a SPIFFE URI such as
    /// `spiffe://example.org/ns/shop/sa/checkout`, or a certificate subject).
    pub identity: String,
    /// Methods it may call: `billpay.v1.PaymentService/CreatePayment`,
    /// `billpay.v1.PaymentService/*` or `*`. Empty: every method but the operator service's.
    pub methods: Vec<String>,
    /// Providers it may use, by config name (`interswitch`, `onepipe`, ...). Empty: all.
    pub providers: Vec<String>,
    /// May call `billpay.v1.OperatorService` (its methods need no listing in `methods`).
    pub operator: bool,
    /// May read what belongs to the merchant account as a whole rather than to one caller:
    /// balances and floats (`GetBalance`), provider accounts (`ListAccounts`), the provider's
    /// whole transaction list, and every caller's saved bills (which it may also delete).
    /// Without it a caller sees and acts on only the provider-side objects it created.
    pub merchant_reads: bool,
    /// Its rate limit, calls per second per replica; 0: unlimited. Unset: `[auth]`'s.
    pub rate_per_second: Option<f64>,
    /// Its burst. Unset: one second's worth of its own `rate_per_second` when it sets one,
    /// else `[auth]`'s burst.
    pub burst: Option<u32>,
}

/// The key of per-caller ids, and the keys it replaced (newest first).
#[derive(Debug)]
struct ScopeKeys {
    current: secrecy::SecretSlice<u8>,
    previous: Vec<secrecy::SecretSlice<u8>>,
}

/// An identified caller and what it may do.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Name from config; `anonymous` in mode `none`.
    pub name: String,
    methods: Vec<String>,
    /// `None`: every provider.
    providers: Option<BTreeSet<ProviderId>>,
    operator: bool,
    /// `[[auth.callers]] merchant_reads`; the anonymous caller has it.
    merchant_reads: bool,
    /// Keys of this caller's payment and operation ids; `None` (the anonymous caller): the
    /// unkeyed ids, so the sandbox's documented payment ids stay valid.
    scope_key: Option<Arc<ScopeKeys>>,
    /// Its rate limit; `None`: unlimited.
    limit: Option<Arc<CallLimit>>,
}

impl Caller {
    /// The caller of mode `none`: may call everything.
    pub fn anonymous() -> Self {
        Self {
            name: "anonymous".to_owned(),
            methods: vec!["*".to_owned()],
            providers: None,
            operator: true,
            merchant_reads: true,
            scope_key: None,
            limit: None,
        }
    }

    /// Whose provider-side objects this caller sees and acts on.
    pub fn object_scope(&self) -> ObjectScope {
        if self.merchant_reads {
            ObjectScope::Merchant
        } else {
            ObjectScope::Caller(self.name.clone())
        }
    }

    /// May this caller call `path` (`/package.Service/Method`)?
    pub fn may_call(&self, path: &str) -> bool {
        if path.starts_with(OPERATOR_PREFIX) {
            return self.operator;
        }
        let method = path.trim_start_matches('/');
        if self.methods.is_empty() {
            return true;
        }
        self.methods.iter().any(|pattern| {
            pattern == "*"
                || pattern == method
                || pattern
                    .strip_suffix("/*")
                    .is_some_and(|service| method.split('/').next() == Some(service))
        })
    }

    /// May this caller use `provider`?
    pub fn may_use(&self, provider: ProviderId) -> bool {
        self.providers
            .as_ref()
            .is_none_or(|allowed| allowed.contains(&provider))
    }
}

/// Whose provider-side objects (saved bills, provider transactions, balances) a caller sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectScope {
    /// The whole merchant account: the anonymous caller of mode `none`, background work, and
    /// callers with `merchant_reads`.
    Merchant,
    /// Only the objects this caller (by name) created through the gateway.
    Caller(String),
}

impl ObjectScope {
    /// The scope of the RPC whose request carries these extensions (the auth layer puts the
    /// caller there); no caller there means no auth layer ran: the merchant's.
    pub fn of(extensions: &http::Extensions) -> Self {
        extensions
            .get::<Arc<Caller>>()
            .map_or(Self::Merchant, |caller| caller.object_scope())
    }

    /// Refuses a merchant-wide read (`method`, the full method name such as
    /// `billpay.v1.AccountService/GetBalance`) to a caller without `merchant_reads`.
    pub fn require_merchant(&self, method: &str) -> Result<(), GatewayError> {
        match self {
            Self::Merchant => Ok(()),
            Self::Caller(name) => Err(GatewayError::CallerNotAllowed {
                caller: name.clone(),
                method: method.to_owned(),
                provider: None,
            }),
        }
    }
}

tokio::task_local! {
    /// The caller of the RPC this task serves; unset for background work (reconciliation).
    static CURRENT_CALLER: Arc<Caller>;
    /// The full method name of the RPC this task serves (`billpay.v1.PaymentService/
    /// CreatePayment`), set with the caller: a refusal names it.
    static CURRENT_METHOD: Arc<str>;
}

/// Refuses `provider` when the current RPC's caller may not use it; background work (no
/// current caller) may use every provider.
pub fn check_provider(provider: ProviderId) -> Result<(), GatewayError> {
    CURRENT_CALLER
        .try_with(|caller| {
            if caller.may_use(provider) {
                Ok(())
            } else {
                Err(GatewayError::CallerNotAllowed {
                    caller: caller.name.clone(),
                    method: CURRENT_METHOD
                        .try_with(|m| m.to_string())
                        .unwrap_or_default(),
                    provider: Some(provider),
                })
            }
        })
        .unwrap_or(Ok(()))
}

/// The id of `request_id` in `namespace` (`payment`, `operation`) for the current RPC's
/// caller, 32 hex digits: keyed by caller (HMAC-SHA256 with `[auth] payment_id_key`) for an
/// identified caller, so two callers' equal request_ids are two payments or operations and
/// an id cannot be computed without the key; `None` for the anonymous caller and background
/// work (their callers use the unkeyed ids).
fn scoped_id(namespace: &str, request_id: &str) -> Option<String> {
    let (name, keys) = current_scope()?;
    Some(keyed_id(&keys.current, namespace, &name, request_id))
}

/// The ids `request_id` had under the keys `payment_id_key` replaced, newest first (empty
/// for the anonymous caller).
fn earlier_scoped_ids(namespace: &str, request_id: &str) -> Vec<String> {
    current_scope()
        .map(|(name, keys)| {
            keys.previous
                .iter()
                .map(|key| keyed_id(key, namespace, &name, request_id))
                .collect()
        })
        .unwrap_or_default()
}

fn current_scope() -> Option<(String, Arc<ScopeKeys>)> {
    CURRENT_CALLER
        .try_with(|c| Some((c.name.clone(), c.scope_key.clone()?)))
        .ok()?
}

fn keyed_id(
    key: &secrecy::SecretSlice<u8>,
    namespace: &str,
    name: &str,
    request_id: &str,
) -> String {
    use hmac::{Hmac, Mac};
    use secrecy::ExposeSecret;
    let mut mac =
        Hmac::<Sha256>::new_from_slice(key.expose_secret()).expect("HMAC takes any key length");
    // The caller's name is length-prefixed, so no (caller, request_id) pair reads as another.
    mac.update(format!("billpay/{namespace}/{}/{name}/{request_id}", name.len()).as_bytes());
    let digest = mac.finalize().into_bytes();
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// The payment id of `request_id` for the current RPC's caller ([`scoped_id`]); `None`: the
/// unkeyed id.
pub fn scoped_payment_id(request_id: &str) -> Option<String> {
    scoped_id("payment", request_id).map(|hex| format!("pay_{hex}"))
}

/// The id of a follow-up operation's (OTP validation, reversal, saved-bill deletion)
/// `request_id` for the current RPC's caller ([`scoped_id`]); `None`: the unkeyed id.
pub fn scoped_operation_id(request_id: &str) -> Option<String> {
    scoped_id("operation", request_id)
}

/// The payment ids `request_id` had for the current caller under `[auth]
/// previous_payment_id_keys`, newest first: where a retry across a key change finds its
/// payment.
pub fn earlier_payment_ids(request_id: &str) -> Vec<String> {
    earlier_scoped_ids("payment", request_id)
        .into_iter()
        .map(|hex| format!("pay_{hex}"))
        .collect()
}

/// [`earlier_payment_ids`] for a follow-up operation's `request_id`.
pub fn earlier_operation_ids(request_id: &str) -> Vec<String> {
    earlier_scoped_ids("operation", request_id)
}

/// May the current RPC's caller see a payment recorded for `owner`? Operators, the anonymous
/// caller and background work see every payment; others only their own.
pub fn may_see_payment_of(owner: &str) -> bool {
    CURRENT_CALLER
        .try_with(|c| c.scope_key.is_none() || c.operator || c.name == owner)
        .unwrap_or(true)
}

/// Whose payments the current RPC's caller may see, captured for work that outlives the RPC's
/// task (a server stream): `None` for every caller's (operators, the anonymous caller,
/// background work), else the caller's name. As [`may_see_payment_of`].
pub fn visible_payments_owner() -> Option<String> {
    CURRENT_CALLER
        .try_with(|c| (c.scope_key.is_some() && !c.operator).then(|| c.name.clone()))
        .ok()
        .flatten()
}

/// Whose payments the current RPC's caller lists as its own (`ListOwnPayments`): its name
/// for an identified caller, operators included (they list everyone's with
/// `ListJournalPayments`); `None`, every caller's, for the anonymous caller of mode `none`,
/// which sees every payment as it does with `GetPayment`, and for background work.
pub fn own_payments_owner() -> Option<String> {
    CURRENT_CALLER
        .try_with(|c| c.scope_key.is_some().then(|| c.name.clone()))
        .ok()
        .flatten()
}

/// The name of the current RPC's caller, if any.
pub fn current_caller() -> Option<String> {
    CURRENT_CALLER.try_with(|c| c.name.clone()).ok()
}

/// The configured callers, ready to match requests.
#[derive(Debug)]
pub struct Authenticator {
    mode: AuthMode,
    forwarded_header: http::HeaderName,
    /// (SHA-256 of the key or the forwarded identity, caller).
    callers: Vec<(Vec<u8>, Arc<Caller>)>,
    /// Mode `none`'s one caller (with `[auth]`'s default rate limit, if any).
    anonymous: Arc<Caller>,
    /// Bounds the log lines of refused calls.
    refusals: RefusalLog,
}

/// Why the auth layer refused a call (the `reason` label of `billpay_auth_refusals_total`).
/// Refusals by a caller's rate limit are counted apart (`billpay_rate_limited_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalReason {
    /// No credentials, or ones that name no configured caller: UNAUTHENTICATED.
    Unauthenticated,
    /// A known caller calling a method it may not: PERMISSION_DENIED.
    MethodNotAllowed,
}

impl RefusalReason {
    const ALL: [RefusalReason; 2] = [Self::Unauthenticated, Self::MethodNotAllowed];

    /// The metric label value.
    pub fn name(self) -> &'static str {
        match self {
            Self::Unauthenticated => "unauthenticated",
            Self::MethodNotAllowed => "method_not_allowed",
        }
    }
}

/// Marks a response the auth layer refused (in the response's extensions): the request layer
/// counts it but writes no line for it.
#[derive(Debug, Clone, Copy)]
pub struct Refused;

/// Log-rate bound for refused calls: at most one line per `every` per reason. A refusal that
/// does not get a line is counted in the next line's `suppressed`. Time is tokio's clock, so
/// paused time drives it in tests.
#[derive(Debug)]
pub struct RefusalLog {
    every: Duration,
    /// Per reason (in [`RefusalReason::ALL`] order): when the last line was written, and how
    /// many refusals got no line since.
    windows: [Mutex<(Option<tokio::time::Instant>, u64)>; 2],
}

impl RefusalLog {
    /// At most one line per second per reason.
    pub const EVERY: Duration = Duration::from_secs(1);

    pub fn new(every: Duration) -> Self {
        Self {
            every,
            windows: Default::default(),
        }
    }

    /// Notes one refusal for `reason`: `Some(suppressed)` when it is to be logged (with the
    /// number of refusals left unlogged since the last line), `None` when it is left out.
    pub fn note(&self, reason: RefusalReason) -> Option<u64> {
        let index = RefusalReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        let now = tokio::time::Instant::now();
        let mut window = self.windows[index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (last, suppressed) = &mut *window;
        if last.is_some_and(|at| now.duration_since(at) < self.every) {
            *suppressed += 1;
            return None;
        }
        *last = Some(now);
        Some(std::mem::take(suppressed))
    }
}

impl Authenticator {
    /// Checks `config` and builds the matcher.
    pub fn new(config: &AuthConfig) -> Result<Self, String> {
        let forwarded_header = http::HeaderName::try_from(config.forwarded_header.as_str())
            .map_err(|_| {
                format!(
                    "auth.forwarded_header {:?} is not a header name",
                    config.forwarded_header
                )
            })?;
        let scope_key = match (&config.payment_id_key, config.mode) {
            (_, AuthMode::None) => None,
            (Some(key), _) => {
                use secrecy::ExposeSecret;
                let secret = |key: &str, what: &str| {
                    if key.len() < 16 {
                        return Err(format!("auth.{what}: at least 16 characters each"));
                    }
                    Ok(secrecy::SecretSlice::from(key.as_bytes().to_vec()))
                };
                let previous = match &config.previous_payment_id_keys {
                    Some(keys) => keys
                        .expose_secret()
                        .split(',')
                        .map(str::trim)
                        .filter(|k| !k.is_empty())
                        .map(|k| secret(k, "previous_payment_id_keys"))
                        .collect::<Result<Vec<_>, _>>()?,
                    None => Vec::new(),
                };
                Some(Arc::new(ScopeKeys {
                    current: secret(key.expose_secret(), "payment_id_key")?,
                    previous,
                }))
            }
            (None, _) => {
                return Err(
                    "auth.payment_id_key is required with callers: payment ids are keyed per \
                     caller"
                        .into(),
                )
            }
        };
        // Each caller its own bucket: the default's quota, unless it sets its own rate (then
        // its burst defaults to one second's worth of that rate, not to [auth]'s burst).
        let limit = |what: String, rate: Option<f64>, burst: Option<u32>| {
            let (rate, burst) = match rate {
                Some(rate) => (rate, burst),
                None => (config.rate_per_second, burst.or(config.burst)),
            };
            CallLimit::new(rate, burst)
                .map(|l| l.map(Arc::new))
                .map_err(|e| format!("{what}: {e}"))
        };
        let anonymous = Arc::new(Caller {
            limit: limit("auth".into(), None, None)?,
            ..Caller::anonymous()
        });
        let mut callers = Vec::new();
        let mut names = BTreeSet::new();
        for c in &config.callers {
            if c.name.is_empty() {
                return Err("auth.callers: every caller needs a name".into());
            }
            // A name scopes payment ids and what a caller may see: two callers sharing one
            // would see, replay and reverse each other's payments.
            if c.name == Caller::anonymous().name {
                return Err(format!(
                    "auth.callers {:?}: the name is reserved for unidentified calls",
                    c.name
                ));
            }
            if !names.insert(c.name.as_str()) {
                return Err(format!("auth.callers {:?}: the name is used twice", c.name));
            }
            let key = match config.mode {
                AuthMode::None => continue,
                AuthMode::ApiKey => hex_decode(&c.api_key_sha256)
                    .filter(|d| d.len() == 32)
                    .ok_or_else(|| {
                        format!(
                            "auth.callers {:?}: api_key_sha256 must be 64 hex digits",
                            c.name
                        )
                    })?,
                AuthMode::Forwarded | AuthMode::Mtls => {
                    if c.identity.is_empty() {
                        return Err(format!("auth.callers {:?}: identity is required", c.name));
                    }
                    Sha256::digest(c.identity.as_bytes()).to_vec()
                }
            };
            let providers = if c.providers.is_empty() {
                None
            } else {
                let mut set = BTreeSet::new();
                for name in &c.providers {
                    let id = ProviderId::ALL
                        .into_iter()
                        .find(|p| p.name() == name)
                        .ok_or_else(|| {
                            format!("auth.callers {:?}: unknown provider {name:?}", c.name)
                        })?;
                    set.insert(id);
                }
                Some(set)
            };
            if callers.iter().any(|(k, _)| *k == key) {
                return Err(format!(
                    "auth.callers {:?}: another caller has the same key or identity",
                    c.name
                ));
            }
            callers.push((
                key,
                Arc::new(Caller {
                    name: c.name.clone(),
                    methods: c.methods.clone(),
                    providers,
                    operator: c.operator,
                    merchant_reads: c.merchant_reads,
                    scope_key: scope_key.clone(),
                    limit: limit(
                        format!("auth.callers {:?}", c.name),
                        c.rate_per_second,
                        c.burst,
                    )?,
                }),
            ));
        }
        if config.mode != AuthMode::None && callers.is_empty() {
            return Err("auth.mode needs at least one [[auth.callers]]".into());
        }
        Ok(Self {
            mode: config.mode,
            forwarded_header,
            callers,
            anonymous,
            refusals: RefusalLog::new(RefusalLog::EVERY),
        })
    }

    /// The mode in use.
    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    /// The caller the request proves (headers, or the connection's client certificate).
    pub fn identify<B>(&self, request: &Request<B>) -> Option<Arc<Caller>> {
        let headers = request.headers();
        let presented = match self.mode {
            AuthMode::None => return Some(self.anonymous.clone()),
            AuthMode::Mtls => {
                let info = request
                    .extensions()
                    .get::<tonic::transport::server::TlsConnectInfo<
                        tonic::transport::server::TcpConnectInfo,
                    >>()?;
                let certs = info.peer_certs()?;
                certificate_identity(certs.first()?)?
            }
            AuthMode::ApiKey => api_key(headers)?,
            AuthMode::Forwarded => forwarded_identity(
                &self.forwarded_header,
                headers.get_all(&self.forwarded_header),
            )?,
        };
        let digest = Sha256::digest(presented.as_bytes());
        self.callers
            .iter()
            .find(|(key, _)| constant_time_eq(key, &digest))
            .map(|(_, caller)| caller.clone())
    }
}

/// The key of `authorization: Bearer <key>` or `x-api-key: <key>`.
fn api_key(headers: &HeaderMap) -> Option<String> {
    if let Some(value) = headers.get(http::header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        let (scheme, key) = value.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| key.trim().to_owned())
            .filter(|k| !k.is_empty());
    }
    let key = headers.get("x-api-key")?.to_str().ok()?.trim();
    (!key.is_empty()).then(|| key.to_owned())
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Identifies and authorizes every call (see the module doc).
#[derive(Clone)]
pub struct AuthLayer {
    pub authenticator: Arc<Authenticator>,
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Auth {
            inner,
            authenticator: self.authenticator.clone(),
        }
    }
}

/// The service made by [`AuthLayer`].
#[derive(Clone)]
pub struct Auth<S> {
    inner: S,
    authenticator: Arc<Authenticator>,
}

impl<S, B, R> Service<Request<B>> for Auth<S>
where
    S: Service<Request<B>, Response = Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send,
    B: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let path = request.uri().path().to_owned();
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if OPEN_PATHS.iter().any(|p| path.starts_with(p)) {
            return Box::pin(async move { inner.call(request).await });
        }
        let refusal = match self.authenticator.identify(&request) {
            None => Err(GatewayError::Unauthenticated),
            Some(caller) if !caller.may_call(&path) => Err(GatewayError::CallerNotAllowed {
                caller: caller.name.clone(),
                method: path.trim_start_matches('/').to_owned(),
                provider: None,
            }),
            Some(caller) => match caller.limit.as_ref().map(|l| l.admit()) {
                Some(Err(retry_after)) => Err(GatewayError::RateLimited {
                    caller: caller.name.clone(),
                    retry_after,
                }),
                _ => Ok(caller),
            },
        };
        match refusal {
            Ok(caller) => {
                request.extensions_mut().insert(caller.clone());
                let method: Arc<str> = Arc::from(path.trim_start_matches('/'));
                Box::pin(CURRENT_CALLER.scope(
                    caller,
                    CURRENT_METHOD.scope(method, async move { inner.call(request).await }),
                ))
            }
            Err(error) => {
                if let GatewayError::RateLimited {
                    caller,
                    retry_after,
                } = &error
                {
                    // A caller over its limit may call at any rate: one line each would flood
                    // the log at warn. The refusal did no work, so it has no audit line; the
                    // counter shows it.
                    tracing::debug!(method = %path, caller, retry_after_ms = retry_after.as_millis() as u64, "call over the caller's rate limit");
                    crate::metrics::global()
                        .rate_limited
                        .get_or_create(&crate::metrics::CallerName {
                            caller: caller.clone(),
                        })
                        .inc();
                } else {
                    let reason = match error {
                        GatewayError::CallerNotAllowed { .. } => RefusalReason::MethodNotAllowed,
                        _ => RefusalReason::Unauthenticated,
                    };
                    crate::metrics::global()
                        .auth_refusals
                        .get_or_create(&crate::metrics::RefusalLabels {
                            reason: reason.name().to_owned(),
                        })
                        .inc();
                    // Refusals come at whatever rate a client sends them: a bounded number of
                    // lines, each saying how many were left out; the counter has them all.
                    if let Some(suppressed) = self.authenticator.refusals.note(reason) {
                        tracing::warn!(
                            method = crate::telemetry::metric_method(&path),
                            reason = reason.name(),
                            %error,
                            suppressed,
                            "call refused (at most one line per second per reason; \
                             suppressed: refusals since the last line)"
                        );
                    }
                }
                let status = crate::api::status::to_status(error);
                let mut response = status.into_http();
                response.extensions_mut().insert(Refused);
                Box::pin(async move { Ok(response) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_patterns() {
        let caller = Caller {
            name: "c".into(),
            methods: vec![
                "billpay.v1.CatalogService/*".into(),
                "billpay.v1.PaymentService/GetPayment".into(),
            ],
            providers: None,
            operator: false,
            merchant_reads: false,
            scope_key: None,
            limit: None,
        };
        assert!(caller.may_call("/billpay.v1.CatalogService/ListBillers"));
        assert!(caller.may_call("/billpay.v1.PaymentService/GetPayment"));
        assert!(!caller.may_call("/billpay.v1.PaymentService/CreatePayment"));
        assert!(!caller.may_call("/billpay.v1.OperatorService/ListJournalPayments"));
    }

    #[test]
    fn a_bad_key_hash_is_refused_at_start() {
        let config = AuthConfig {
            mode: AuthMode::ApiKey,
            callers: vec![CallerConfig {
                name: "c".into(),
                api_key_sha256: "not-hex".into(),
                ..Default::default()
            }],
            payment_id_key: Some("a-test-payment-id-key".to_owned().into()),
            ..Default::default()
        };
        assert!(Authenticator::new(&config)
            .unwrap_err()
            .contains("api_key_sha256"));
    }

    #[tokio::test(start_paused = true)]
    async fn refusals_are_logged_at_most_once_per_second_per_reason_with_the_rest_counted() {
        let log = RefusalLog::new(RefusalLog::EVERY);
        // The first refusal is logged; the next 999 within the second are not.
        assert_eq!(log.note(RefusalReason::Unauthenticated), Some(0));
        for _ in 0..999 {
            assert_eq!(log.note(RefusalReason::Unauthenticated), None);
        }
        // Another reason has its own budget.
        assert_eq!(log.note(RefusalReason::MethodNotAllowed), Some(0));
        assert_eq!(log.note(RefusalReason::MethodNotAllowed), None);
        tokio::time::advance(Duration::from_millis(999)).await;
        assert_eq!(log.note(RefusalReason::Unauthenticated), None);
        // A second after the last line: one line, saying how many were left out.
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(log.note(RefusalReason::Unauthenticated), Some(1_000));
        assert_eq!(log.note(RefusalReason::Unauthenticated), None);
        assert_eq!(log.note(RefusalReason::MethodNotAllowed), Some(1));
        // A quiet spell: the next refusal is logged at once, with nothing left out.
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(log.note(RefusalReason::Unauthenticated), Some(1));
        assert_eq!(log.note(RefusalReason::MethodNotAllowed), Some(0));
    }
}
