//! Switch bill-payment JSON as sent and received, its mapping to domain types, and the exact
//! conversions Switch needs: kobo to and from naira decimal strings ("14600.00"), and unix
//! milliseconds to and from the ISO-8601 UTC times Switch shows ("2019-03-27T13:35:47.160Z").
//! Switch sends ids and amounts as strings or numbers (`"vat": 4`), so every field read is
//! lenient; what the gateway sends is exact.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

use crate::domain::{catalog::InputField, Biller, Category, Currency, Money, Product, SavedBill};

/// The input field that carries the customer's number (decoder, meter, phone): the order's
/// `customer_id`.
pub const CUSTOMER_FIELD: &str = "consumer_id_field";

/// Reads a JSON string, number or bool as a string; null or absent as empty.
fn loose<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => s,
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::Bool(b) => b.to_string(),
        _ => String::new(),
    })
}

/// Reads a value of type `T`, or its default when the JSON is null or of another shape.
fn lenient<'de, D: Deserializer<'de>, T: serde::de::DeserializeOwned + Default>(
    d: D,
) -> Result<T, D::Error> {
    Ok(serde_json::from_value(serde_json::Value::deserialize(d)?).unwrap_or_default())
}

/// Kobo as a naira decimal string with exactly two decimals: 1 -> "0.01", 1460000 ->
/// "14600.00". `None` for a negative amount (Switch has no use for one).
pub fn naira(kobo: i64) -> Option<String> {
    (kobo >= 0).then(|| format!("{}.{:02}", kobo / 100, kobo % 100))
}

/// Parses a naira amount ("14600.00", "80", "0.5", `4`) to kobo, exactly. Refuses signs,
/// exponents, blanks, more than two non-zero decimals and values beyond i64.
pub fn parse_naira(text: &str) -> Option<i64> {
    let text = text.trim();
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Digits past the kobo must be zeros: "1.000" is exact, "1.005" is not.
    if fraction.len() > 2 && !fraction[2..].bytes().all(|b| b == b'0') {
        return None;
    }
    let mut kobo_digits: String = fraction.chars().take(2).collect();
    while kobo_digits.len() < 2 {
        kobo_digits.push('0');
    }
    let whole: i64 = whole.parse().ok()?;
    let kobo: i64 = kobo_digits.parse().ok()?;
    whole.checked_mul(100)?.checked_add(kobo)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// Unix milliseconds as ISO-8601 UTC with milliseconds: "2026-12-01T08:00:00.000Z", the form
/// Switch's own timestamps take (its `start_date` format is not documented: an assumption).
pub fn iso_time(ms: i64) -> String {
    let (days, rest) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, mo, d) = civil_from_days(days);
    let (h, mi, s, milli) = (
        rest / 3_600_000,
        rest / 60_000 % 60,
        rest / 1000 % 60,
        rest % 1000,
    );
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
}

/// Parses "YYYY-MM-DDTHH:MM:SS[.fff]Z" (UTC only) to unix milliseconds.
pub fn parse_iso_time(text: &str) -> Option<i64> {
    let text = text.trim().strip_suffix('Z')?;
    let (date, time) = text.split_once('T')?;
    let num = |s: &str| -> Option<i64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let mut date_parts = date.splitn(3, '-');
    let (y, mo, d) = (
        num(date_parts.next()?)?,
        num(date_parts.next()?)?,
        num(date_parts.next()?)?,
    );
    let (hms, fraction) = time.split_once('.').unwrap_or((time, ""));
    let mut time_parts = hms.splitn(3, ':');
    let (h, mi, s) = (
        num(time_parts.next()?)?,
        num(time_parts.next()?)?,
        num(time_parts.next()?)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let milli = if fraction.is_empty() {
        0
    } else {
        let digits: String = fraction.chars().chain("00".chars()).take(3).collect();
        num(&digits)?
    };
    Some((days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s) * 1000 + milli)
}

/// Reads `T` strictly, with null as its default: a list of another shape is unreadable, not
/// silently empty.
fn null_default<'de, D: Deserializer<'de>, T: serde::de::DeserializeOwned + Default>(
    d: D,
) -> Result<T, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Null => Ok(T::default()),
        v => serde_json::from_value(v).map_err(serde::de::Error::custom),
    }
}

