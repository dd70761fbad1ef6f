//! Customer validation and the amount rule a payment must satisfy.

use serde::{Deserialize, Serialize};

use super::Money;

/// How a payment amount must relate to a reference amount (Interswitch amountType 0-5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AmountRuleKind {
    Any,
    Minimum,
    GreaterThanMinimum,
    Maximum,
    LessThanMaximum,
    Exact,
}

/// A rule with its reference amount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AmountRule {
    pub kind: AmountRuleKind,
    /// The reference amount; `None` only for [`AmountRuleKind::Any`].
    pub amount: Option<Money>,
    pub description: String,
}

impl AmountRule {
    /// Checks `paid` against the rule. `Err` names the field of the amount that breaks it
    /// (`amount.minor_units`, or `amount.currency_code` for the wrong currency) and says what the
    /// rule wants, in words for the caller.
    pub fn check(&self, paid: Money) -> Result<(), (&'static str, String)> {
        const UNITS: &str = "amount.minor_units";
        if paid.minor_units <= 0 {
            return Err((UNITS, "must be greater than zero".into()));
        }
        let Some(reference) = self.amount else {
            return match self.kind {
                AmountRuleKind::Any => Ok(()),
                _ => Err((
                    UNITS,
                    "cannot be checked: the provider gave no reference amount for the \
                     customer's amount rule"
                        .into(),
                )),
            };
        };
        if reference.currency != paid.currency {
            return Err((
                "amount.currency_code",
                format!(
                    "must be {} (the customer's amount rule)",
                    reference.currency.code()
                ),
            ));
        }
        let (p, r) = (paid.minor_units, reference.minor_units);
        let (ok, words) = match self.kind {
            AmountRuleKind::Any => (true, ""),
            AmountRuleKind::Minimum => (p >= r, "at least"),
            AmountRuleKind::GreaterThanMinimum => (p > r, "greater than"),
            AmountRuleKind::Maximum => (p <= r, "at most"),
            AmountRuleKind::LessThanMaximum => (p < r, "less than"),
            AmountRuleKind::Exact => (p == r, "exactly"),
        };
        if ok {
            Ok(())
        } else {
            Err((
                UNITS,
                format!(
                    "must be {words} {r} minor units of {} (the customer's amount rule)",
                    reference.currency.code()
                ),
            ))
        }
    }
}

/// What a biller knows of a customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerValidation {
    pub customer_id: String,
    pub customer_name: String,
    pub amount: Option<Money>,
    pub amount_rule: AmountRule,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Currency;

    fn ngn(m: i64) -> Money {
        Money::new(Currency::Ngn, m)
    }

    fn rule(kind: AmountRuleKind) -> AmountRule {
        AmountRule {
            kind,
            amount: Some(ngn(100_000)),
            description: String::new(),
        }
    }

    #[test]
    fn each_rule_at_its_edges() {
        use AmountRuleKind::*;
        // (kind, one below, equal, one above)
        let table = [
            (Any, true, true, true),
            (Minimum, false, true, true),
            (GreaterThanMinimum, false, false, true),
            (Maximum, true, true, false),
            (LessThanMaximum, true, false, false),
            (Exact, false, true, false),
        ];
        for (kind, below, equal, above) in table {
            let r = rule(kind);
            assert_eq!(r.check(ngn(99_999)).is_ok(), below, "{kind:?} below");
            assert_eq!(r.check(ngn(100_000)).is_ok(), equal, "{kind:?} equal");
            assert_eq!(r.check(ngn(100_001)).is_ok(), above, "{kind:?} above");
        }
    }

    #[test]
    fn zero_and_other_currency_are_refused() {
        let r = rule(AmountRuleKind::Any);
        assert!(r.check(ngn(0)).is_err());
        assert!(r.check(Money::new(Currency::Kes, 100_000)).is_err());
        let any_without_amount = AmountRule {
            kind: AmountRuleKind::Any,
            amount: None,
            description: String::new(),
        };
        assert!(any_without_amount.check(ngn(1)).is_ok());
    }
}
