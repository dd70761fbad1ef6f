//! Exact money: an integer count of minor units in a known ISO-4217 currency. No floats anywhere;
//! each provider adapter converts to its own unit from here.

use serde::{Deserialize, Serialize};

/// A currency the gateway knows, with its number of decimal places.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Currency {
    /// Nigerian naira, 2 decimals (kobo).
    Ngn,
    /// Kenyan shilling, 2 decimals (cents).
    Kes,
    /// Ugandan shilling, 0 decimals.
    Ugx,
}

impl Currency {
    /// Parses an upper-case ISO-4217 code.
    pub fn from_code(code: &str) -> Option<Self> {
        match code {
            "NGN" => Some(Self::Ngn),
            "KES" => Some(Self::Kes),
            "UGX" => Some(Self::Ugx),
            _ => None,
        }
    }

    /// The ISO-4217 code.
    pub fn code(self) -> &'static str {
        match self {
            Self::Ngn => "NGN",
            Self::Kes => "KES",
            Self::Ugx => "UGX",
        }
    }

    /// Decimal places of the minor unit.
    pub fn exponent(self) -> u32 {
        match self {
            Self::Ngn | Self::Kes => 2,
            Self::Ugx => 0,
        }
    }
}

/// An exact amount of money.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    /// The currency.
    pub currency: Currency,
    /// Amount in minor units of `currency`.
    pub minor_units: i64,
}

impl Money {
    /// Builds an amount from minor units.
    pub fn new(currency: Currency, minor_units: i64) -> Self {
        Self {
            currency,
            minor_units,
        }
    }

    /// Parses a provider's integer minor-unit string such as `"1500000"` (kobo). Rejects signs,
    /// decimals, blanks and values beyond i64.
    pub fn parse_minor_units(currency: Currency, text: &str) -> Option<Self> {
        let text = text.trim();
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        text.parse::<i64>().ok().map(|m| Self::new(currency, m))
    }

    /// Renders the minor units as a plain integer string, the unit Interswitch and OnePipe use.
    pub fn minor_units_string(&self) -> String {
        self.minor_units.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_minor_unit_strings_exactly() {
        assert_eq!(
            Money::parse_minor_units(Currency::Ngn, "1500000"),
            Some(Money::new(Currency::Ngn, 1_500_000))
        );
        assert_eq!(
            Money::parse_minor_units(Currency::Ngn, "0"),
            Some(Money::new(Currency::Ngn, 0))
        );
        assert_eq!(
            Money::parse_minor_units(Currency::Ngn, "9223372036854775807"),
            Some(Money::new(Currency::Ngn, i64::MAX))
        );
        for bad in [
            "",
            " ",
            "-1",
            "+1",
            "15.00",
            "1e6",
            "9223372036854775808",
            "abc",
        ] {
            assert_eq!(
                Money::parse_minor_units(Currency::Ngn, bad),
                None,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn currency_codes_round_trip() {
        for c in [Currency::Ngn, Currency::Kes, Currency::Ugx] {
            assert_eq!(Currency::from_code(c.code()), Some(c));
        }
        assert_eq!(Currency::from_code("ngn"), None);
        assert_eq!(Currency::Ugx.exponent(), 0);
        assert_eq!(Currency::Ngn.exponent(), 2);
    }
}
