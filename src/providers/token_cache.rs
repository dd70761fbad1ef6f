//! Bearer tokens shared by every replica: InterIntel's OAuth2 access token, Switch's session
//! token, any later one. A provider asks [`TokenCache::token`] (or wraps a call in
//! [`TokenCache::authorized`]); it never keeps tokens itself.
//!
//! A token lives in the store until its expiry minus a margin, with its refresh token. When it
//! is missing or near expiry, one request at a time per credential obtains a new one across
//! every replica: in-process single-flight (a mutex per cache) plus a store lock (`SET NX` with a
//! lifetime); a replica that loses the lock waits for the token the winner stores. A refresh
//! token is tried first; a failed refresh falls back to the credentials. A 401 on a call
//! invalidates the token it used (only if it is still the stored one, so a newer token another
//! replica stored survives). A read ([`TokenCache::authorized`]) is then sent once more with a
//! new token. A payment call ([`TokenCache::authorized_once`]) is not: that a 401 means
//! "refused before processing" is the providers' word, not proof, and where a resend is a new
//! payment (a provider that takes no reference of ours, a one-time OTP) it could pay twice. The
//! payment's outcome is then unknown, and the new token serves the next call.
//!
//! Waiting for another task's or replica's token request is bounded by the lock's lifetime
//! (`lock_for`): a call that gets no token by then is not sent. With the slot wait and the
//! HTTP timeouts this bounds a payment's whole call (see `providers::call_time`).
//!
//! Every token request is counted in `billpay_token_requests_total{provider, grant, outcome}`:
//! a failing credentials grant means no new token, and calls stop once the stored one expires.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::domain::ProviderError;
use crate::gateway::Clock;
use crate::store::{keys, Store};

/// A token as the provider issued it.
pub struct IssuedToken {
    pub access_token: SecretString,
    /// For a refresh grant, when the provider gives one.
    pub refresh_token: Option<SecretString>,
    /// How long the access token is valid.
    pub expires_in: Duration,
}

/// Where tokens come from: the provider's token endpoint.
#[async_trait]
pub trait TokenSource: Send + Sync {
    /// A new token from the configured credentials (OAuth2 password grant, Switch login).
    async fn obtain(&self) -> Result<IssuedToken, ProviderError>;
    /// A new token from a refresh token. Sources without refresh keep the default.
    async fn refresh(&self, _refresh_token: &SecretString) -> Result<IssuedToken, ProviderError> {
        Err(ProviderError::Rejected {
            code: String::new(),
            message: "this provider has no refresh grant".into(),
        })
    }
}

/// The stored form of a token (the store is trusted with it: every replica needs it).
#[derive(Serialize, Deserialize)]
struct StoredToken {
    access_token: String,
    refresh_token: Option<String>,
    /// Unix ms after which the access token must not be used.
    expires_at_ms: i64,
}

/// `[providers.<name>.token]`-style settings of a cache.
#[derive(Debug, Clone, Copy)]
pub struct TokenSettings {
    /// Renew this long before the provider's expiry.
    pub refresh_margin: Duration,
    /// Longest time one token request may hold the cross-replica lock.
    pub lock_for: Duration,
    /// How often a replica waiting for another's token request looks for the result.
    pub poll_every: Duration,
}

impl Default for TokenSettings {
    fn default() -> Self {
        Self {
            refresh_margin: Duration::from_secs(60),
            lock_for: Duration::from_secs(15),
            poll_every: Duration::from_millis(25),
        }
    }
}

/// A token, as handed to a call; compare with [`TokenCache::invalidate`].
#[derive(Clone)]
pub struct Token(SecretString);

impl Token {
    /// The bearer value.
    pub fn secret(&self) -> &str {
        self.0.expose_secret()
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token([redacted])")
    }
}

/// The token of one credential, shared through the store.
pub struct TokenCache {
    store: Arc<dyn Store>,
    /// The provider's name in metrics.
    provider: &'static str,
    key: String,
    lock_key: String,
    settings: TokenSettings,
    clock: Clock,
    /// In-process single flight: one token request per credential per replica.
    flight: tokio::sync::Mutex<()>,
}

