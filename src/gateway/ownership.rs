//! Who created each provider-side object. The providers keep one merchant account for every
//! caller of the gateway, so their listings (Switch saved bills, IP2 transactions) show
//! everyone's objects. The gateway records the calling caller as an owner of each object a
//! payment leaves at the provider ([`Provider::created_objects`]) before the payment is sent,
//! and a caller without `merchant_reads` then sees and deletes only what it owns.
//!
//! An owner record is a JSON list of caller names at `owner:<provider>:<object key>`: two
//! callers that save a bill for the same biller and customer both own it. Transactions' records
//! expire with the journal (`[payments] record_ttl_ms`); saved bills' never do.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use super::Gateway;
use crate::auth::ObjectScope;
use crate::domain::{
    Capability, PaymentOrder, Provider, ProviderId, ProviderObject, ProviderPageRequest,
    ProviderTransaction, Resource, SavedBill, TransactionQuery,
};
use crate::error::GatewayError;
use crate::store::{keys, StoreError};

/// Largest number of saved bills read from the provider to find the one a deletion names
/// (pages of [`SAVED_BILL_PAGE`]).
const SAVED_BILL_SEARCH_LIMIT: u32 = 2_000;
const SAVED_BILL_PAGE: u32 = 100;
/// Attempts at adding or removing an owner against concurrent writers of the same record.
const OWNER_WRITE_ATTEMPTS: usize = 16;

fn owner_key(provider: ProviderId, object: &ProviderObject) -> String {
    format!(
        "{}:owner:{}:{}",
        keys::PREFIX,
        provider.name(),
        object.key()
    )
}

fn decode(bytes: &[u8]) -> BTreeSet<String> {
    serde_json::from_slice(bytes).unwrap_or_default()
}

fn encode(owners: &BTreeSet<String>) -> Vec<u8> {
    serde_json::to_vec(owners).expect("a set of strings encodes")
}

impl Gateway {
    /// Records `caller` as an owner of what paying `order` under `reference` leaves at the
    /// provider. Called before the payment is claimed: an object is never made at the
    /// provider without its owner recorded. The anonymous caller (auth mode `none`) and
    /// background work own nothing: everything is theirs to see.
    pub(crate) async fn record_created_objects(
        &self,
        provider: &dyn Provider,
        order: &PaymentOrder,
        reference: &str,
        caller: &str,
    ) -> Result<(), GatewayError> {
        if caller.is_empty() || caller == crate::auth::Caller::anonymous().name {
            return Ok(());
        }
        for object in provider.created_objects(order, reference) {
            let ttl = match object {
                ProviderObject::Transaction { .. } => {
                    Some(Duration::from_millis(self.payments.record_ttl_ms))
                }
                ProviderObject::SavedBill { .. } => None,
            };
            self.add_owner(provider.id(), &object, caller, ttl).await?;
        }
        Ok(())
    }

    async fn owners(
        &self,
        provider: ProviderId,
        object: &ProviderObject,
    ) -> Result<BTreeSet<String>, StoreError> {
        let bytes = self.store.get(&owner_key(provider, object)).await?;
        Ok(bytes.map(|b| decode(&b)).unwrap_or_default())
    }

    async fn add_owner(
        &self,
        provider: ProviderId,
        object: &ProviderObject,
        caller: &str,
        ttl: Option<Duration>,
    ) -> Result<(), StoreError> {
        self.change_owners(provider, object, ttl, |owners| {
            owners.insert(caller.to_owned())
        })
        .await
        .map(drop)
    }

    async fn remove_owner(
        &self,
        provider: ProviderId,
        object: &ProviderObject,
        caller: &str,
    ) -> Result<usize, StoreError> {
        self.change_owners(provider, object, None, |owners| owners.remove(caller))
            .await
    }

    /// Applies `change` (true when it changed the set) to the owner record, with
    /// compare-and-swap against concurrent writers; answers how many owners it has then.
    async fn change_owners(
        &self,
        provider: ProviderId,
        object: &ProviderObject,
        ttl: Option<Duration>,
        change: impl Fn(&mut BTreeSet<String>) -> bool,
    ) -> Result<usize, StoreError> {
        let key = owner_key(provider, object);
        for _ in 0..OWNER_WRITE_ATTEMPTS {
            let current = self.store.get(&key).await?;
            let mut owners = current.as_deref().map(decode).unwrap_or_default();
            if !change(&mut owners) {
                return Ok(owners.len());
            }
            let written = match &current {
                None => {
                    self.store
                        .set_if_absent(&key, &encode(&owners), ttl)
                        .await?
                }
                Some(bytes) => {
                    self.store
                        .compare_and_swap(&key, bytes, &encode(&owners))
                        .await?
                }
            };
            if written {
                return Ok(owners.len());
            }
        }
        Err(StoreError(format!(
            "owner record {key}: too many concurrent changes"
        )))
    }

    /// Keeps the items `scope` may see: all for the merchant's scope, else those whose object
    /// the caller owns (one store read per distinct object, concurrently).
    async fn owned_only<T>(
        &self,
        provider: ProviderId,
        scope: &ObjectScope,
        items: Vec<T>,
        object: impl Fn(&T) -> Option<ProviderObject>,
    ) -> Result<Vec<T>, GatewayError> {
        let ObjectScope::Caller(caller) = scope else {
            return Ok(items);
        };
        let objects: BTreeSet<ProviderObject> = items.iter().filter_map(&object).collect();
        let owned = futures_util::future::try_join_all(objects.into_iter().map(|o| async move {
            let owners = self.owners(provider, &o).await?;
            Ok::<_, StoreError>(owners.contains(caller).then_some(o))
        }))
        .await?;
        let owned: BTreeSet<ProviderObject> = owned.into_iter().flatten().collect();
        Ok(items
            .into_iter()
            .filter(|item| object(item).is_some_and(|o| owned.contains(&o)))
            .collect())
    }

