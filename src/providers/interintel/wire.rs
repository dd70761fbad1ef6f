//! InterIntel JSON on the wire: the token grant bodies and answer, the one request body the four
//! services share, their `{response_status, response}` answer, KES amount strings and the
//! `scheduled_send` date text. Conversions are exact: integers only, no floats.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize};

use crate::domain::{Currency, Money, ProviderError};

/// `POST {token_path}` with the password grant.
#[derive(Serialize)]
pub struct PasswordGrant<'a> {
    pub client_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<&'a str>,
    pub username: &'a str,
    pub password: &'a str,
    pub grant_type: &'static str,
}

/// `POST {token_path}` with the refresh grant, in the form of the sibling Airtime API
/// (`client_id`, `grant_type = refresh_token`, `refresh_token`): the billers README's refresh
/// example sends no refresh token at all, which cannot be right (docs/providers.md §1.3).
#[derive(Serialize)]
pub struct RefreshGrant<'a> {
    pub client_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<&'a str>,
    pub grant_type: &'static str,
    pub refresh_token: &'a str,
}

/// The token endpoint's answer. No `Debug`: it holds tokens.
#[derive(Deserialize)]
pub struct TokenAnswer {
    pub access_token: SecretString,
    #[serde(default, deserialize_with = "seconds")]
    pub expires_in: Option<u64>,
    #[serde(default)]
    pub refresh_token: Option<SecretString>,
}

/// `expires_in` as a number or a numeric string.
fn seconds<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Int(u64),
        Text(String),
        Null(()),
    }
    Ok(match Raw::deserialize(d)? {
        Raw::Int(n) => Some(n),
        Raw::Text(s) => s.trim().parse().ok(),
        Raw::Null(()) => None,
    })
}

/// `credentials` of the 2023 API generation: "Array of username and password". Sent as the
/// object `{username, password}` the legacy PHP samples build. No `Debug`: it holds the
/// password.
pub struct BodyCredentials<'a> {
    pub username: &'a str,
    pub password: &'a SecretString,
}

impl Serialize for BodyCredentials<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry("username", self.username)?;
        map.serialize_entry("password", self.password.expose_secret())?;
        map.end()
    }
}

/// The body every service takes (the README copies one table to all four); each operation
/// fills what it has. `gateway_host` and `credentials` only when configured.
#[derive(Serialize, Default)]
pub struct ServiceRequest<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway_host: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credentials: Option<BodyCredentials<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_number: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount: Option<String>,
    pub product_item_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ext_outbound_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduled_send: Option<String>,
}

/// Every service's answer: `response_status` ("00" is success) and `response`, a message.
/// The other fields are kept to read a float balance from when the deployment names one.
#[derive(Deserialize, Default)]
pub struct ServiceAnswer {
    #[serde(default, deserialize_with = "text")]
    pub response_status: String,
    #[serde(default, deserialize_with = "text")]
    pub response: String,
    /// The payment's own status when a status answer carries one (the sibling Airtime API
    /// separates it from the query's `response_status`).
    #[serde(default, deserialize_with = "text")]
    pub overall_status: String,
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

impl ServiceAnswer {
    /// The value of field `name` as text (strings verbatim, numbers as written).
    pub fn field(&self, name: &str) -> Option<String> {
        match name {
            "response" => Some(self.response.clone()),
            "response_status" => Some(self.response_status.clone()),
            _ => match self.other.get(name)? {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            },
        }
    }
}

/// A string or a number, as text (codes like `00` must stay strings; a number is taken as
/// written).
fn text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => s,
        serde_json::Value::Number(n) => n.to_string(),
        _ => String::new(),
    })
}

/// What to do with an amount that has cents (`[providers.interintel] cents`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cents {
    /// Whole shillings only ("10", the documented sample): an amount with cents is refused
    /// before anything is sent. The default, because no InterIntel sample shows a decimal.
    #[default]
    Refuse,
    /// Shillings with two decimals when there are cents ("10.05"), whole shillings otherwise.
    Decimal,
}

