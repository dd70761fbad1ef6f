//! `billpay.v1.DirectoryService`: the biller directory with each route's live state.

use tonic::{Request, Response, Status};

use super::{convert, page::Page, validate::Violations, Api};
use crate::domain::directory::MAX_DIRECTORY_BILLER_ID;
use crate::pb::{self, directory_service_server::DirectoryService};

#[tonic::async_trait]
impl DirectoryService for Api {
    async fn list_directory_billers(
        &self,
        request: Request<pb::ListDirectoryBillersRequest>,
    ) -> Result<Response<pb::ListDirectoryBillersResponse>, Status> {
        let r = request.into_inner();
        let mut v = Violations::default();
        v.optional_text("country_code", &r.country_code, 2);
        v.optional_text("category", &r.category, 50);
        v.finish()?;
        let filter = format!("{}/{}", r.country_code, r.category);
        let page = Page::parse(r.page_size, &r.page_token, filter)?;
        let (billers, next_page_token) =
            page.apply(self.gateway.list_directory(&r.country_code, &r.category));
        let mut out = Vec::with_capacity(billers.len());
        for biller in &billers {
            out.push(convert::directory_biller(
                self.gateway.biller_view(biller).await,
            ));
        }
        Ok(Response::new(pb::ListDirectoryBillersResponse {
            billers: out,
            next_page_token,
        }))
    }

    async fn get_directory_biller(
        &self,
        request: Request<pb::GetDirectoryBillerRequest>,
    ) -> Result<Response<pb::GetDirectoryBillerResponse>, Status> {
        let r = request.into_inner();
        let mut v = Violations::default();
        v.text(
            "directory_biller_id",
            &r.directory_biller_id,
            MAX_DIRECTORY_BILLER_ID,
        );
        v.finish()?;
        let view = self
            .gateway
            .get_directory_biller(&r.directory_biller_id)
            .await?;
        Ok(Response::new(pb::GetDirectoryBillerResponse {
            biller: Some(convert::directory_biller(view)),
        }))
    }
}