    /// One page of the provider's transaction list, as `scope` may see it: a caller without
    /// `merchant_reads` sees only the transactions it made through the gateway (a page may
    /// then hold fewer items than asked, even none, with more to come).
    pub async fn list_transactions_for(
        &self,
        id: ProviderId,
        query: &TransactionQuery,
        scope: &ObjectScope,
    ) -> Result<ScopedPage<ProviderTransaction>, GatewayError> {
        let page = self.list_transactions(id, query).await?;
        let returned = page.items.len();
        let items = self
            .owned_only(id, scope, page.items, ProviderTransaction::object)
            .await?;
        Ok(ScopedPage {
            items,
            more: page.more,
            read: returned,
        })
    }

    /// One page of saved bills, as `scope` may see them (as [`Self::list_transactions_for`]).
    pub async fn list_saved_bills_for(
        &self,
        id: ProviderId,
        page: ProviderPageRequest,
        scope: &ObjectScope,
    ) -> Result<ScopedPage<SavedBill>, GatewayError> {
        let listed = self.list_saved_bills(id, page).await?;
        let returned = listed.items.len();
        let items = self
            .owned_only(id, scope, listed.items, |b| Some(b.object()))
            .await?;
        Ok(ScopedPage {
            items,
            more: listed.more,
            read: returned,
        })
    }

    /// Deletes a saved bill once per `request_id`, if `scope` may: a caller without
    /// `merchant_reads` may delete only a bill it saved (another's answers NOT_FOUND, nothing
    /// sent). When other callers saved the same bill too, only this caller's claim is dropped
    /// and the bill stays at the provider for them.
    pub async fn delete_saved_bill_for(
        self: &Arc<Self>,
        request_id: String,
        id: ProviderId,
        saved_bill_id: String,
        scope: &ObjectScope,
    ) -> Result<(), GatewayError> {
        // A retry of a deletion already made (under this key or an earlier one) replays its
        // answer, though the bill is gone; it is never claimed or sent again.
        if let Some(replayed) = self
            .replayed_deletion(&request_id, id, &saved_bill_id)
            .await?
        {
            return replayed;
        }
        let ObjectScope::Caller(caller) = scope else {
            return self
                .delete_saved_bill(request_id, id, saved_bill_id, None)
                .await;
        };
        let not_found = || GatewayError::not_found(Resource::SavedBill, saved_bill_id.as_str());
        let bill = self
            .find_saved_bill(id, &saved_bill_id)
            .await?
            .ok_or_else(not_found)?;
        let object = bill.object();
        let owners = self.owners(id, &object).await?;
        if !owners.contains(caller) {
            return Err(not_found());
        }
        let shared = owners.len() > 1;
        let release = Release {
            object,
            caller: caller.clone(),
            keep_at_provider: shared,
        };
        self.delete_saved_bill(request_id, id, saved_bill_id, Some(release))
            .await
    }

    /// The saved bill `saved_bill_id`, read from the provider's list (at most
    /// [`SAVED_BILL_SEARCH_LIMIT`] bills).
    async fn find_saved_bill(
        &self,
        id: ProviderId,
        saved_bill_id: &str,
    ) -> Result<Option<SavedBill>, GatewayError> {
        self.provider(id, Capability::SavedBills)?;
        let mut offset = 0;
        while offset < SAVED_BILL_SEARCH_LIMIT {
            let page = self
                .list_saved_bills(
                    id,
                    ProviderPageRequest {
                        offset,
                        limit: SAVED_BILL_PAGE,
                    },
                )
                .await?;
            let count = page.items.len() as u32;
            if let Some(bill) = page
                .items
                .into_iter()
                .find(|b| b.saved_bill_id == saved_bill_id)
            {
                return Ok(Some(bill));
            }
            if !page.more || count == 0 {
                break;
            }
            offset += count;
        }
        Ok(None)
    }

    /// Drops `release.caller`'s claim on the deleted (or, when shared, left) saved bill;
    /// answers how many callers still own it.
    pub(crate) async fn release_saved_bill(
        &self,
        id: ProviderId,
        release: &Release,
    ) -> Result<usize, GatewayError> {
        self.remove_owner(id, &release.object, &release.caller)
            .await
            .map_err(GatewayError::from)
    }
}

/// A caller's claim a saved-bill deletion drops once it succeeded.
#[derive(Debug, Clone)]
pub struct Release {
    pub object: ProviderObject,
    pub caller: String,
    /// Other callers saved the bill too: only this caller's claim is dropped, and the bill is
    /// deleted at the provider only if none is left by then (they dropped theirs meanwhile).
    pub keep_at_provider: bool,
}

/// A provider page as one caller may see it.
#[derive(Debug)]
pub struct ScopedPage<T> {
    /// The items the caller may see.
    pub items: Vec<T>,
    /// The provider has more after this page.
    pub more: bool,
    /// How many items the provider returned (the next page starts after them).
    pub read: usize,
}
