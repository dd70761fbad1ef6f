//! Conversions between domain types and `billpay.v1` messages.

use crate::domain::{
    payment::PaymentKind, AmountRuleKind, Biller, Capability, Category, CustomerValidation, Money,
    PaymentMethod, PaymentRecord, PaymentState, Product, ProviderId,
};
use crate::pb;

/// A proto provider as a domain id; `None` for UNSPECIFIED.
pub fn provider_id(p: pb::Provider) -> Option<ProviderId> {
    Some(match p {
        pb::Provider::Unspecified => return None,
        pb::Provider::Interintel => ProviderId::InterIntel,
        pb::Provider::Switch => ProviderId::Switch,
        pb::Provider::IntelworldIp2 => ProviderId::IntelworldIp2,
        pb::Provider::Onepipe => ProviderId::OnePipe,
        pb::Provider::Interswitch => ProviderId::Interswitch,
    })
}

/// A domain provider id as a proto enum.
pub fn provider(id: ProviderId) -> pb::Provider {
    match id {
        ProviderId::InterIntel => pb::Provider::Interintel,
        ProviderId::Switch => pb::Provider::Switch,
        ProviderId::IntelworldIp2 => pb::Provider::IntelworldIp2,
        ProviderId::OnePipe => pb::Provider::Onepipe,
        ProviderId::Interswitch => pb::Provider::Interswitch,
    }
}

/// A capability as a proto enum.
pub fn capability(c: Capability) -> pb::Capability {
    match c {
        Capability::ListCategories => pb::Capability::ListCategories,
        Capability::ListBillers => pb::Capability::ListBillers,
        Capability::ListProducts => pb::Capability::ListProducts,
        Capability::ListPaymentMethods => pb::Capability::ListPaymentMethods,
        Capability::ValidateCustomer => pb::Capability::ValidateCustomer,
        Capability::LookupBill => pb::Capability::LookupBill,
        Capability::CreatePayment => pb::Capability::CreatePayment,
        Capability::QueryPayment => pb::Capability::QueryPayment,
        Capability::ValidatePaymentOtp => pb::Capability::ValidatePaymentOtp,
        Capability::ReversePayment => pb::Capability::ReversePayment,
        Capability::ListProviderPayments => pb::Capability::ListProviderPayments,
        Capability::SavedBills => pb::Capability::SavedBills,
        Capability::CreateCollection => pb::Capability::CreateCollection,
        Capability::GetBalance => pb::Capability::GetBalance,
        Capability::ListAccounts => pb::Capability::ListAccounts,
    }
}

/// Money as proto.
pub fn money(m: Money) -> pb::Money {
    pb::Money {
        currency_code: m.currency.code().to_owned(),
        minor_units: m.minor_units,
    }
}

/// A category as proto.
pub fn category(c: Category) -> pb::Category {
    pb::Category {
        category_id: c.category_id,
        name: c.name,
        description: c.description,
    }
}

/// A biller as proto.
pub fn biller(b: Biller) -> pb::Biller {
    pb::Biller {
        biller_id: b.biller_id,
        name: b.name,
        short_name: b.short_name,
        category_id: b.category_id,
        currency_code: b.currency_code,
    }
}

/// A product as proto.
pub fn product(p: Product) -> pb::Product {
    pb::Product {
        product_id: p.product_id,
        biller_id: p.biller_id,
        name: p.name,
        amount: p.amount.map(money),
        amount_fixed: p.amount_fixed,
        fee: p.fee.map(money),
        customer_id_label: p.customer_id_label,
    }
}

/// A payment method as proto.
pub fn payment_method(m: PaymentMethod) -> pb::PaymentMethod {
    pb::PaymentMethod {
        payment_method_id: m.payment_method_id,
        name: m.name,
        description: m.description,
        currency_codes: m.currency_codes,
        country_codes: m.country_codes,
    }
}

fn amount_rule_kind(k: AmountRuleKind) -> pb::AmountRuleKind {
    match k {
        AmountRuleKind::Any => pb::AmountRuleKind::Any,
        AmountRuleKind::Minimum => pb::AmountRuleKind::Minimum,
        AmountRuleKind::GreaterThanMinimum => pb::AmountRuleKind::GreaterThanMinimum,
        AmountRuleKind::Maximum => pb::AmountRuleKind::Maximum,
        AmountRuleKind::LessThanMaximum => pb::AmountRuleKind::LessThanMaximum,
        AmountRuleKind::Exact => pb::AmountRuleKind::Exact,
    }
}

/// A customer validation as proto.
pub fn validation(v: CustomerValidation) -> pb::ValidateCustomerResponse {
    pb::ValidateCustomerResponse {
        customer_id: v.customer_id,
        customer_name: v.customer_name,
        amount: v.amount.map(money),
        amount_rule: Some(pb::AmountRule {
            kind: amount_rule_kind(v.amount_rule.kind) as i32,
            amount: v.amount_rule.amount.map(money),
            description: v.amount_rule.description,
        }),
    }
}

/// A payment state as proto.
pub fn payment_state(s: PaymentState) -> pb::PaymentState {
    match s {
        PaymentState::Pending => pb::PaymentState::Pending,
        PaymentState::Succeeded => pb::PaymentState::Succeeded,
        PaymentState::Failed => pb::PaymentState::Failed,
        PaymentState::OtpRequired => pb::PaymentState::OtpRequired,
        PaymentState::ValidationRequired => pb::PaymentState::ValidationRequired,
        PaymentState::Reversed => pb::PaymentState::Reversed,
        PaymentState::NeedsAttention => pb::PaymentState::NeedsAttention,
    }
}

fn timestamp(unix_ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: unix_ms.div_euclid(1000),
        nanos: (unix_ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

/// A journal record as a proto payment.
pub fn payment(r: PaymentRecord) -> pb::Payment {
    pb::Payment {
        payment_id: r.payment_id,
        request_id: r.request_id,
        provider: provider(r.order.provider) as i32,
        kind: match r.order.kind {
            PaymentKind::Bill => pb::PaymentKind::Bill,
            PaymentKind::Collection => pb::PaymentKind::Collection,
        } as i32,
        state: payment_state(r.state) as i32,
        biller_id: r.order.biller_id,
        product_id: r.order.product_id,
        customer_id: r.order.customer_id,
        amount: Some(money(r.order.amount)),
        provider_reference: r.provider_reference,
        provider_transaction_id: r.provider_transaction_id,
        provider_code: r.provider_code,
        provider_message: r.provider_message,
        fulfilment_token: r.fulfilment_token,
        create_time: Some(timestamp(r.created_at_ms)),
        update_time: Some(timestamp(r.updated_at_ms)),
        status_checks: r.status_checks.min(i32::MAX as u32) as i32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_provider_round_trips() {
        for id in ProviderId::ALL {
            assert_eq!(provider_id(provider(id)), Some(id));
        }
        assert_eq!(provider_id(pb::Provider::Unspecified), None);
    }

    #[test]
    fn timestamps_split_milliseconds_exactly() {
        let t = timestamp(1_700_000_000_123);
        assert_eq!((t.seconds, t.nanos), (1_700_000_000, 123_000_000));
        let before_epoch = timestamp(-1);
        assert_eq!(
            (before_epoch.seconds, before_epoch.nanos),
            (-1, 999_000_000)
        );
    }
}
