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
            self.add("request_id", "required (the idempotency key of this call)");
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

    /// A timestamp as unix milliseconds; a violation when it is not a valid time after 1970
    /// (negative seconds, nanos outside 0..1e9).
    pub fn timestamp_ms(&mut self, field: &str, value: &prost_types::Timestamp) -> Option<i64> {
        let valid = value.seconds >= 0
            && value.seconds < 253_402_300_800
            && (0..1_000_000_000).contains(&value.nanos);
        if !valid {
            self.add(
                field,
                "must be a valid time after 1970-01-01 (seconds >= 0, nanos 0 to 999999999)",
            );
            return None;
        }
        Some(value.seconds * 1000 + i64::from(value.nanos) / 1_000_000)
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

/// The creation time (unix ms) a UUIDv7 `request_id` carries in its first 48 bits; `None` for
/// any other `request_id` (another UUID version, or not a UUID).
pub fn uuid_v7_ms(request_id: &str) -> Option<i64> {
    let uuid = uuid::Uuid::try_parse(request_id).ok()?;
    if uuid.get_version_num() != 7 {
        return None;
    }
    let bytes = uuid.as_bytes();
    let ms = bytes[..6]
        .iter()
        .fold(0i64, |acc, b| (acc << 8) | i64::from(*b));
    Some(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uuid_v7_request_id_carries_its_creation_time_and_others_do_not() {
        // RFC 9562 appendix A.6: 017F22E2-79B0-7CC3-98C4-DC0C0C07398F, 2022-02-22T19:22:22Z.
        assert_eq!(
            uuid_v7_ms("017f22e2-79b0-7cc3-98c4-dc0c0c07398f"),
            Some(1_645_557_742_000)
        );
        assert_eq!(
            uuid_v7_ms("919108f7-52d1-4320-9bac-f847db4148a8"),
            None,
            "v4"
        );
        assert_eq!(uuid_v7_ms("order-17"), None);
        let mut v = Violations::default();
        let at = prost_types::Timestamp {
            seconds: 1_645_557_742,
            nanos: 5_000_000,
        };
        assert_eq!(v.timestamp_ms("t", &at), Some(1_645_557_742_005));
        let bad = prost_types::Timestamp {
            seconds: 1,
            nanos: -1,
        };
        assert_eq!(v.timestamp_ms("t", &bad), None);
        assert!(v.finish().is_err());
    }
}
