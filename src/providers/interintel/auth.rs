//! InterIntel OAuth2 as a [`TokenSource`] for the shared token cache: the password grant
//! (`client_id`, `username`, `password`, `grant_type = password`) and the refresh grant, both
//! JSON `POST`s to the configured token URL. The cache decides when to call which; this module
//! only speaks the grants. Nothing here logs a body: both directions carry secrets.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::wire::{PasswordGrant, RefreshGrant, TokenAnswer};
use crate::domain::ProviderError;
use crate::providers::{
    guard::CallGuard,
    http::{self, RawResponse},
    token_cache::{IssuedToken, TokenSource},
};

/// Whether to try the refresh grant before the password grant (`[providers.interintel]
/// refresh`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Refresh {
    /// `grant_type = refresh_token` with the stored refresh token (the Airtime API's form);
    /// a failure falls back to the password grant.
    #[default]
    RefreshToken,
    /// Always the password grant.
    Never,
}

/// Lifetime assumed when the token answer has no `expires_in` (the README says 36000 s).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(36_000);

/// The token endpoint with the credentials. No `Debug`: it holds the password.
pub struct OAuth {
    pub(super) http: reqwest::Client,
    pub(super) token_url: String,
    pub(super) client_id: String,
    pub(super) client_secret: Option<SecretString>,
    pub(super) username: String,
    pub(super) password: SecretString,
    pub(super) refresh: Refresh,
    pub(super) guard: Arc<CallGuard>,
}

impl OAuth {
    async fn grant(
        &self,
        operation: &'static str,
        body: Vec<u8>,
    ) -> Result<IssuedToken, ProviderError> {
        let request = self
            .http
            .post(&self.token_url)
            .header("Content-Type", "application/json")
            .header("Accept", "application/json")
            .body(body);
        let raw = self
            .guard
            .run(
                http::send("interintel", operation, request),
                http::transport_failure,
            )
            .await?;
        issued(raw, operation)
    }
}

/// Reads a token answer. The error never quotes the body: it may hold a token.
fn issued(raw: RawResponse, operation: &str) -> Result<IssuedToken, ProviderError> {
    match raw.status {
        200..=299 => {}
        400 | 401 | 403 => return Err(ProviderError::Auth { status: raw.status }),
        status => return Err(ProviderError::Upstream { status }),
    }
    let answer: TokenAnswer = serde_json::from_slice(&raw.body).map_err(|e| {
        ProviderError::Unreadable(format!(
            "{operation}: token answer unreadable at line {} column {}",
            e.line(),
            e.column()
        ))
    })?;
    if answer.access_token.expose_secret().is_empty() {
        return Err(ProviderError::Unreadable(format!(
            "{operation}: token answer without access_token"
        )));
    }
    Ok(IssuedToken {
        access_token: answer.access_token,
        refresh_token: answer
            .refresh_token
            .filter(|r| !r.expose_secret().is_empty()),
        expires_in: answer
            .expires_in
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_LIFETIME),
    })
}

#[async_trait]
impl TokenSource for OAuth {
    async fn obtain(&self) -> Result<IssuedToken, ProviderError> {
        let body = serde_json::to_vec(&PasswordGrant {
            client_id: &self.client_id,
            client_secret: self.client_secret.as_ref().map(|s| s.expose_secret()),
            username: &self.username,
            password: self.password.expose_secret(),
            grant_type: "password",
        })
        .expect("a grant serializes");
        self.grant("token", body).await
    }

    async fn refresh(&self, refresh_token: &SecretString) -> Result<IssuedToken, ProviderError> {
        if self.refresh == Refresh::Never {
            return Err(ProviderError::Rejected {
                code: String::new(),
                message: "refresh grant disabled by configuration".into(),
            });
        }
        let body = serde_json::to_vec(&RefreshGrant {
            client_id: &self.client_id,
            client_secret: self.client_secret.as_ref().map(|s| s.expose_secret()),
            grant_type: "refresh_token",
            refresh_token: refresh_token.expose_secret(),
        })
        .expect("a grant serializes");
        self.grant("token_refresh", body).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(status: u16, body: &str) -> RawResponse {
        RawResponse {
            status,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn token_answers_are_read_without_quoting_them() {
        let t = issued(
            raw(
                200,
                r#"{"access_token":"a1","expires_in":"3600","token_type":"Bearer","scope":"read write groups","refresh_token":"r1"}"#,
            ),
            "token",
        )
        .unwrap();
        assert_eq!(t.access_token.expose_secret(), "a1");
        assert_eq!(t.refresh_token.unwrap().expose_secret(), "r1");
        assert_eq!(t.expires_in, Duration::from_secs(3600));
        let default = issued(raw(200, r#"{"access_token":"a2"}"#), "token").unwrap();
        assert_eq!(default.expires_in, DEFAULT_LIFETIME);
        assert!(default.refresh_token.is_none());
        let e = issued(
            raw(200, r#"{"access_token":"secret-a3","expires_in":[]}"#),
            "t",
        );
        let Err(e) = e else { panic!("unreadable") };
        assert!(!e.to_string().contains("secret-a3"), "{e}");
        assert!(matches!(
            issued(raw(401, "{}"), "t"),
            Err(ProviderError::Auth { status: 401 })
        ));
        assert!(matches!(
            issued(raw(502, ""), "t"),
            Err(ProviderError::Upstream { status: 502 })
        ));
    }
}
