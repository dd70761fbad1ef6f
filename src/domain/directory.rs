//! The biller directory: canonical billers (`ng.ikedc.prepaid`) and the routes that pay each
//! one through a provider's own biller and product ids, read from a curated mapping file
//! (`config/directory.toml`, built in); the routed order a payment names instead of a provider;
//! and the route attempts a routed payment records.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Currency, PaymentOptions, PaymentOrder, ProviderId};

/// The mapping file shipped with the gateway.
pub const BUILT_IN: &str = include_str!("../../config/directory.toml");

/// Longest directory biller id.
pub const MAX_DIRECTORY_BILLER_ID: usize = 64;

/// One provider's way to pay a directory biller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub provider: ProviderId,
    /// The provider's biller id (Interswitch billerid, OnePipe distribution company, Switch
    /// vendor id).
    pub biller_id: String,
    /// The provider's product id, as a direct payment would name it.
    pub product_id: String,
}

/// One canonical biller and its routes, in the mapping file's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryBiller {
    /// Stable id, for example `ng.ikedc.prepaid`.
    pub id: String,
    pub name: String,
    /// ISO-3166 alpha-2.
    pub country: String,
    pub category: String,
    pub currency: Currency,
    pub routes: Vec<Route>,
}

/// Every directory biller, by id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directory {
    billers: BTreeMap<String, DirectoryBiller>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBiller {
    id: String,
    name: String,
    country: String,
    category: String,
    currency: String,
    #[serde(rename = "route")]
    routes: Vec<FileRoute>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRoute {
    provider: String,
    biller_id: String,
    product_id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(rename = "biller", default)]
    billers: Vec<FileBiller>,
}

impl Directory {
    /// The built-in directory ([`BUILT_IN`]).
    pub fn built_in() -> Self {
        Self::parse(BUILT_IN).expect("the built-in directory is valid")
    }

    /// Parses and checks a mapping file: ids of lower-case letters, digits, `.`, `_` and `-`
    /// (at most [`MAX_DIRECTORY_BILLER_ID`]), each once; known provider names and currency
    /// codes; at least one route per biller, none twice.
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: File = toml::from_str(text).map_err(|e| format!("directory: {e}"))?;
        let mut billers = BTreeMap::new();
        for b in file.billers {
            let id_ok = !b.id.is_empty()
                && b.id.len() <= MAX_DIRECTORY_BILLER_ID
                && b.id.bytes().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-')
                });
            if !id_ok {
                return Err(format!(
                    "directory: biller id {:?} must be 1-{MAX_DIRECTORY_BILLER_ID} characters of \
                     a-z, 0-9, '.', '_' and '-'",
                    b.id
                ));
            }
            let currency = Currency::from_code(&b.currency)
                .ok_or_else(|| format!("directory: {}: unknown currency {:?}", b.id, b.currency))?;
            if b.routes.is_empty() {
                return Err(format!("directory: {}: no route", b.id));
            }
            let mut routes: Vec<Route> = Vec::new();
            for r in b.routes {
                let provider = ProviderId::ALL
                    .into_iter()
                    .find(|p| p.name() == r.provider)
                    .ok_or_else(|| {
                        format!("directory: {}: unknown provider {:?}", b.id, r.provider)
                    })?;
                if r.biller_id.is_empty() || r.product_id.is_empty() {
                    return Err(format!(
                        "directory: {}: a {provider} route needs biller_id and product_id",
                        b.id
                    ));
                }
                let route = Route {
                    provider,
                    biller_id: r.biller_id,
                    product_id: r.product_id,
                };
                if routes.contains(&route) {
                    return Err(format!("directory: {}: a {provider} route twice", b.id));
                }
                routes.push(route);
            }
            let biller = DirectoryBiller {
                id: b.id.clone(),
                name: b.name,
                country: b.country,
                category: b.category,
                currency,
                routes,
            };
            if billers.insert(b.id.clone(), biller).is_some() {
                return Err(format!("directory: biller {} twice", b.id));
            }
        }
        Ok(Self { billers })
    }

    /// One biller.
    pub fn get(&self, id: &str) -> Option<&DirectoryBiller> {
        self.billers.get(id)
    }

    /// Every biller, by id.
    pub fn billers(&self) -> impl Iterator<Item = &DirectoryBiller> {
        self.billers.values()
    }
}

/// A payment that names a directory biller instead of a provider: `template` is the order
/// every route's order is made from (its provider, biller and product are the route's; its
/// options go only to routes of the provider they belong to).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoutedOrder {
    pub directory_biller_id: String,
    pub template: PaymentOrder,
}

