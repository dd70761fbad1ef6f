//! Conversions between domain types and `billpay.v1` messages.

use crate::domain::{
    catalog::InputField,
    directory::RouteAttempt,
    payment::{FulfilmentState, PaymentKind},
    Account, AmountRuleKind, Balance, BillLookup, Biller, Capability, Category, CustomerValidation,
    Money, PaymentMethod, PaymentOffers, PaymentRecord, PaymentState, Product, ProviderId,
    ProviderTransaction, SavedBill, TransactionKind,
};
use crate::gateway::directory::{BillerView, CatalogState};
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
        Capability::GetPaymentOptions => pb::Capability::GetPaymentOptions,
        Capability::SendOtp => pb::Capability::SendOtp,
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
        input_fields: p.input_fields.into_iter().map(input_field).collect(),
        tax: p.tax.map(money),
        total: p.total.map(money),
    }
}

fn input_field(f: InputField) -> pb::InputField {
    pb::InputField {
        key: f.key,
        label: f.label,
        default_value: f.default_value,
        required: f.required,
    }
}

/// Balances as proto.
pub fn balance(b: Balance) -> pb::Balance {
    pb::Balance {
        account_id: b.account_id,
        available: Some(money(b.available)),
        provider_message: b.provider_message,
    }
}

/// An account as proto.
pub fn account(a: Account) -> pb::Account {
    pb::Account {
        account_id: a.account_id,
        name: a.name,
        currency_code: a.currency_code,
        r#type: a.account_type,
        status: a.status,
        min_transaction_amount: a.min_transaction_amount.map(money),
        max_transaction_amount: a.max_transaction_amount.map(money),
        minimum_balance: a.minimum_balance.map(money),
    }
}

/// A provider transaction as proto.
pub fn transaction(t: ProviderTransaction) -> pb::ProviderTransaction {
    use crate::domain::transaction_details as keys;
    let detail = |key: &str| t.details.get(key).cloned().unwrap_or_default();
    let amount_detail = |key: &str| {
        t.details
            .get(key)
            .and_then(|v| Money::parse_minor_units(t.amount.currency, v))
            .map(money)
    };
    let (fee, commission) = (
        amount_detail(keys::FEE_MINOR_UNITS),
        amount_detail(keys::COMMISSION_MINOR_UNITS),
    );
    let (product_id, payment_method_id, account_id) = (
        detail(keys::PRODUCT_ID),
        detail(keys::PAYMENT_METHOD_ID),
        detail(keys::ACCOUNT_ID),
    );
    pb::ProviderTransaction {
        provider_transaction_id: t.provider_transaction_id,
        provider_reference: t.provider_reference,
        kind: match t.kind {
            TransactionKind::Debit => pb::PaymentKind::Bill,
            TransactionKind::Credit => pb::PaymentKind::Collection,
        } as i32,
        state: payment_state(t.state) as i32,
        amount: Some(money(t.amount)),
        create_time: t.created_at_ms.map(timestamp),
        description: t.description,
        provider_code: t.provider_code,
        provider_message: t.provider_message,
        fee,
        commission,
        product_id,
        payment_method_id,
        account_id,
    }
}

/// A saved bill as proto.
pub fn saved_bill(b: SavedBill) -> pb::SavedBill {
    pb::SavedBill {
        saved_bill_id: b.saved_bill_id,
        biller_id: b.biller_id,
        product_id: b.product_id,
        customer_id: b.customer_id,
        amount: b.amount.map(money),
        create_time: b.created_at_ms.map(timestamp),
        biller_name: b.biller_name,
    }
}

/// A bill look-up as proto.
pub fn bill_lookup(b: BillLookup) -> pb::LookupBillResponse {
    pb::LookupBillResponse {
        customer_id: b.customer_id,
        customer_name: b.customer_name,
        amount_due: b.amount_due.map(money),
        provider_message: b.provider_message,
        provider_code: b.provider_code,
    }
}

/// Payment offers as proto.
pub fn payment_offers(o: PaymentOffers) -> pb::GetPaymentOptionsResponse {
    pb::GetPaymentOptionsResponse {
        customer_name: o.customer_name,
        options: o
            .offers
            .into_iter()
            .map(|o| pb::PaymentOption {
                product_id: o.product_id,
                product_code: o.product_code,
                name: o.name,
                description: o.description,
                amount: o.amount.map(money),
                order_reference: o.order_reference,
                terms: o.terms,
                terms_url: o.terms_url,
            })
            .collect(),
        ..Default::default()
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
        ..Default::default()
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
        PaymentState::Scheduled => pb::PaymentState::Scheduled,
    }
}

/// Unix milliseconds as a proto timestamp.
pub fn timestamp(unix_ms: i64) -> prost_types::Timestamp {
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
        fee: r.extras.fee.map(money),
        total: r.extras.total.map(money),
        fulfilment_state: match r.extras.fulfilment_state {
            None => pb::FulfilmentState::Unspecified,
            Some(FulfilmentState::Pending) => pb::FulfilmentState::Pending,
            Some(FulfilmentState::Delivered) => pb::FulfilmentState::Delivered,
            Some(FulfilmentState::Failed) => pb::FulfilmentState::Failed,
        } as i32,
        fulfilment_details: r.extras.fulfilment_details.into_iter().collect(),
        required_inputs: r.extras.required_inputs,
        scheduled_time: r.extras.scheduled_at_ms.map(timestamp),
        approved_amount: r.extras.approved_amount.map(money),
        description: r.order.description,
        directory_biller_id: r.directory_biller_id,
        route_attempts: r.route_attempts.into_iter().map(route_attempt).collect(),
    }
}

/// A routed payment's route attempt as proto.
pub fn route_attempt(a: RouteAttempt) -> pb::RouteAttempt {
    pb::RouteAttempt {
        provider: provider(a.provider) as i32,
        biller_id: a.biller_id,
        product_id: a.product_id,
        outcome: if a.sent {
            pb::RouteAttemptOutcome::Sent
        } else {
            pb::RouteAttemptOutcome::NotSent
        } as i32,
        reason: a.reason,
        provider_reference: a.provider_reference,
        attempt_time: Some(timestamp(a.at_ms)),
    }
}

/// A directory biller with its routes' live states as proto.
pub fn directory_biller(v: BillerView) -> pb::DirectoryBiller {
    pb::DirectoryBiller {
        directory_biller_id: v.biller.id,
        name: v.biller.name,
        country_code: v.biller.country,
        category: v.biller.category,
        currency_code: v.biller.currency.code().to_owned(),
        routes: v
            .routes
            .into_iter()
            .map(|r| pb::DirectoryRoute {
                provider: provider(r.route.provider) as i32,
                biller_id: r.route.biller_id,
                product_id: r.route.product_id,
                catalog_state: match r.catalog {
                    CatalogState::Listed => pb::RouteCatalogState::Listed,
                    CatalogState::Broken => pb::RouteCatalogState::Broken,
                    CatalogState::Unknown => pb::RouteCatalogState::Unknown,
                } as i32,
                configured: r.configured,
                can_pay: r.can_pay,
                circuit_open: r.circuit_open,
                healthy: r.healthy,
                recent_calls: r.recent.calls.min(i32::MAX as u32) as i32,
                recent_success_permille: r.recent.answered_permille as i32,
                recent_latency_ms: r.recent.median_latency_ms.min(i64::MAX as u64) as i64,
                fee: r.fee.map(money),
                amount: r.amount.map(money),
                amount_fixed: r.amount_fixed,
                rank: r.rank as i32,
                note: r.note,
            })
            .collect(),
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