/// Every Switch answer: a message and, for reads, `data`.
#[derive(Debug, Deserialize)]
#[serde(bound(deserialize = "T: serde::de::DeserializeOwned + Default"))]
pub struct Envelope<T> {
    #[serde(default, deserialize_with = "loose")]
    pub message: String,
    #[serde(default, deserialize_with = "null_default")]
    pub data: T,
}

/// An answer read only for its message (errors, deletions, OTP requests).
#[derive(Debug, Default, Deserialize)]
pub struct MessageOnly {
    #[serde(default, deserialize_with = "loose")]
    pub message: String,
}

/// `POST <login path>` answer `data` (the register/login sample: `data.auth_token`).
#[derive(Debug, Default, Deserialize)]
pub struct LoginData {
    #[serde(default, deserialize_with = "loose")]
    pub auth_token: String,
}

/// `GET /user/bills/categories`.
#[derive(Debug, Default, Deserialize)]
pub struct WireCategory {
    #[serde(default, deserialize_with = "loose")]
    pub id: String,
    #[serde(default, deserialize_with = "loose")]
    pub name: String,
    #[serde(default, deserialize_with = "loose")]
    pub description: String,
}

impl From<WireCategory> for Category {
    fn from(c: WireCategory) -> Self {
        Category {
            category_id: c.id,
            name: c.name,
            description: c.description,
        }
    }
}

/// `GET /user/bills/vendors` and `.../categories/:id/vendors`; also a saved bill's `vendor`.
#[derive(Debug, Default, Deserialize)]
pub struct WireVendor {
    #[serde(default, deserialize_with = "loose")]
    pub vendor_id: String,
    #[serde(default, deserialize_with = "loose")]
    pub name: String,
    #[serde(default, deserialize_with = "loose")]
    pub short_name: String,
    #[serde(default, deserialize_with = "loose")]
    pub bill_payment_category_id: String,
}

impl From<WireVendor> for Biller {
    fn from(v: WireVendor) -> Self {
        Biller {
            biller_id: v.vendor_id,
            name: v.name,
            short_name: v.short_name,
            category_id: v.bill_payment_category_id,
            currency_code: Currency::Ngn.code().to_owned(),
        }
    }
}

/// One entry of a plan's `input_fields`.
#[derive(Debug, Default, Deserialize)]
pub struct WireInputField {
    #[serde(default, deserialize_with = "loose")]
    pub key: String,
    #[serde(default, deserialize_with = "loose")]
    pub value: String,
    #[serde(default, deserialize_with = "loose")]
    pub text: String,
}

/// A plan's `additions`: its price and total in naira.
#[derive(Debug, Default, Deserialize)]
pub struct WireAdditions {
    #[serde(default, deserialize_with = "loose")]
    pub amount: String,
    #[serde(default, deserialize_with = "loose")]
    pub total: String,
}

/// `GET /user/bills/vendors/:id/plans`.
#[derive(Debug, Default, Deserialize)]
pub struct WirePlan {
    #[serde(default, deserialize_with = "loose")]
    pub mandate_id: String,
    #[serde(default, deserialize_with = "loose")]
    pub id: String,
    #[serde(default, deserialize_with = "loose")]
    pub name: String,
    #[serde(default, deserialize_with = "loose")]
    pub payment_code: String,
    #[serde(default, deserialize_with = "loose")]
    pub item_fee: String,
    #[serde(default, deserialize_with = "loose")]
    pub vat: String,
    #[serde(default, deserialize_with = "loose")]
    pub category_id: String,
    #[serde(default, deserialize_with = "lenient")]
    pub input_fields: Vec<WireInputField>,
    #[serde(default, deserialize_with = "lenient")]
    pub additions: WireAdditions,
}