impl TokenCache {
    /// A cache for `provider`'s credential named `credential` (for example
    /// "interintel:<client_id>").
    pub fn new(
        store: Arc<dyn Store>,
        provider: &'static str,
        credential: &str,
        settings: TokenSettings,
    ) -> Self {
        let key = keys::token(credential);
        Self {
            lock_key: format!("{key}:lock"),
            key,
            store,
            provider,
            settings,
            clock: Clock::default(),
            flight: tokio::sync::Mutex::new(()),
        }
    }

    /// A valid token: the stored one, or a new one from `source`.
    pub async fn token(&self, source: &dyn TokenSource) -> Result<Token, ProviderError> {
        if let Some(token) = self.fresh().await {
            return Ok(token);
        }
        // Another holder's request is waited for at most the lock's lifetime: a token
        // request longer than that has lost its lock anyway.
        let give_up = tokio::time::Instant::now() + self.settings.lock_for;
        let Ok(_flight) = tokio::time::timeout_at(give_up, self.flight.lock()).await else {
            return Err(self.waited_too_long());
        };
        loop {
            // Another task or replica may have stored one while this one waited.
            if let Some(token) = self.fresh().await {
                return Ok(token);
            }
            let locked = self
                .store
                .set_if_absent(&self.lock_key, b"1", Some(self.settings.lock_for))
                .await
                .map_err(|e| ProviderError::Transport(format!("token store: {e}")))?;
            if locked {
                // Read again under the lock: a winner that stored its token and released the
                // lock between this replica's read and its lock must not be followed by a
                // second token request.
                let stored = self.read().await;
                let result = match stored.as_ref().and_then(|s| self.usable(s)) {
                    Some(token) => Ok(token),
                    None => self.request(source, stored).await,
                };
                let _ = self.store.delete(&self.lock_key).await;
                return result;
            }
            if tokio::time::Instant::now() >= give_up {
                return Err(self.waited_too_long());
            }
            tokio::time::sleep(self.settings.poll_every).await;
        }
    }

    fn waited_too_long(&self) -> ProviderError {
        ProviderError::Transport(format!(
            "no token: another token request held the lock for {} ms",
            self.settings.lock_for.as_millis()
        ))
    }

    /// Forgets `used` if it is still the stored token (keeping its refresh token for the next
    /// request). A newer token stored meanwhile is left alone.
    pub async fn invalidate(&self, used: &Token) {
        let Ok(Some(bytes)) = self.store.get(&self.key).await else {
            return;
        };
        let Ok(mut stored) = serde_json::from_slice::<StoredToken>(&bytes) else {
            return;
        };
        if stored.access_token != used.secret() {
            return;
        }
        stored.expires_at_ms = 0;
        let expired = serde_json::to_vec(&stored).expect("tokens serialize");
        if let Err(e) = self
            .store
            .compare_and_swap(&self.key, &bytes, &expired)
            .await
        {
            tracing::warn!(error = %e, "stale token not invalidated");
        }
    }

    /// Runs `call` with a token; on HTTP 401 invalidates that token and runs `call` once more
    /// with a new one. For reads and other calls a resend cannot turn into a second payment;
    /// payment calls use [`TokenCache::authorized_once`].
    pub async fn authorized<T, F, Fut>(
        &self,
        source: &dyn TokenSource,
        call: F,
    ) -> Result<T, ProviderError>
    where
        F: Fn(Token) -> Fut,
        Fut: std::future::Future<Output = Result<T, ProviderError>>,
    {
        // Without a token nothing is sent: said so, so that a payment ends FAILED ("not
        // sent") rather than waiting for reconciliation to learn what the gateway knows.
        let token = self.token(source).await.map_err(ProviderError::not_sent)?;
        match call(token.clone()).await {
            Err(ProviderError::Auth { status: 401 }) => {
                tracing::info!("provider refused the token (401); obtaining a new one");
                self.invalidate(&token).await;
                // Not `not_sent` here: the request did reach the provider, and that a 401 means
                // "refused before processing" is the providers' word, not proof (a proxy in
                // front could answer it late), so a payment stays PENDING for the provider to
                // settle.
                // Nor is a retry that was not sent (no call slot free, say) "not sent" for
                // the payment: the first request did reach the provider.
                match call(self.token(source).await?).await {
                    Err(ProviderError::NotSent(why)) => Err(*why),
                    other => other,
                }
            }
            other => other,
        }
    }

