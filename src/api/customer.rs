//! `billpay.v1.CustomerService`.

use tonic::{Request, Response, Status};

use super::{convert, validate::Violations, Api};
use crate::domain::{directory::MAX_DIRECTORY_BILLER_ID, Capability, OffersQuery};
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
        if !r.directory_biller_id.is_empty() {
            v.optional_text(
                "directory_biller_id",
                &r.directory_biller_id,
                MAX_DIRECTORY_BILLER_ID,
            );
            v.text("customer_id", &r.customer_id, MAX_CUSTOMER_ID);
            unset_with_directory(
                &mut v,
                &[
                    ("provider", r.provider != 0),
                    ("product_id", !r.product_id.is_empty()),
                    ("biller_id", !r.biller_id.is_empty()),
                ],
            );
            v.finish()?;
            let gateway = &self.gateway;
            let customer_id = r.customer_id.as_str();
            let (route, validation) = gateway
                .ask_routes(
                    &r.directory_biller_id,
                    Capability::ValidateCustomer,
                    |route| async move {
                        gateway
                            .validate_customer(
                                route.provider,
                                &route.biller_id,
                                &route.product_id,
                                customer_id,
                            )
                            .await
                    },
                )
                .await?;
            return Ok(Response::new(pb::ValidateCustomerResponse {
                provider: convert::provider(route.provider) as i32,
                biller_id: route.biller_id,
                product_id: route.product_id,
                ..convert::validation(validation)
            }));
        }
        let id = v.provider("provider", r.provider);
        v.text("product_id", &r.product_id, MAX_PRODUCT_ID);
        v.text("customer_id", &r.customer_id, MAX_CUSTOMER_ID);
        v.optional_text("biller_id", &r.biller_id, 50);
        v.finish()?;
        let id = id.expect("checked above");
        let validation = self
            .gateway
            .validate_customer(id, &r.biller_id, &r.product_id, &r.customer_id)
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
        let amount = r.amount.as_ref().and_then(|a| v.amount("amount", Some(a)));
        v.finish()?;
        let id = id.expect("checked above");
        let bill = self
            .gateway
            .lookup_bill(id, &r.product_id, &r.customer_id, amount)
            .await?;
        Ok(Response::new(convert::bill_lookup(bill)))
    }

    async fn get_payment_options(
        &self,
        request: Request<pb::GetPaymentOptionsRequest>,
    ) -> Result<Response<pb::GetPaymentOptionsResponse>, Status> {
        let r = request.into_inner();
        let mut v = Violations::default();
        if !r.directory_biller_id.is_empty() {
            v.optional_text(
                "directory_biller_id",
                &r.directory_biller_id,
                MAX_DIRECTORY_BILLER_ID,
            );
            v.text("customer_id", &r.customer_id, MAX_CUSTOMER_ID);
            unset_with_directory(
                &mut v,
                &[
                    ("provider", r.provider != 0),
                    ("product_id", !r.product_id.is_empty()),
                    ("biller_id", !r.biller_id.is_empty()),
                ],
            );
            let amount = r.amount.as_ref().and_then(|a| v.amount("amount", Some(a)));
            let contact = super::payment::contact(&mut v, r.contact);
            v.finish()?;
            let gateway = &self.gateway;
            let (customer_id, contact) = (&r.customer_id, &contact);
            let (route, offers) = gateway
                .ask_routes(
                    &r.directory_biller_id,
                    Capability::GetPaymentOptions,
                    |route| async move {
                        let query = OffersQuery {
                            biller_id: route.biller_id.clone(),
                            product_id: route.product_id.clone(),
                            customer_id: customer_id.clone(),
                            amount,
                            contact: contact.clone(),
                        };
                        gateway.payment_offers(route.provider, &query).await
                    },
                )
                .await?;
            return Ok(Response::new(pb::GetPaymentOptionsResponse {
                provider: convert::provider(route.provider) as i32,
                biller_id: route.biller_id,
                ..convert::payment_offers(offers)
            }));
        }
        let id = v.provider("provider", r.provider);
        v.text("biller_id", &r.biller_id, 50);
        v.optional_text("product_id", &r.product_id, MAX_PRODUCT_ID);
        v.text("customer_id", &r.customer_id, MAX_CUSTOMER_ID);
        let amount = r.amount.as_ref().and_then(|a| v.amount("amount", Some(a)));
        let contact = super::payment::contact(&mut v, r.contact);
        v.finish()?;
        let query = OffersQuery {
            biller_id: r.biller_id,
            product_id: r.product_id,
            customer_id: r.customer_id,
            amount,
            contact,
        };
        let offers = self
            .gateway
            .payment_offers(id.expect("checked above"), &query)
            .await?;
        Ok(Response::new(convert::payment_offers(offers)))
    }
}

/// Flags request fields that a directory_biller_id request leaves to the route.
fn unset_with_directory(v: &mut Violations, fields: &[(&str, bool)]) {
    for (field, set) in fields {
        if *set {
            v.add(
                field,
                "leave unset with directory_biller_id: the route names it",
            );
        }
    }
}