impl RoutedOrder {
    /// SHA-256 (hex) of the routed request's canonical JSON: what a repeated `request_id` must
    /// match. Route-independent (a retry compares with the request, not with the route chosen).
    pub fn fingerprint(&self) -> String {
        let mut canonical = self.clone();
        canonical.template.provider = ProviderId::Interswitch;
        canonical.template.biller_id.clear();
        canonical.template.product_id.clear();
        let bytes = serde_json::to_vec(&canonical).expect("a routed order always serializes");
        let digest = Sha256::digest([b"routed/".as_slice(), &bytes].concat());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The order for one route.
    pub fn order_for(&self, route: &Route) -> PaymentOrder {
        let options = match (&self.template.options, route.provider) {
            (o @ PaymentOptions::Switch(_), ProviderId::Switch)
            | (o @ PaymentOptions::OnePipe(_), ProviderId::OnePipe)
            | (o @ PaymentOptions::Ip2(_), ProviderId::IntelworldIp2)
            | (o @ PaymentOptions::InterIntel(_), ProviderId::InterIntel) => o.clone(),
            _ => PaymentOptions::None,
        };
        PaymentOrder {
            provider: route.provider,
            biller_id: route.biller_id.clone(),
            product_id: route.product_id.clone(),
            options,
            ..self.template.clone()
        }
    }
}

/// One route a routed payment tried, as its record keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteAttempt {
    pub provider: ProviderId,
    pub biller_id: String,
    pub product_id: String,
    /// True for the route the payment was (or is about to be) sent through: it never moves
    /// on from there. False: certainly not sent, for `reason`.
    pub sent: bool,
    /// Why it was not sent, in words; empty when sent.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// The reference the attempt was recorded with; empty when refused before one was drawn.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub provider_reference: String,
    /// Unix milliseconds.
    pub at_ms: i64,
}

impl RouteAttempt {
    /// A route refused before anything was sent.
    pub fn not_sent(route: &Route, reason: impl Into<String>, at_ms: i64) -> Self {
        Self {
            provider: route.provider,
            biller_id: route.biller_id.clone(),
            product_id: route.product_id.clone(),
            sent: false,
            reason: reason.into(),
            provider_reference: String::new(),
            at_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{payment::PaymentKind, Money};

    #[test]
    fn the_built_in_directory_has_the_three_ikedc_routes() {
        let d = Directory::built_in();
        let ikedc = d.get("ng.ikedc.prepaid").expect("IKEDC prepaid");
        let providers: Vec<ProviderId> = ikedc.routes.iter().map(|r| r.provider).collect();
        assert_eq!(
            providers,
            [
                ProviderId::Interswitch,
                ProviderId::OnePipe,
                ProviderId::Switch
            ]
        );
        assert!(d.billers().count() >= 4);
    }

    #[test]
    fn a_bad_mapping_is_refused_with_its_reason() {
        let bad = |text: &str, why: &str| {
            let e = Directory::parse(text).unwrap_err();
            assert!(e.contains(why), "{e}");
        };
        let route =
            "[[biller.route]]\nprovider = \"interswitch\"\nbiller_id = \"1\"\nproduct_id = \"2\"\n";
        let head = |id: &str| {
            format!("[[biller]]\nid = \"{id}\"\nname = \"n\"\ncountry = \"NG\"\ncategory = \"c\"\ncurrency = \"NGN\"\n")
        };
        bad(&format!("{}{route}", head("NG.X")), "must be");
        bad(
            &format!("{}{route}{}{route}", head("a"), head("a")),
            "twice",
        );
        bad(&format!("{}{route}{route}", head("a")), "route twice");
        bad(&format!("{}route = []\n", head("a")), "no route");
        bad(
            &format!("{}{}", head("a"), route.replace("interswitch", "paypal")),
            "unknown provider",
        );
        assert!(Directory::parse(&format!("{}{route}", head("a.b"))).is_ok());
    }

    #[test]
    fn the_fingerprint_is_the_request_not_the_route() {
        let template = PaymentOrder::new(
            ProviderId::Interswitch,
            PaymentKind::Bill,
            "",
            "0000000000",
            Money::new(Currency::Ngn, 100_000),
        );
        let routed = RoutedOrder {
            directory_biller_id: "ng.ikedc.prepaid".into(),
            template,
        };
        let route = Route {
            provider: ProviderId::OnePipe,
            biller_id: "IKEDCPR".into(),
            product_id: "IKEDCPR-TOKEN".into(),
        };
        let order = routed.order_for(&route);
        assert_eq!(order.provider, ProviderId::OnePipe);
        assert_eq!(order.biller_id, "IKEDCPR");
        let mut other = routed.clone();
        other.template.provider = ProviderId::Switch;
        assert_eq!(routed.fingerprint(), other.fingerprint());
        other.template.amount.minor_units += 1;
        assert_ne!(routed.fingerprint(), other.fingerprint());
        other = routed.clone();
        other.directory_biller_id = "ng.ekedc.prepaid".into();
        assert_ne!(routed.fingerprint(), other.fingerprint());
        assert_ne!(routed.fingerprint(), routed.template.fingerprint());
    }
}
