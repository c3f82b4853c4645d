//! Who is asking: the connection's peer, or, behind a reverse proxy listed
//! in `[daemon] trusted_proxies`, the client its `X-Forwarded-For` names.
//! The header is believed only from those proxies: anyone else could write
//! any address in it and dodge the throttle.

use std::net::IpAddr;

use axum::http::HeaderMap;

use crate::config::DaemonSettings;
use crate::source::policy::Network;

#[derive(Debug, Clone, Default)]
pub struct ClientAddresses {
    proxies: Vec<Network>,
}

impl ClientAddresses {
    /// The trusted proxies of the settings (checked when the config loaded).
    pub fn new(settings: &DaemonSettings) -> ClientAddresses {
        ClientAddresses {
            proxies: settings
                .trusted_proxies
                .iter()
                .filter_map(|proxy| Network::parse(proxy))
                .collect(),
        }
    }

    /// The client of a request that came from `peer`: walking
    /// `X-Forwarded-For` from its right end, each hop a trusted proxy added
    /// is believed, up to the first address that is not a trusted proxy.
    pub fn of(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let forwarded: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .collect();
        let mut client = peer;
        for hop in forwarded.iter().rev() {
            if !self.is_proxy(client) {
                break;
            }
            match hop.trim_matches(['[', ']']).parse::<IpAddr>() {
                Ok(address) => client = address,
                Err(_) => break,
            }
        }
        client
    }

    fn is_proxy(&self, address: IpAddr) -> bool {
        self.proxies.iter().any(|proxy| proxy.contains(address))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(forwarded: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", forwarded.parse().unwrap());
        headers
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let none = ClientAddresses::default();
        assert_eq!(none.of(ip("10.0.0.5"), &headers("203.0.113.9")), ip("10.0.0.5"));

        let proxied = ClientAddresses::new(&DaemonSettings {
            trusted_proxies: vec!["10.0.0.0/24".to_owned()],
            ..DaemonSettings::default()
        });
        assert_eq!(proxied.of(ip("10.0.0.5"), &headers("203.0.113.9")), ip("203.0.113.9"));
        // A client writing its own header: the proxy appends the real address.
        assert_eq!(
            proxied.of(ip("10.0.0.5"), &headers("1.2.3.4, 203.0.113.9")),
            ip("203.0.113.9")
        );
        // Two trusted hops.
        assert_eq!(
            proxied.of(ip("10.0.0.5"), &headers("203.0.113.9, 10.0.0.7")),
            ip("203.0.113.9")
        );
        // Not from the proxy: the header is ignored.
        assert_eq!(proxied.of(ip("198.51.100.1"), &headers("1.2.3.4")), ip("198.51.100.1"));
        assert_eq!(proxied.of(ip("10.0.0.5"), &headers("garbage")), ip("10.0.0.5"));
    }
}
