//! `billpay.v1.CustomerService`.

use tonic::{Request, Response, Status};

use super::{convert, validate::Violations, Api};
use crate::domain::Capability;
use crate::pb::{self, customer_service_server::CustomerService};

/// Longest product id (Interswitch paymentCode: 20).
pub(crate) const MAX_PRODUCT_ID: usize = 20;
/// Longest customer id (Interswitch customerId: 50).
pub(crate) const MAX_CUSTOMER_ID: usize = 50;

#[tonic::async_trait]
impl CustomerService for Api {
    async fn validate_customer(
        &self,
        request: Request<pb::ValidateCustomerRequest>,
    ) -> Result<Response<pb::ValidateCustomerResponse>, Status> {
        let r = request.into_inner();
        let mut v = Violations::default();
        let id = v.provider("provider", r.provider);
        v.text("product_id", &r.product_id, MAX_PRODUCT_ID);
        v.text("customer_id", &r.customer_id, MAX_CUSTOMER_ID);
        v.finish()?;
        let id = id.expect("checked above");
        let validation = self
            .gateway
            .validate_customer(id, &r.product_id, &r.customer_id)
            .await?;
        Ok(Response::new(convert::validation(validation)))
    }

    async fn lookup_bill(
        &self,
        request: Request<pb::LookupBillRequest>,
    ) -> Result<Response<pb::LookupBillResponse>, Status> {
        let r = request.into_inner();
        let mut v = Violations::default();
        let id = v.provider("provider", r.provider);
        v.text("product_id", &r.product_id, MAX_PRODUCT_ID);
        v.text("customer_id", &r.customer_id, MAX_CUSTOMER_ID);
        v.finish()?;
        let id = id.expect("checked above");
        Err(self.gateway.unsupported(id, Capability::LookupBill).into())
    }
}
