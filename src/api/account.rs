//! `billpay.v1.AccountService`: balances (floats) and accounts held at a provider. Both are
//! the merchant's as a whole, so only callers with `merchant_reads` may read them.

use tonic::{Request, Response, Status};

use super::{catalog::provider_page, convert, customer::MAX_PRODUCT_ID, validate::Violations, Api};
use crate::auth::ObjectScope;
use crate::domain::BalanceQuery;
use crate::pb::{self, account_service_server::AccountService};

#[tonic::async_trait]
impl AccountService for Api {
    async fn get_balance(
        &self,
        request: Request<pb::GetBalanceRequest>,
    ) -> Result<Response<pb::GetBalanceResponse>, Status> {
        ObjectScope::of(request.extensions())
            .require_merchant("billpay.v1.AccountService/GetBalance")?;
        let r = request.into_inner();
        let mut v = Violations::default();
        let id = v.provider("provider", r.provider);
        v.optional_text("account_id", &r.account_id, 64);
        v.optional_text("product_id", &r.product_id, MAX_PRODUCT_ID);
        v.finish()?;
        let query = BalanceQuery {
            account_id: r.account_id,
            product_id: r.product_id,
        };
        let balances = self
            .gateway
            .get_balance(id.expect("checked above"), &query)
            .await?;
        Ok(Response::new(pb::GetBalanceResponse {
            balances: balances.into_iter().map(convert::balance).collect(),
        }))
    }

    async fn list_accounts(
        &self,
        request: Request<pb::ListAccountsRequest>,
    ) -> Result<Response<pb::ListAccountsResponse>, Status> {
        ObjectScope::of(request.extensions())
            .require_merchant("billpay.v1.AccountService/ListAccounts")?;
        let r = request.into_inner();
        let (id, page) = provider_page(r.provider, r.page_size, &r.page_token, "")?;
        let (items, next_page_token) = page.apply(self.gateway.list_accounts(id).await?);
        Ok(Response::new(pb::ListAccountsResponse {
            accounts: items.into_iter().map(convert::account).collect(),
            next_page_token,
        }))
    }
}