/// Keys of [`Product::provider_data`] a payment echoes back.
pub mod plan_keys {
    pub const PLAN_NAME: &str = "plan_name";
    pub const CATEGORY_ID: &str = "category_id";
    pub const MANDATE_ID: &str = "mandate_id";
    pub const PAYMENT_CODE: &str = "payment_code";
}

impl WirePlan {
    /// Maps a plan of vendor `vendor_id` to a product. A plan with a positive `additions.amount`
    /// is fixed-price. Naira amounts that do not parse exactly are left out (a payment then
    /// refuses the plan rather than guess its price). Every input field but the customer's
    /// number is a required input (assumed: the documents say nothing of optional fields).
    pub fn into_product(self, vendor_id: &str) -> Product {
        let money = |text: &str| parse_naira(text).map(|k| Money::new(Currency::Ngn, k));
        let amount = money(&self.additions.amount).filter(|m| m.minor_units > 0);
        let mut customer_id_label = String::new();
        let mut input_fields = Vec::new();
        for field in self.input_fields {
            if field.key == CUSTOMER_FIELD {
                customer_id_label = field.text;
            } else if !field.key.is_empty() {
                input_fields.push(InputField {
                    key: field.key,
                    label: field.text,
                    default_value: field.value,
                    required: true,
                });
            }
        }
        let provider_data = BTreeMap::from([
            (plan_keys::PLAN_NAME.to_owned(), self.name.clone()),
            (plan_keys::CATEGORY_ID.to_owned(), self.category_id),
            (plan_keys::MANDATE_ID.to_owned(), self.mandate_id),
            (plan_keys::PAYMENT_CODE.to_owned(), self.payment_code),
        ]);
        Product {
            product_id: self.id,
            biller_id: vendor_id.to_owned(),
            name: self.name,
            amount_fixed: amount.is_some(),
            amount,
            fee: money(&self.item_fee),
            customer_id_label,
            tax: money(&self.vat),
            total: money(&self.additions.total).filter(|m| m.minor_units > 0),
            input_fields,
            provider_data,
        }
    }
}

/// `GET /user/bills/saved_bills` entry. The documented sample shows no id although
/// `DELETE /user/saved_bills/:id` needs one: `id` is read when Switch sends it (assumed name),
/// and left empty otherwise (such a bill cannot be deleted through the gateway).
#[derive(Debug, Default, Deserialize)]
pub struct WireSavedBill {
    #[serde(default, deserialize_with = "loose")]
    pub id: String,
    #[serde(default, deserialize_with = "loose")]
    pub consumer_id_field: String,
    #[serde(default, deserialize_with = "lenient")]
    pub vendor: WireVendor,
    /// Not in the documented sample; read when present.
    #[serde(default, deserialize_with = "loose")]
    pub plan_id: String,
    /// Not in the documented sample; naira, read when present.
    #[serde(default, deserialize_with = "loose")]
    pub amount: String,
    #[serde(default, deserialize_with = "loose")]
    pub created_at: String,
}

