//! Request validation: collects every bad field of a request before anything is called, so the
//! caller gets all `BadRequest` field violations at once.

use crate::domain::{Currency, Money, ProviderId};
use crate::error::{FieldViolation, GatewayError};
use crate::pb;

/// Longest accepted `request_id`.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// Collected field violations.
#[derive(Default)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    /// Records a violation of `field`.
    pub fn add(&mut self, field: &str, description: impl Into<String>) {
        self.0.push(FieldViolation::new(field, description));
    }

    /// A required provider.
    pub fn provider(&mut self, field: &str, value: i32) -> Option<ProviderId> {
        match pb::Provider::try_from(value) {
            Ok(p) => match super::convert::provider_id(p) {
                Some(id) => Some(id),
                None => {
                    self.add(field, "required");
                    None
                }
            },
            Err(_) => {
                self.add(field, format!("unknown provider {value}"));
                None
            }
        }
    }

    /// Required text of at most `max_len` characters, without control characters.
    pub fn text(&mut self, field: &str, value: &str, max_len: usize) {
        if value.trim().is_empty() {
            self.add(field, "required");
        } else {
            self.optional_text(field, value, max_len);
        }
    }

    /// Optional text of at most `max_len` characters, without control characters.
    pub fn optional_text(&mut self, field: &str, value: &str, max_len: usize) {
        if value.chars().count() > max_len {
            self.add(field, format!("at most {max_len} characters"));
        } else if value.chars().any(char::is_control) {
            self.add(field, "must not contain control characters");
        }
    }

    /// An idempotency key: 1-128 of `[A-Za-z0-9._:-]`.
    pub fn request_id(&mut self, value: &str) {
        let ok_chars = value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
        if value.is_empty() {
            self.add("request_id", "required: the idempotency key of this call");
        } else if value.len() > MAX_REQUEST_ID_LEN || !ok_chars {
            self.add(
                "request_id",
                format!("1-{MAX_REQUEST_ID_LEN} characters of A-Z a-z 0-9 . _ : -"),
            );
        }
    }

    /// A required, positive amount in a known currency.
    pub fn amount(&mut self, field: &str, value: Option<&pb::Money>) -> Option<Money> {
        let Some(value) = value else {
            self.add(field, "required");
            return None;
        };
        let currency = Currency::from_code(&value.currency_code);
        if currency.is_none() {
            self.add(
                &format!("{field}.currency_code"),
                "must be one of NGN, KES, UGX (upper case)",
            );
        }
        if value.minor_units <= 0 {
            self.add(&format!("{field}.minor_units"), "must be greater than zero");
        }
        currency
            .filter(|_| value.minor_units > 0)
            .map(|c| Money::new(c, value.minor_units))
    }

    /// `Err` with every violation, or `Ok` when there is none.
    pub fn finish(self) -> Result<(), GatewayError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(GatewayError::InvalidRequest(self.0))
        }
    }
}
