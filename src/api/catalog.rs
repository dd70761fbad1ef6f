//! `billpay.v1.CatalogService`.

use tonic::{Request, Response, Status};

use super::{convert, page::Page, validate::Violations, Api};
use crate::domain::ProviderId;
use crate::pb::{self, catalog_service_server::CatalogService};

/// Validates a provider and a page request; nothing is called before this passes.
pub(crate) fn provider_page(
    provider: i32,
    page_size: i32,
    page_token: &str,
    filter: &str,
) -> Result<(ProviderId, Page), Status> {
    let mut v = Violations::default();
    let id = v.provider("provider", provider);
    v.finish()?;
    let id = id.expect("checked above");
    let page = Page::parse(page_size, page_token, format!("{id}/{filter}"))?;
    Ok((id, page))
}

#[tonic::async_trait]
impl CatalogService for Api {
    async fn list_providers(
        &self,
        _request: Request<pb::ListProvidersRequest>,
    ) -> Result<Response<pb::ListProvidersResponse>, Status> {
        let providers = self
            .gateway
            .providers()
            .map(|p| pb::ProviderInfo {
                provider: convert::provider(p.id()) as i32,
                display_name: p.display_name().to_owned(),
                currency_codes: p.currencies().iter().map(|c| c.code().to_owned()).collect(),
                capabilities: p
                    .capabilities()
                    .iter()
                    .map(|c| convert::capability(*c) as i32)
                    .collect(),
                sandbox: self.gateway.sandbox(),
            })
            .collect();
        Ok(Response::new(pb::ListProvidersResponse { providers }))
    }

    async fn list_categories(
        &self,
        request: Request<pb::ListCategoriesRequest>,
    ) -> Result<Response<pb::ListCategoriesResponse>, Status> {
        let r = request.into_inner();
        let (id, page) = provider_page(r.provider, r.page_size, &r.page_token, "")?;
        let (items, next_page_token) = page.apply(self.gateway.list_categories(id).await?);
        Ok(Response::new(pb::ListCategoriesResponse {
            categories: items.into_iter().map(convert::category).collect(),
            next_page_token,
        }))
    }

    async fn list_billers(
        &self,
        request: Request<pb::ListBillersRequest>,
    ) -> Result<Response<pb::ListBillersResponse>, Status> {
        let r = request.into_inner();
        let mut v = Violations::default();
        v.optional_text("category_id", &r.category_id, 50);
        v.optional_text("short_name", &r.short_name, 50);
        v.finish()?;
        let filter = format!("{}/{}", r.category_id, r.short_name.to_ascii_lowercase());
        let (id, page) = provider_page(r.provider, r.page_size, &r.page_token, &filter)?;
        let category = Some(r.category_id).filter(|c| !c.is_empty());
        let mut billers = self.gateway.list_billers(id, category).await?;
        if !r.short_name.is_empty() {
            billers.retain(|b| b.short_name.eq_ignore_ascii_case(&r.short_name));
        }
        let (items, next_page_token) = page.apply(billers);
        Ok(Response::new(pb::ListBillersResponse {
            billers: items.into_iter().map(convert::biller).collect(),
            next_page_token,
        }))
    }

    async fn list_products(
        &self,
        request: Request<pb::ListProductsRequest>,
    ) -> Result<Response<pb::ListProductsResponse>, Status> {
        let r = request.into_inner();
        let mut v = Violations::default();
        // IP2 lists its products flat, with no biller; every other provider lists per biller.
        if r.provider == pb::Provider::IntelworldIp2 as i32 {
            v.optional_text("biller_id", &r.biller_id, 50);
        } else {
            v.text("biller_id", &r.biller_id, 50);
        }
        v.finish()?;
        let (id, page) = provider_page(r.provider, r.page_size, &r.page_token, &r.biller_id)?;
        let (items, next_page_token) =
            page.apply(self.gateway.list_products(id, r.biller_id).await?);
        Ok(Response::new(pb::ListProductsResponse {
            products: items.into_iter().map(convert::product).collect(),
            next_page_token,
        }))
    }

    async fn list_payment_methods(
        &self,
        request: Request<pb::ListPaymentMethodsRequest>,
    ) -> Result<Response<pb::ListPaymentMethodsResponse>, Status> {
        let r = request.into_inner();
        let (id, page) = provider_page(r.provider, r.page_size, &r.page_token, "")?;
        let (items, next_page_token) = page.apply(self.gateway.list_payment_methods(id).await?);
        Ok(Response::new(pb::ListPaymentMethodsResponse {
            payment_methods: items.into_iter().map(convert::payment_method).collect(),
            next_page_token,
        }))
    }
}
