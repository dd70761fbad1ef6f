//! `billpay.v1.AccountService`. No configured adapter reads balances yet, so every call answers
//! PROVIDER_NOT_CONFIGURED or CAPABILITY_NOT_SUPPORTED after validation.

use tonic::{Request, Response, Status};

use super::{catalog::provider_page, validate::Violations, Api};
use crate::domain::Capability;
use crate::pb::{self, account_service_server::AccountService};

#[tonic::async_trait]
impl AccountService for Api {
    async fn get_balance(
        &self,
        request: Request<pb::GetBalanceRequest>,
    ) -> Result<Response<pb::GetBalanceResponse>, Status> {
        let r = request.into_inner();
        let mut v = Violations::default();
        let id = v.provider("provider", r.provider);
        v.optional_text("account_id", &r.account_id, 64);
        v.finish()?;
        let id = id.expect("checked above");
        Err(self.gateway.unsupported(id, Capability::GetBalance).into())
    }

    async fn list_accounts(
        &self,
        request: Request<pb::ListAccountsRequest>,
    ) -> Result<Response<pb::ListAccountsResponse>, Status> {
        let r = request.into_inner();
        let (id, _page) = provider_page(r.provider, r.page_size, &r.page_token, "")?;
        Err(self
            .gateway
            .unsupported(id, Capability::ListAccounts)
            .into())
    }
}
