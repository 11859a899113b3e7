//! The HTTP clients keyward calls other systems with (providers' token
//! endpoints, the connection proxy, the webhook), and the rule of where
//! they may go (`domain::outbound::check_outbound_target`): checked on the
//! URL before each call, and again on every address a name resolves to,
//! at connect time, so that a public name pointing at 127.0.0.1 gets
//! nowhere either.

use super::{App, AppError};
use crate::domain::outbound::{check_outbound_target, is_public_address};
use crate::domain::settings::OUTBOUND_ALLOW_PRIVATE;
use std::net::SocketAddr;
use std::sync::Arc;

pub struct OutboundHttp {
    /// Resolves names to public addresses only.
    public_only: reqwest::Client,
    /// For development and tests, while the setting allows it.
    any: reqwest::Client,
}

/// A resolver that keeps only public addresses.
struct PublicAddresses;

impl reqwest::dns::Resolve for PublicAddresses {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = found.into_iter().filter(|a| is_public_address(a.ip())).collect();
            if public.is_empty() {
                let error: Box<dyn std::error::Error + Send + Sync> =
                    format!("{host} resolves to no public address").into();
                return Err(error);
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

const IDLE_CONNECTIONS_PER_HOST: usize = 64;
const IDLE_CONNECTION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

impl OutboundHttp {
    pub fn new() -> Result<Self, AppError> {
        // Redirects are never followed: a provider or an API could send the
        // next request (and its secrets) anywhere.
        let build = |b: reqwest::ClientBuilder| {
            // No proxy from the environment either: a proxy would resolve
            // names itself, past the address check.
            // Idle connections a burst left behind (a gateway's upstream
            // serving hundreds of callers at once) are kept up to a bound,
            // and not for long.
            b.redirect(reqwest::redirect::Policy::none())
                .pool_max_idle_per_host(IDLE_CONNECTIONS_PER_HOST)
                .pool_idle_timeout(IDLE_CONNECTION_TIMEOUT)
                .no_proxy()
                .build()
                .map_err(|e| AppError::Startup(format!("HTTP client: {e}")))
        };
        Ok(OutboundHttp {
            public_only: build(reqwest::Client::builder().dns_resolver(Arc::new(PublicAddresses)))?,
            any: build(reqwest::Client::builder().connect_timeout(std::time::Duration::from_secs(10)))?,
        })
    }
}

/// The body of `response`, read to at most `max` bytes; `None` when it is
/// larger (what other systems send is bounded before it is parsed).
pub(super) async fn read_capped(
    response: &mut reqwest::Response,
    max: usize,
) -> Result<Option<Vec<u8>>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > max {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

impl App {
    /// The client of the protected-resource gateway. Its upstreams are
    /// declared by server admins and are usually beside keyward on a private
    /// network, so the address rule of other outbound calls does not apply;
    /// redirects are still not followed.
    pub fn gateway_http(&self) -> &reqwest::Client {
        &self.http.any
    }

    /// The client to call `url` with, if keyward may call it at all.
    pub async fn outbound_http(&self, url: &str) -> Result<&reqwest::Client, AppError> {
        self.outbound_http_for(url, self.allow_private_addresses().await)
    }

    /// [`App::outbound_http`] under a rule of the caller's: whether private
    /// and loopback addresses are allowed.
    pub fn outbound_http_for(&self, url: &str, allow_private: bool) -> Result<&reqwest::Client, AppError> {
        let parsed = url::Url::parse(url).map_err(|_| AppError::Invalid("the target is not a URL".into()))?;
        check_outbound_target(&parsed, allow_private)
            .map_err(|why| AppError::Forbidden(format!("keyward does not call this address: it {why}")))?;
        Ok(if allow_private { &self.http.any } else { &self.http.public_only })
    }

    /// Whether the setting lets outbound URLs point at private addresses.
    pub async fn allow_private_addresses(&self) -> bool {
        self.setting(OUTBOUND_ALLOW_PRIVATE).await.map(|s| s.as_bool()).unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::dns::Resolve;
    use std::str::FromStr;

    #[tokio::test]
    async fn names_that_resolve_to_private_addresses_get_nowhere() {
        // What a public-looking name pointing at 127.0.0.1 would meet at
        // connect time ("localhost" resolves here without a DNS server).
        let name = reqwest::dns::Name::from_str("localhost").unwrap();
        let refused = PublicAddresses.resolve(name).await.err().expect("refused");
        assert!(refused.to_string().contains("no public address"), "{refused}");
    }
}