/// `amount` as InterIntel takes it: a string of KES shillings, from minor units (cents).
pub fn kes_amount(money: Money, cents: Cents) -> Result<String, ProviderError> {
    let unrepresentable = |reason: String| ProviderError::Unrepresentable {
        field: "amount.minor_units",
        reason,
    };
    if money.currency != Currency::Kes {
        return Err(ProviderError::Unrepresentable {
            field: "amount.currency_code",
            reason: format!("InterIntel pays in KES, not {}", money.currency.code()),
        });
    }
    if money.minor_units <= 0 {
        return Err(unrepresentable("must be greater than zero".into()));
    }
    let (shillings, rest) = (money.minor_units / 100, money.minor_units % 100);
    match (rest, cents) {
        (0, _) => Ok(shillings.to_string()),
        (_, Cents::Decimal) => Ok(format!("{shillings}.{rest:02}")),
        (_, Cents::Refuse) => Err(unrepresentable(format!(
            "InterIntel takes whole shillings; {} cents is KES {shillings}.{rest:02}",
            money.minor_units
        ))),
    }
}

/// Parses a KES amount the provider wrote in shillings ("1500", "1500.5", "1,500.00") to
/// cents, exactly. `None` for anything else (signs, more than two decimals, text, overflow).
pub fn parse_kes(text: &str) -> Option<Money> {
    let text: String = text.trim().chars().filter(|c| *c != ',').collect();
    let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
    if whole.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || fraction.len() > 2
        || !fraction.bytes().all(|b| b.is_ascii_digit())
        || (text.contains('.') && fraction.is_empty())
    {
        return None;
    }
    let cents = match fraction.len() {
        0 => 0,
        1 => fraction.parse::<i64>().ok()? * 10,
        _ => fraction.parse::<i64>().ok()?,
    };
    let minor = whole
        .parse::<i64>()
        .ok()?
        .checked_mul(100)?
        .checked_add(cents)?;
    Some(Money::new(Currency::Kes, minor))
}

/// A fixed offset from UTC, seconds east (`[providers.interintel] schedule_utc_offset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtcOffset(pub i32);

impl UtcOffset {
    /// Parses "+03:00", "-05:30", "Z" or "+00:00".
    pub fn parse(text: &str) -> Option<Self> {
        if text == "Z" {
            return Some(Self(0));
        }
        let (sign, rest) = match text.as_bytes().first()? {
            b'+' => (1, &text[1..]),
            b'-' => (-1, &text[1..]),
            _ => return None,
        };
        let (h, m) = rest.split_once(':')?;
        if h.len() != 2 || m.len() != 2 {
            return None;
        }
        let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
        (h <= 14 && m < 60).then_some(Self(sign * (h * 3600 + m * 60)))
    }
}