    /// Runs `call` once with a token: a payment call. On HTTP 401 the token is invalidated (so
    /// the next call obtains a new one) and the 401 is returned; the call is never sent again,
    /// because the request did reach the provider and a resend may be a second payment. Without
    /// a token nothing is sent (`NotSent`), as with [`TokenCache::authorized`].
    pub async fn authorized_once<T, F, Fut>(
        &self,
        source: &dyn TokenSource,
        call: F,
    ) -> Result<T, ProviderError>
    where
        F: FnOnce(Token) -> Fut,
        Fut: std::future::Future<Output = Result<T, ProviderError>>,
    {
        let token = self.token(source).await.map_err(ProviderError::not_sent)?;
        match call(token.clone()).await {
            Err(ProviderError::Auth { status: 401 }) => {
                tracing::warn!(
                    "provider refused the token (401) on a call that is never resent; \
                     the next call obtains a new one"
                );
                self.invalidate(&token).await;
                Err(ProviderError::Auth { status: 401 })
            }
            other => other,
        }
    }

    async fn fresh(&self) -> Option<Token> {
        self.read().await.as_ref().and_then(|s| self.usable(s))
    }

    async fn read(&self) -> Option<StoredToken> {
        match self.store.get(&self.key).await {
            Ok(bytes) => bytes.and_then(|b| serde_json::from_slice(&b).ok()),
            Err(e) => {
                tracing::warn!(error = %e, "token store unreadable");
                None
            }
        }
    }

    fn usable(&self, stored: &StoredToken) -> Option<Token> {
        let renew_at = stored.expires_at_ms - self.settings.refresh_margin.as_millis() as i64;
        (self.clock.now_ms() < renew_at)
            .then(|| Token(SecretString::from(stored.access_token.clone())))
    }

    fn count_request(&self, grant: &str, ok: bool) {
        crate::metrics::global()
            .token_requests
            .get_or_create(&crate::metrics::TokenLabels {
                provider: self.provider.to_owned(),
                grant: grant.to_owned(),
                outcome: if ok { "ok" } else { "failed" }.to_owned(),
            })
            .inc();
    }

