//! Picks the gateway adapter for a tenant's gateway settings (`gateway.kind`).
//!
//! Built once per process; the adapters share one HTTP client and one bound on
//! the calls in flight (`BILLING_GATEWAY_CONCURRENCY`). A new provider
//! plugs in with its adapter folder and one arm in [`Gateways::for_config`]; tests
//! and other deployments can serve a kind with an adapter of their own through
//! [`Gateways::plug`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use super::cloudpayments::{self, Account, CloudPayments};
use super::yookassa::{self, YooKassa};
use super::{GatewayError, PaymentGateway};
use crate::domain::tenant::GatewayConfig;

/// Builds an adapter bound to one merchant account.
pub trait GatewayFactory: Send + Sync {
    /// The adapter for these settings; [`GatewayError::Unsupported`] when it cannot serve them.
    fn build(&self, config: &GatewayConfig) -> Result<Box<dyn PaymentGateway>, GatewayError>;
}

/// The payment gateways this process can talk to.
#[derive(Clone)]
pub struct Gateways {
    cloudpayments: cloudpayments::client::Client,
    yookassa: yookassa::client::Client,
    plugged: HashMap<&'static str, Arc<dyn GatewayFactory>>,
    /// Permits for the calls in flight, shared by every adapter handed out.
    calls: Arc<Semaphore>,
}

impl Gateways {
    /// The built-in adapters; provider calls give up after `timeout` (the outcome
    /// is then unknown and reconciled), and at most `concurrency` of them run at
    /// once in this process (more wait for a turn, outside their timeout).
    pub fn new(timeout: Duration, concurrency: usize) -> Result<Self, GatewayError> {
        // One connection pool for every provider's calls.
        let http =
            crate::provider_http::client(timeout).map_err(|e| GatewayError::Protocol(format!("http client: {e}")))?;
        Ok(Gateways {
            cloudpayments: cloudpayments::client::Client::new(http.clone()),
            yookassa: yookassa::client::Client::new(http),
            plugged: HashMap::new(),
            calls: Arc::new(Semaphore::new(concurrency.max(1))),
        })
    }

    /// Serves tenants whose `gateway.kind` is `kind` with `factory` instead.
    pub fn plug(mut self, kind: &'static str, factory: Arc<dyn GatewayFactory>) -> Self {
        self.plugged.insert(kind, factory);
        self
    }

    /// The adapter for a tenant's gateway settings, its calls traced and bounded.
    pub fn for_config(&self, config: &GatewayConfig) -> Result<Box<dyn PaymentGateway>, GatewayError> {
        let inner = self.untraced(config)?;
        Ok(Box::new(super::traced::Traced { inner, calls: self.calls.clone() }))
    }

    fn untraced(&self, config: &GatewayConfig) -> Result<Box<dyn PaymentGateway>, GatewayError> {
        if let Some(factory) = self.plugged.get(config.kind()) {
            return factory.build(config);
        }
        match config {
            GatewayConfig::Cloudpayments { public_id, api_secret, api_url } => {
                let account = Account {
                    public_id: public_id.clone(),
                    api_secret: api_secret.clone(),
                    base_url: api_url.clone().unwrap_or_else(|| cloudpayments::DEFAULT_API_URL.to_owned()),
                };
                Ok(Box::new(CloudPayments::new(self.cloudpayments.clone(), account)))
            }
            GatewayConfig::Yookassa { shop_id, api_secret, api_url, notification_ips } => {
                let account = yookassa::client::Account {
                    shop_id: shop_id.clone(),
                    api_secret: api_secret.clone(),
                    base_url: api_url.clone().unwrap_or_else(|| yookassa::DEFAULT_API_URL.to_owned()),
                };
                Ok(Box::new(YooKassa::new(self.yookassa.clone(), account, notification_ips.as_deref())?))
            }
        }
    }
}
