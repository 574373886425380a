//! The one HTTP client webhook deliveries go through, and its guard
//! against server-side request forgery.
//!
//! A webhook URL is chosen by whoever holds a project's secret key, so the
//! server must never be turned into a way to reach what sits behind it:
//! loopback, private networks, link-local and cloud metadata addresses,
//! and the rest of `passgate_core::webhook::is_blocked_ip`. Checking a name
//! once and dialling it later leaves a window for DNS rebinding, so the
//! check lives in the resolver the client dials through: every address a
//! name resolves to is checked, and a name with any blocked address is
//! refused whole, so what is dialled is exactly what was checked. IP-literal
//! hosts never reach a resolver and are checked before each request. The
//! client takes no proxy from the environment (a proxy would do the
//! dialling) and follows no redirects (a redirect could point anywhere).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use passgate_core::webhook::{WebhookUrl, is_blocked_ip};

/// Looks names up. The system's resolver in production; tests give their
/// own to play DNS answers that change between registration and delivery.
pub trait NameResolver: Send + Sync + 'static {
    fn lookup(&self, host: &str, port: u16) -> BoxFuture<'static, std::io::Result<Vec<SocketAddr>>>;
}

/// The system's resolver (`getaddrinfo`, through tokio).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl NameResolver for SystemResolver {
    fn lookup(&self, host: &str, port: u16) -> BoxFuture<'static, std::io::Result<Vec<SocketAddr>>> {
        let host = host.to_string();
        Box::pin(async move { Ok(tokio::net::lookup_host((host.as_str(), port)).await?.collect()) })
    }
}

/// Why a URL may not be dialled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressRefusal {
    #[error("the host name does not resolve")]
    NoAddress,
    #[error("the host resolves to a private, loopback, link-local or otherwise reserved address")]
    Blocked,
    #[error("the host name could not be resolved: {0}")]
    Lookup(String),
}

/// Resolves through `inner`, refusing a name that has any blocked address
/// (unless private addresses are allowed, for development).
#[derive(Clone)]
pub struct GuardedResolver {
    inner: Arc<dyn NameResolver>,
    allow_private: bool,
}

impl std::fmt::Debug for GuardedResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedResolver").field("allow_private", &self.allow_private).finish_non_exhaustive()
    }
}

impl GuardedResolver {
    pub fn new(inner: Arc<dyn NameResolver>, allow_private: bool) -> Self {
        Self { inner, allow_private }
    }

    /// The addresses `host` may be dialled at, all of them checked.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, AddressRefusal> {
        let addresses = self.inner.lookup(host, port).await.map_err(|e| AddressRefusal::Lookup(e.to_string()))?;
        if addresses.is_empty() {
            return Err(AddressRefusal::NoAddress);
        }
        // One blocked address refuses the name: a resolver that mixes a
        // public and a private answer is the rebinding pattern itself.
        if !self.allow_private && addresses.iter().any(|a| is_blocked_ip(a.ip())) {
            return Err(AddressRefusal::Blocked);
        }
        Ok(addresses)
    }

    /// Whether `url` may be dialled now: an IP literal is checked as it
    /// is, a name by resolving it. (Registration calls this; at delivery
    /// the client's own resolver does the same on the addresses it dials.)
    pub async fn check(&self, url: &WebhookUrl) -> Result<(), AddressRefusal> {
        match url.host_ip() {
            Some(ip) if !self.allow_private && is_blocked_ip(ip) => Err(AddressRefusal::Blocked),
            Some(_) => Ok(()),
            None => {
                let host = url.url().host_str().unwrap_or_default();
                let port = url.url().port_or_known_default().unwrap_or(443);
                self.resolve(host, port).await.map(|_| ())
            }
        }
    }
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = self.clone();
        Box::pin(async move {
            // The port is the URL's: reqwest replaces a zero port with it.
            let addresses = guard.resolve(name.as_str(), 0).await.map_err(|e| Box::new(e) as Box<_>)?;
            Ok(Box::new(addresses.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The HTTP client of webhook deliveries: guarded resolver, no proxy, no
/// redirects, a timeout on every call, HTTP/1.1 and rustls.
pub fn http_client(resolver: GuardedResolver, timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .dns_resolver(Arc::new(resolver))
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("passgate-webhooks/", env!("CARGO_PKG_VERSION")))
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
}