    /// Asks the provider (refresh first when there is a refresh token) and stores the answer.
    async fn request(
        &self,
        source: &dyn TokenSource,
        stored: Option<StoredToken>,
    ) -> Result<Token, ProviderError> {
        let refreshed = match stored.and_then(|s| s.refresh_token) {
            Some(refresh) => {
                let result = source.refresh(&SecretString::from(refresh)).await;
                self.count_request("refresh", result.is_ok());
                match result {
                    Ok(issued) => Some(issued),
                    Err(e) => {
                        tracing::info!(error = %e, "token refresh failed; using the credentials");
                        None
                    }
                }
            }
            None => None,
        };
        let issued = match refreshed {
            Some(issued) => issued,
            None => {
                let result = source.obtain().await;
                self.count_request("credentials", result.is_ok());
                if let Err(e) = &result {
                    tracing::warn!(provider = self.provider, error = %e, "token request failed");
                }
                result?
            }
        };
        let stored = StoredToken {
            access_token: issued.access_token.expose_secret().to_owned(),
            refresh_token: issued
                .refresh_token
                .as_ref()
                .map(|r| r.expose_secret().to_owned()),
            expires_at_ms: self.clock.now_ms() + issued.expires_in.as_millis() as i64,
        };
        let bytes = serde_json::to_vec(&stored).expect("tokens serialize");
        // Kept a little past expiry so the refresh token stays usable for a late refresh.
        let keep = issued.expires_in + self.settings.refresh_margin;
        if let Err(e) = self.store.set(&self.key, &bytes, Some(keep)).await {
            tracing::warn!(error = %e, "token not stored; other replicas will request their own");
        }
        Ok(Token(issued.access_token))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::store::memory::MemoryStore;

    /// Issues numbered tokens; refresh works unless told otherwise.
    struct Numbered {
        obtained: AtomicU32,
        refreshed: AtomicU32,
        refresh_fails: bool,
    }

    impl Numbered {
        fn new(refresh_fails: bool) -> Self {
            Self {
                obtained: AtomicU32::new(0),
                refreshed: AtomicU32::new(0),
                refresh_fails,
            }
        }
        fn issue(&self, n: u32, kind: &str) -> IssuedToken {
            IssuedToken {
                access_token: SecretString::from(format!("{kind}-{n}")),
                refresh_token: Some(SecretString::from(format!("refresh-{n}"))),
                expires_in: Duration::from_secs(3600),
            }
        }
    }

    #[async_trait]
    impl TokenSource for Numbered {
        async fn obtain(&self) -> Result<IssuedToken, ProviderError> {
            let n = self.obtained.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok(self.issue(n, "password"))
        }
        async fn refresh(&self, r: &SecretString) -> Result<IssuedToken, ProviderError> {
            assert!(r.expose_secret().starts_with("refresh-"));
            if self.refresh_fails {
                return Err(ProviderError::Auth { status: 400 });
            }
            let n = self.refreshed.fetch_add(1, Ordering::SeqCst) + 1;
            Ok(self.issue(n, "refreshed"))
        }
    }

    fn cache(store: &Arc<dyn Store>) -> TokenCache {
        TokenCache::new(
            store.clone(),
            "test",
            "test:client",
            TokenSettings::default(),
        )
    }

    /// Refuses every grant.
    struct Refusing;

    #[async_trait]
    impl TokenSource for Refusing {
        async fn obtain(&self) -> Result<IssuedToken, ProviderError> {
            Err(ProviderError::Auth { status: 401 })
        }
    }

    /// What the token alert reads: each request counted by grant and outcome.
    #[tokio::test(start_paused = true)]
    async fn token_requests_are_counted_by_grant_and_outcome() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
        let count = |grant: &str, outcome: &str| {
            crate::metrics::global()
                .token_requests
                .get_or_create(&crate::metrics::TokenLabels {
                    provider: "token_metric_test".into(),
                    grant: grant.into(),
                    outcome: outcome.into(),
                })
                .get()
        };
        let cache = TokenCache::new(
            store.clone(),
            "token_metric_test",
            "metric:client",
            TokenSettings::default(),
        );
        let source = Numbered::new(true);
        cache.token(&source).await.unwrap();
        assert_eq!(count("credentials", "ok"), 1);
        // Near expiry: the refresh fails, the credentials serve.
        tokio::time::advance(Duration::from_secs(3541)).await;
        cache.token(&source).await.unwrap();
        assert_eq!(
            (count("refresh", "failed"), count("credentials", "ok")),
            (1, 2)
        );
        let refused = TokenCache::new(
            store,
            "token_metric_test",
            "metric:other",
            TokenSettings::default(),
        );
        refused.token(&Refusing).await.unwrap_err();
        assert_eq!(count("credentials", "failed"), 1);
        assert_eq!(count("refresh", "ok"), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn cached_then_refreshed_near_expiry() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
        let (cache, source) = (cache(&store), Numbered::new(false));
        assert_eq!(cache.token(&source).await.unwrap().secret(), "password-1");
        tokio::time::advance(Duration::from_secs(3000)).await;
        assert_eq!(cache.token(&source).await.unwrap().secret(), "password-1");
        // Inside the 60 s margin before expiry: refreshed with the refresh grant.
        tokio::time::advance(Duration::from_secs(541)).await;
        assert_eq!(cache.token(&source).await.unwrap().secret(), "refreshed-1");
        assert_eq!(source.obtained.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_refresh_falls_back_to_the_credentials() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
        let (cache, source) = (cache(&store), Numbered::new(true));
        cache.token(&source).await.unwrap();
        tokio::time::advance(Duration::from_secs(3590)).await;
        assert_eq!(cache.token(&source).await.unwrap().secret(), "password-2");
    }

    #[tokio::test(start_paused = true)]
    async fn a_401_invalidates_only_the_stored_token_and_retries_once() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
        let (cache, source) = (cache(&store), Numbered::new(false));
        let calls = AtomicU32::new(0);
        let answer = cache
            .authorized(&source, |token| {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    match n {
                        0 => Err(ProviderError::Auth { status: 401 }),
                        _ => Ok(token.secret().to_owned()),
                    }
                }
            })
            .await
            .unwrap();
        assert_eq!(answer, "refreshed-1");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // An old token's 401 leaves the newer stored token alone.
        cache
            .invalidate(&Token(SecretString::from("password-1")))
            .await;
        assert_eq!(cache.token(&source).await.unwrap().secret(), "refreshed-1");
        // A second 401 is the provider's answer, not retried again.
        let twice = cache
            .authorized(&source, |_| async {
                Err::<(), _>(ProviderError::Auth { status: 401 })
            })
            .await;
        assert!(matches!(twice, Err(ProviderError::Auth { status: 401 })));
    }