impl From<WireSavedBill> for SavedBill {
    fn from(b: WireSavedBill) -> Self {
        SavedBill {
            saved_bill_id: b.id,
            biller_id: b.vendor.vendor_id,
            biller_name: b.vendor.name,
            product_id: b.plan_id,
            customer_id: b.consumer_id_field,
            amount: parse_naira(&b.amount)
                .filter(|k| *k > 0)
                .map(|k| Money::new(Currency::Ngn, k)),
            created_at_ms: parse_iso_time(&b.created_at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kobo_become_naira_strings_exactly() {
        assert_eq!(naira(1).as_deref(), Some("0.01"));
        assert_eq!(naira(10).as_deref(), Some("0.10"));
        assert_eq!(naira(99).as_deref(), Some("0.99"));
        assert_eq!(naira(100).as_deref(), Some("1.00"));
        assert_eq!(naira(1_460_000).as_deref(), Some("14600.00"));
        assert_eq!(naira(1_468_401).as_deref(), Some("14684.01"));
        assert_eq!(
            naira(i64::MAX).as_deref(),
            Some("92233720368547758.07"),
            "the largest amount is still exact"
        );
        assert_eq!(naira(0).as_deref(), Some("0.00"));
        assert_eq!(naira(-1), None);
    }

    #[test]
    fn naira_strings_become_kobo_exactly() {
        for (text, kobo) in [
            ("14600.00", 1_460_000),
            ("80", 8_000),
            ("4", 400),
            ("0.01", 1),
            ("0.5", 50),
            ("1.000", 100),
            (" 7.25 ", 725),
            ("92233720368547758.07", i64::MAX),
        ] {
            assert_eq!(parse_naira(text), Some(kobo), "{text}");
        }
        for bad in [
            "",
            ".5",
            "-1",
            "+1",
            "1.005",
            "1e3",
            "1,000.00",
            "abc",
            "92233720368547758.08",
            "1.2.3",
        ] {
            assert_eq!(parse_naira(bad), None, "{bad:?}");
        }
        // Round trip at the edges.
        for kobo in [1, 100, 1_460_000, i64::MAX] {
            assert_eq!(parse_naira(&naira(kobo).unwrap()), Some(kobo));
        }
    }

    #[test]
    fn times_round_trip_in_utc() {
        assert_eq!(iso_time(0), "1970-01-01T00:00:00.000Z");
        let sample = parse_iso_time("2019-03-27T13:35:47.160Z").unwrap();
        assert_eq!(sample, 1_553_693_747_160);
        assert_eq!(iso_time(sample), "2019-03-27T13:35:47.160Z");
        assert_eq!(
            parse_iso_time("2024-02-29T23:59:59Z")
                .map(iso_time)
                .as_deref(),
            Some("2024-02-29T23:59:59.000Z")
        );
        for bad in [
            "2019-03-27",
            "2019-13-01T00:00:00Z",
            "2019-03-27T13:35:47+01:00",
            "",
        ] {
            assert_eq!(parse_iso_time(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_documented_plan_maps_to_a_fixed_price_product() {
        let plan: WirePlan = serde_json::from_value(serde_json::json!({
            "mandate_id": "SWV220200401122742464584041257", "id": "01", "name": "Premium",
            "payment_code": "10401", "item_fee": "80", "vat": 4, "category_id": "2",
            "input_fields": [{"key": "consumer_id_field", "value": "", "text": "Decoder Number"}],
            "additions": {"amount": "14600.00", "total": "14684.00"}
        }))
        .unwrap();
        let p = plan.into_product("104");
        assert_eq!((p.product_id.as_str(), p.biller_id.as_str()), ("01", "104"));
        assert!(p.amount_fixed);
        assert_eq!(p.amount.unwrap().minor_units, 1_460_000);
        assert_eq!(p.fee.unwrap().minor_units, 8_000);
        assert_eq!(p.tax.unwrap().minor_units, 400);
        assert_eq!(p.total.unwrap().minor_units, 1_468_400);
        assert_eq!(p.customer_id_label, "Decoder Number");
        assert!(p.input_fields.is_empty());
        assert_eq!(
            p.provider_data[plan_keys::MANDATE_ID],
            "SWV220200401122742464584041257"
        );
        assert_eq!(p.provider_data[plan_keys::PAYMENT_CODE], "10401");
        assert_eq!(p.provider_data[plan_keys::PLAN_NAME], "Premium");
    }

    #[test]
    fn the_documented_saved_bill_shape_maps_without_an_id() {
        let bill: WireSavedBill = serde_json::from_value(serde_json::json!({
            "consumer_id_field": "08183372896",
            "vendor": {"vendor_id": "2", "name": "Vendor1", "narration": "", "short_name": "vend1",
                       "surcharge": null, "switch_category": null, "switch_short_name": null},
            "created_at": "2019-03-27T13:35:47.160Z"
        }))
        .unwrap();
        let b = SavedBill::from(bill);
        assert_eq!(b.saved_bill_id, "");
        assert_eq!(
            (b.biller_id.as_str(), b.biller_name.as_str()),
            ("2", "Vendor1")
        );
        assert_eq!(b.customer_id, "08183372896");
        assert_eq!(b.created_at_ms, Some(1_553_693_747_160));
    }
}