/// `scheduled_send` text for unix milliseconds `at_ms`, in the zone `offset`: `d/m/Y h:M am/pm`
/// as the README's example `17/09/2016 6:31 am` writes it: day and month with two digits, the
/// year with four, the hour on a 12-hour clock without padding (midnight is `12:00 am`, noon
/// `12:00 pm`), minutes with two digits, lower-case am/pm. Seconds are dropped (the format
/// has none). `Unrepresentable` before year 1 or after year 9999.
pub fn scheduled_send(at_ms: i64, offset: UtcOffset) -> Result<String, ProviderError> {
    let local_secs = at_ms.div_euclid(1000) + i64::from(offset.0);
    let (days, secs_of_day) = (local_secs.div_euclid(86_400), local_secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    if !(1..=9999).contains(&year) {
        return Err(ProviderError::Unrepresentable {
            field: "interintel.scheduled_send_time",
            reason: "must be between the years 1 and 9999".into(),
        });
    }
    let (hour, minute) = (secs_of_day / 3600, secs_of_day % 3600 / 60);
    let (hour12, half) = match hour {
        0 => (12, "am"),
        1..=11 => (hour, "am"),
        12 => (12, "pm"),
        _ => (hour - 12, "pm"),
    };
    Ok(format!(
        "{day:02}/{month:02}/{year:04} {hour12}:{minute:02} {half}"
    ))
}

/// Year, month (1-12) and day (1-31) of a count of days since 1970-01-01 in the proleptic
/// Gregorian calendar (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Days since 1970-01-01 of a civil date (the inverse of [`civil_from_days`]), for parsing
/// `scheduled_send` in the simulator and the tests.
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses `scheduled_send` text back to unix milliseconds in the zone `offset` (the simulator
/// checks what it receives with it). Accepts unpadded day, month and hour.
pub fn parse_scheduled_send(text: &str, offset: UtcOffset) -> Option<i64> {
    let mut parts = text.split(' ');
    let (date, time, half) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let mut d = date.split('/').map(|p| p.parse::<i64>().ok());
    let (day, month, year) = (d.next()??, d.next()??, d.next()??);
    let (h, m) = time.split_once(':')?;
    let (hour12, minute): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || !(1..=12).contains(&hour12)
        || !(0..60).contains(&minute)
        || m.len() != 2
    {
        return None;
    }
    let hour = match half {
        "am" => hour12 % 12,
        "pm" => hour12 % 12 + 12,
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    if civil_from_days(days) != (year, month, day) {
        return None;
    }
    Some((days * 86_400 + hour * 3600 + minute * 60 - i64::from(offset.0)) * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kes(minor: i64) -> Money {
        Money::new(Currency::Kes, minor)
    }

    #[test]
    fn amounts_are_exact_shilling_strings() {
        assert_eq!(kes_amount(kes(100), Cents::Refuse).unwrap(), "1");
        assert_eq!(kes_amount(kes(1_000), Cents::Refuse).unwrap(), "10");
        assert_eq!(
            kes_amount(kes(9_223_372_036_854_775_800), Cents::Refuse).unwrap(),
            "92233720368547758"
        );
        assert!(matches!(
            kes_amount(kes(1), Cents::Refuse),
            Err(ProviderError::Unrepresentable {
                field: "amount.minor_units",
                ..
            })
        ));
        assert!(kes_amount(kes(i64::MAX), Cents::Refuse).is_err());
        assert_eq!(kes_amount(kes(1), Cents::Decimal).unwrap(), "0.01");
        assert_eq!(kes_amount(kes(1_005), Cents::Decimal).unwrap(), "10.05");
        assert_eq!(kes_amount(kes(1_000), Cents::Decimal).unwrap(), "10");
        assert_eq!(
            kes_amount(kes(i64::MAX), Cents::Decimal).unwrap(),
            "92233720368547758.07"
        );
        assert!(kes_amount(kes(0), Cents::Decimal).is_err());
        assert!(kes_amount(Money::new(Currency::Ngn, 100), Cents::Decimal).is_err());
    }

    #[test]
    fn provider_amounts_parse_exactly() {
        assert_eq!(parse_kes("1500"), Some(kes(150_000)));
        assert_eq!(parse_kes("1,500.5"), Some(kes(150_050)));
        assert_eq!(parse_kes("0.01"), Some(kes(1)));
        assert_eq!(parse_kes(" 92233720368547758.07 "), Some(kes(i64::MAX)));
        for bad in [
            "",
            "-1",
            "1.",
            ".5",
            "1.005",
            "abc",
            "92233720368547758.08",
            "1e3",
        ] {
            assert_eq!(parse_kes(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn scheduled_send_text_in_the_zone() {
        let eat = UtcOffset::parse("+03:00").unwrap();
        // 2026-01-04T21:00:00Z is midnight of 5 January in Nairobi.
        let midnight = 1_767_560_400_000;
        assert_eq!(
            scheduled_send(midnight, eat).unwrap(),
            "05/01/2026 12:00 am"
        );
        assert_eq!(
            scheduled_send(midnight + 12 * 3_600_000, eat).unwrap(),
            "05/01/2026 12:00 pm"
        );
        assert_eq!(
            scheduled_send(midnight + (13 * 60 + 7) * 60_000 + 59_999, eat).unwrap(),
            "05/01/2026 1:07 pm"
        );
        assert_eq!(
            scheduled_send(midnight - 60_000, eat).unwrap(),
            "04/01/2026 11:59 pm"
        );
        assert_eq!(
            scheduled_send(midnight, UtcOffset(0)).unwrap(),
            "04/01/2026 9:00 pm"
        );
        for at in [midnight, midnight + 43_200_000, midnight + 3_123_456_000] {
            let text = scheduled_send(at, eat).unwrap();
            assert_eq!(parse_scheduled_send(&text, eat), Some(at - at % 60_000));
        }
        assert!(scheduled_send(i64::MAX, eat).is_err());
        assert_eq!(UtcOffset::parse("-05:30"), Some(UtcOffset(-19_800)));
        for bad in ["03:00", "+3:00", "+03", "+15:00", "EAT"] {
            assert_eq!(UtcOffset::parse(bad), None, "{bad}");
        }
    }
}