    /// A token request of another replica that holds the lock and never finishes is waited
    /// for at most `lock_for`: then the call gives up, not sent, without a request of its own.
    #[tokio::test(start_paused = true)]
    async fn a_stuck_token_lock_is_waited_for_at_most_its_lifetime() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
        let (cache, source) = (cache(&store), Numbered::new(false));
        // Held without a lifetime: a stuck holder.
        assert!(store
            .set_if_absent(&cache.lock_key, b"1", None)
            .await
            .unwrap());
        let started = tokio::time::Instant::now();
        let calls = AtomicU32::new(0);
        let refused = cache
            .authorized(&source, |_| {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Ok(()) }
            })
            .await;
        assert!(
            matches!(&refused, Err(ProviderError::NotSent(_))),
            "{refused:?}"
        );
        assert!(started.elapsed() >= TokenSettings::default().lock_for);
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        assert_eq!(source.obtained.load(Ordering::SeqCst), 0);
    }

    /// After a 401 the first request did reach the provider: a retry that is not sent does
    /// not make the whole call "not sent" (a payment would end FAILED while the provider may
    /// hold it).
    #[tokio::test(start_paused = true)]
    async fn a_retry_after_401_that_is_not_sent_is_not_reported_as_not_sent() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
        let (cache, source) = (cache(&store), Numbered::new(false));
        let calls = AtomicU32::new(0);
        let answer = cache
            .authorized(&source, |_| {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    match n {
                        0 => Err::<(), _>(ProviderError::Auth { status: 401 }),
                        _ => Err(ProviderError::Transport("no free call slot".into()).not_sent()),
                    }
                }
            })
            .await;
        assert!(
            matches!(&answer, Err(ProviderError::Transport(_))),
            "{answer:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_401_on_a_call_made_once_is_not_resent_and_the_next_call_gets_a_new_token() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
        let (cache, source) = (cache(&store), Numbered::new(false));
        let calls = AtomicU32::new(0);
        let refused = cache
            .authorized_once(&source, |token| {
                calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    assert_eq!(token.secret(), "password-1");
                    Err::<(), _>(ProviderError::Auth { status: 401 })
                }
            })
            .await;
        assert!(matches!(refused, Err(ProviderError::Auth { status: 401 })));
        assert_eq!(calls.load(Ordering::SeqCst), 1, "never sent again");
        // The refused token is gone: the next call runs with a new one (refresh grant first).
        let next = cache
            .authorized_once(&source, |token| async move {
                Ok::<_, ProviderError>(token.secret().to_owned())
            })
            .await
            .unwrap();
        assert_eq!(next, "refreshed-1");
        assert_eq!(source.obtained.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_cold_requests_across_caches_make_one_token_request() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
        let source = Arc::new(Numbered::new(false));
        // Two caches over one store stand for two replicas.
        let replicas = [Arc::new(cache(&store)), Arc::new(cache(&store))];
        let mut tasks = Vec::new();
        for i in 0..200 {
            let (cache, source) = (replicas[i % 2].clone(), source.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .token(source.as_ref())
                    .await
                    .unwrap()
                    .secret()
                    .to_owned()
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), "password-1");
        }
        assert_eq!(source.obtained.load(Ordering::SeqCst), 1);
    }
}
