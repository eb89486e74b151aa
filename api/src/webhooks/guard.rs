//! Where a webhook may point: never at a private, loopback, link-local or otherwise internal
//! address (unless `--webhook-allow-private`), or a tenant could make the API call services
//! that only it can reach (server-side request forgery).
//!
//! The host is resolved and checked at submission (a 422 naming `webhook`), and again at every
//! delivery, where the HTTP client connects only to the addresses just checked (its resolver is
//! [`CheckedResolver`]): a name that resolved to a public address at submission and to a private
//! one later (DNS rebinding) is refused then too.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Why a destination is refused.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error("{host} resolves to {addr}, a private, loopback, link-local or reserved address; webhooks must reach a public address")]
    Private { host: String, addr: IpAddr },
    #[error("cannot resolve {host}: {reason}")]
    Unresolved { host: String, reason: String },
}

/// Whether `ip` is a public unicast address: not private (RFC 1918, unique-local), loopback,
/// link-local, unspecified, multicast, broadcast, shared (CGNAT), documentation, benchmarking
/// or reserved; IPv4 inside IPv6 (mapped, compatible, NAT64, 6to4) is judged by its IPv4.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    const BLOCKED: &[([u8; 4], u32)] = &[
        ([0, 0, 0, 0], 8),       // "this network", unspecified
        ([10, 0, 0, 0], 8),      // private
        ([100, 64, 0, 0], 10),   // shared address space (CGNAT)
        ([127, 0, 0, 0], 8),     // loopback
        ([169, 254, 0, 0], 16),  // link-local (cloud metadata services)
        ([172, 16, 0, 0], 12),   // private
        ([192, 0, 0, 0], 24),    // IETF protocol assignments
        ([192, 0, 2, 0], 24),    // documentation
        ([192, 88, 99, 0], 24),  // 6to4 relay anycast
        ([192, 168, 0, 0], 16),  // private
        ([198, 18, 0, 0], 15),   // benchmarking
        ([198, 51, 100, 0], 24), // documentation
        ([203, 0, 113, 0], 24),  // documentation
        ([224, 0, 0, 0], 4),     // multicast
        ([240, 0, 0, 0], 4),     // reserved, broadcast
    ];
    !BLOCKED.iter().any(|&(net, prefix)| in_v4(ip, net, prefix))
}

