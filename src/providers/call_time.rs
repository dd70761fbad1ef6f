//! How long one payment call of each configured provider can take at most, from its
//! configuration: the wait for another holder's token request (the token lock), the token
//! request itself, the payment request, and the one retry after a 401 with a new token. Each
//! HTTP request is bounded by the wait for a call slot (`limits.max_slot_wait_ms`) plus its
//! whole-request timeout (`timeout_ms`, which includes connecting).
//!
//! A payment whose in-flight mark is older than `payments.in_flight_expiry_ms` is taken as
//! abandoned by a stopped replica: reconciliation asks about it and an operator may resolve it.
//! So that this never happens to a call still running, the gateway refuses at start a
//! configuration whose `in_flight_expiry_ms` is shorter than the longest call computed here.
//! Store round trips around the call are not counted: the expiry needs some room above it.

use crate::config::ProvidersConfig;
use crate::domain::ProviderId;
use crate::providers::{guard::CallLimits, token_cache::TokenSettings};

/// One HTTP request at most: the wait for a call slot, then the whole-request timeout.
fn request_ms(limits: &CallLimits, timeout_ms: u64) -> u64 {
    limits.max_slot_wait_ms.saturating_add(timeout_ms)
}

/// A call with a bearer token: wait for the lock (`lock_ms`), `token_requests` HTTP requests
/// for the token, the call itself; after a 401 all of it once more.
fn with_token_ms(lock_ms: u64, token_requests: u64, request: u64) -> u64 {
    let once = lock_ms.saturating_add(request.saturating_mul(token_requests + 1));
    once.saturating_mul(2)
}

/// The longest payment call of each configured provider, milliseconds.
pub fn longest_payment_calls(providers: &ProvidersConfig) -> Vec<(ProviderId, u64)> {
    let mut out = Vec::new();
    if let Some(c) = &providers.interswitch {
        // Signed requests, no token: one request.
        out.push((ProviderId::Interswitch, request_ms(&c.limits, c.timeout_ms)));
    }
    if let Some(c) = &providers.onepipe {
        out.push((ProviderId::OnePipe, request_ms(&c.limits, c.timeout_ms)));
    }
    if let Some(c) = &providers.intelworld_ip2 {
        out.push((
            ProviderId::IntelworldIp2,
            request_ms(&c.limits, c.timeout_ms),
        ));
    }
    if let Some(c) = &providers.switch {
        let request = request_ms(&c.limits, c.timeout_ms);
        let longest = match c.login {
            // The login call issues the session (Switch has no refresh grant): one request.
            Some(_) => with_token_ms(
                TokenSettings::default().lock_for.as_millis() as u64,
                1,
                request,
            ),
            // A static session token: the call and its retry after a 401.
            None => request.saturating_mul(2),
        };
        out.push((ProviderId::Switch, longest));
    }
    if let Some(c) = &providers.interintel {
        let request = request_ms(&c.limits, c.timeout_ms);
        // The refresh grant, then the password grant when it fails: two requests.
        out.push((
            ProviderId::InterIntel,
            with_token_ms(c.token_lock_ms, 2, request),
        ));
    }
    out
}

/// Refuses an `in_flight_expiry_ms` shorter than some provider's longest payment call.
pub fn check(providers: &ProvidersConfig, in_flight_expiry_ms: u64) -> Result<(), String> {
    for (provider, longest) in longest_payment_calls(providers) {
        if in_flight_expiry_ms < longest {
            return Err(format!(
                "payments.in_flight_expiry_ms ({in_flight_expiry_ms}) is shorter than the longest \
                 {provider} payment call ({longest} ms: token lock, token request, call and the \
                 retry after a 401, each request its limits.max_slot_wait_ms plus timeout_ms): \
                 a payment still being sent would be taken as abandoned. Raise it, or lower the \
                 provider's timeouts"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::PaymentSettings;

    fn providers(text: &str) -> ProvidersConfig {
        toml::from_str(text).expect("provider config")
    }

    const INTERINTEL: &str = r#"
[interintel]
base_url = "https://interintel.example"
client_id = "c"
username = "u"
password = "p"
"#;

    /// The defaults fit: every provider's longest call is below the default expiry.
    #[test]
    fn the_default_expiry_outlasts_every_default_call() {
        let all = providers(&format!(
            "{INTERINTEL}
[switch]
base_url = \"https://switch.example\"
client_id = \"c\"
checksum = \"none\"
[switch.login]
username = \"u\"
password = \"p\"
"
        ));
        let longest = longest_payment_calls(&all);
        assert_eq!(longest.len(), 2);
        // InterIntel: 2 x (15 s lock + 3 x (2 s slot + 20 s timeout)).
        assert!(
            longest.contains(&(ProviderId::InterIntel, 162_000)),
            "{longest:?}"
        );
        // Switch: 2 x (15 s lock + 2 x (2 s slot + 30 s timeout)).
        assert!(
            longest.contains(&(ProviderId::Switch, 158_000)),
            "{longest:?}"
        );
        assert!(check(&all, PaymentSettings::default().in_flight_expiry_ms).is_ok());
    }

    /// An expiry shorter than a provider's longest call is refused, naming the provider.
    #[test]
    fn an_expiry_shorter_than_a_call_is_refused() {
        let interintel = providers(INTERINTEL);
        let e = check(&interintel, 60_000).unwrap_err();
        assert!(e.contains("interintel") && e.contains("162000"), "{e}");
        assert!(check(&interintel, 162_000).is_ok());
        // Longer timeouts or slot waits raise the bound.
        let slow = providers(&format!(
            "{INTERINTEL}timeout_ms = 60000\n[interintel.limits]\nmax_slot_wait_ms = 10000\n"
        ));
        assert!(check(&slow, PaymentSettings::default().in_flight_expiry_ms).is_err());
        assert!(check(&ProvidersConfig::default(), 1).is_ok());
    }
}
