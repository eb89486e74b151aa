//! The submission-time checks of a request's `webhook`, below every dialect: the tenant has a
//! secret to sign with, and the URL's host resolves only to addresses the guard allows.
use darkroom_shared::store::Tenant;

use super::Service;
use crate::error::ApiError;
use crate::webhooks::guard::GuardError;

fn refused(message: String) -> ApiError {
    ApiError::Parameter { field: "webhook".into(), message }
}

impl Service {
    /// Check the (validated) `webhook` URL of a request of `tenant`, if it has one.
    pub(super) async fn check_webhook(&self, tenant: &Tenant, webhook: Option<&str>) -> Result<(), ApiError> {
        let Some(raw) = webhook else { return Ok(()) };
        if self.store.webhook_secrets(tenant.id).await?.is_empty() {
            return Err(refused(format!(
                "tenant {} has no webhook secret to sign deliveries with; an operator creates one with `darkroom-api tenant webhook-secret {}`",
                tenant.name, tenant.name
            )));
        }
        let url = darkroom_shared::validate::parse_webhook_url(raw)?;
        match self.settings.webhook_guard.check_url(&url).await {
            Ok(_) => Ok(()),
            Err(GuardError::Private { host, addr }) => Err(refused(format!(
                "webhook host {host} resolves to {addr}, a private, loopback, link-local or reserved address; webhooks must reach a public address"
            ))),
            Err(e @ GuardError::Unresolved { .. }) => Err(refused(format!("webhook {e}"))),
        }
    }
}