fn in_v6(ip: Ipv6Addr, net: [u16; 8], prefix: u32) -> bool {
    let mask = if prefix == 0 { 0 } else { u128::MAX << (128 - prefix) };
    u128::from(ip) & mask == u128::from(Ipv6Addr::from(net)) & mask
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let bits = u128::from(ip);
    // IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d, deprecated) and NAT64
    // (64:ff9b::a.b.c.d) addresses reach the IPv4 address they carry.
    if in_v6(ip, [0, 0, 0, 0, 0, 0xffff, 0, 0], 96) || in_v6(ip, [0; 8], 96) || in_v6(ip, [0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96) {
        return bits > 1 && is_public_v4(Ipv4Addr::from(bits as u32));
    }
    // 6to4 (2002:a.b.c.d::/48) carries an IPv4 address too.
    if in_v6(ip, [0x2002, 0, 0, 0, 0, 0, 0, 0], 16) {
        return is_public_v4(Ipv4Addr::from((bits >> 80) as u32));
    }
    const BLOCKED: &[([u16; 8], u32)] = &[
        ([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48),  // local-use NAT64
        ([0x100, 0, 0, 0, 0, 0, 0, 0], 64),      // discard-only
        ([0x2001, 0, 0, 0, 0, 0, 0, 0], 23),     // IETF protocol assignments (Teredo, ...)
        ([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32), // documentation
        ([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20),     // documentation
        ([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7),      // unique-local
        ([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10),     // link-local
        ([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10),     // site-local (deprecated)
        ([0xff00, 0, 0, 0, 0, 0, 0, 0], 8),      // multicast
    ];
    !BLOCKED.iter().any(|&(net, prefix)| in_v6(ip, net, prefix))
}

/// What the guard allows, and how long a lookup may take.
#[derive(Clone, Copy, Debug)]
pub struct Guard {
    /// `--webhook-allow-private`: every address is allowed (tests, private deployments).
    pub allow_private: bool,
    pub dns_timeout: Duration,
}

impl Guard {
    /// Resolve `host` (a name or an IP literal, without brackets) and check every address it
    /// has: the addresses, all allowed, or why not.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, GuardError> {
        let unresolved = |reason: String| GuardError::Unresolved { host: host.to_string(), reason };
        let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::time::timeout(self.dns_timeout, tokio::net::lookup_host((host, port)))
                .await
                .map_err(|_| unresolved(format!("no answer within {} s", self.dns_timeout.as_secs_f64())))?
                .map_err(|e| unresolved(e.to_string()))?
                .collect(),
        };
        if addrs.is_empty() {
            return Err(unresolved("no addresses".into()));
        }
        if !self.allow_private {
            // One private address is enough to refuse: a client may connect to any of them.
            if let Some(bad) = addrs.iter().find(|a| !is_public(a.ip())) {
                return Err(GuardError::Private { host: host.to_string(), addr: bad.ip() });
            }
        }
        Ok(addrs)
    }

    /// Check a webhook URL's host (its IP literal, or every address its name resolves to).
    pub async fn check_url(&self, url: &url::Url) -> Result<Vec<SocketAddr>, GuardError> {
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_string(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err(GuardError::Unresolved { host: String::new(), reason: "the URL names no host".into() }),
        };
        self.resolve(&host, url.port_or_known_default().unwrap_or(443)).await
    }
}

/// The delivery client's resolver: it resolves through [`Guard::resolve`], so the client connects
/// only to addresses checked at that moment. (IP literals never reach a resolver: the deliverer
/// checks them itself before sending.)
pub struct CheckedResolver(pub Guard);

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = self.0;
        Box::pin(async move {
            // The port is replaced by the URL's when the client connects.
            let addrs = guard.resolve(name.as_str(), 0).await?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// The resolver, shared with the client.
pub fn resolver(guard: Guard) -> Arc<CheckedResolver> {
    Arc::new(CheckedResolver(guard))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(s: &str) -> bool {
        is_public(s.parse().unwrap())
    }

    #[test]
    fn internal_addresses_are_not_public() {
        for ip in [
            "0.0.0.0",
            "10.1.2.3",
            "100.64.0.1",
            "100.127.255.255",
            "127.0.0.1",
            "127.8.8.8",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "192.0.0.8",
            "192.0.2.1",
            "198.18.0.1",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "::",
            "::1",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "2001:db8::1",
            "fec0::1",
        ] {
            assert!(!public(ip), "{ip} must not be public");
        }
        for ip in
            ["8.8.8.8", "93.184.215.14", "1.1.1.1", "172.32.0.1", "100.128.0.1", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::"]
        {
            assert!(public(ip), "{ip} is public");
        }
    }

    #[tokio::test]
    async fn the_guard_resolves_and_refuses() {
        let strict = Guard { allow_private: false, dns_timeout: Duration::from_secs(5) };
        let url = url::Url::parse("http://localhost:9/h").unwrap();
        assert!(matches!(strict.check_url(&url).await, Err(GuardError::Private { .. })));
        let url = url::Url::parse("http://[::ffff:192.168.0.1]/h").unwrap();
        assert!(matches!(strict.check_url(&url).await, Err(GuardError::Private { .. })));
        let url = url::Url::parse("https://93.184.215.14/h").unwrap();
        assert_eq!(strict.check_url(&url).await.unwrap(), vec!["93.184.215.14:443".parse().unwrap()]);
        let open = Guard { allow_private: true, ..strict };
        let url = url::Url::parse("http://127.0.0.1:9/h").unwrap();
        assert_eq!(open.check_url(&url).await.unwrap(), vec!["127.0.0.1:9".parse().unwrap()]);
    }
}
