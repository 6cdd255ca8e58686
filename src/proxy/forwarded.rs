//! Who the client is, and the forwarding headers the upstream receives.
//!
//! The client address is the TCP peer, unless the peer is a configured
//! trusted proxy: then it is the right-most address in `X-Forwarded-For` that
//! is not itself a trusted proxy. A client that is not a trusted proxy cannot
//! choose its address, its scheme or its host by sending these headers: the
//! gateway replaces them.
//!
//! ```
//! use portcullis::proxy::forwarded::client_ip;
//! let trusted = ["10.0.0.0/8".parse().unwrap()];
//! let peer = "10.1.2.3".parse().unwrap();
//! let xff = Some("203.0.113.9, 10.9.9.9");
//! assert_eq!(client_ip(peer, xff, &trusted).to_string(), "203.0.113.9");
//! let untrusted_peer = "198.51.100.7".parse().unwrap();
//! assert_eq!(client_ip(untrusted_peer, Some("1.2.3.4"), &trusted).to_string(), "198.51.100.7");
//! ```

use std::net::IpAddr;

use http::{HeaderMap, HeaderName, HeaderValue, header};
use ipnet::IpNet;

/// The client as the gateway sees it, in the request extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientInfo {
    /// The client's address (see the module docs).
    pub ip: IpAddr,
    /// The TCP peer's address.
    pub peer: IpAddr,
    /// Whether the peer is a trusted proxy.
    pub peer_trusted: bool,
    /// Whether the client reached us over HTTPS (directly, or per a trusted proxy).
    pub https: bool,
}

/// Whether `ip` is inside one of the `trusted` ranges.
pub fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    let ip = canonical_ip(ip);
    trusted.iter().any(|net| net.contains(&ip))
}

/// Maps IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`) to IPv4.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The client address: see the module docs.
pub fn client_ip(peer: IpAddr, x_forwarded_for: Option<&str>, trusted: &[IpNet]) -> IpAddr {
    let peer = canonical_ip(peer);
    if !is_trusted(peer, trusted) {
        return peer;
    }
    let Some(chain) = x_forwarded_for else { return peer };
    let mut client = peer;
    for hop in chain.rsplit(',') {
        let Ok(ip) = hop.trim().parse::<IpAddr>() else {
            // A malformed entry ends what we can believe.
            break;
        };
        client = canonical_ip(ip);
        if !is_trusted(client, trusted) {
            break;
        }
    }
    client
}

/// Works out [`ClientInfo`] for a request from `peer`.
pub fn client_info(peer: IpAddr, tls: bool, headers: &HeaderMap, trusted: &[IpNet]) -> ClientInfo {
    let peer = canonical_ip(peer);
    let peer_trusted = is_trusted(peer, trusted);
    let xff = joined(headers, &X_FORWARDED_FOR);
    let ip = client_ip(peer, xff.as_deref(), trusted);
    let https = if peer_trusted && !tls {
        headers
            .get(&X_FORWARDED_PROTO)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
    } else {
        tls
    };
    ClientInfo { ip, peer, peer_trusted, https }
}

/// `X-Forwarded-For`.
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`.
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-Host`.
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// All values of a repeated header joined with `, ` (as RFC 9110 allows).
fn joined(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let mut values = headers.get_all(name).iter().filter_map(|v| v.to_str().ok());
    let first = values.next()?;
    Some(values.fold(first.to_owned(), |acc, v| acc + ", " + v))
}

/// Rewrites the forwarding headers of a request about to go upstream.
///
/// From a trusted proxy, the incoming `X-Forwarded-For` chain is kept and the
/// peer appended; from anyone else, every forwarding header is replaced by
/// what the gateway itself saw.
pub fn set_forwarding_headers(headers: &mut HeaderMap, client: &ClientInfo, host: Option<&str>) {
    let proto = if client.https { "https" } else { "http" };
    let incoming_chain = if client.peer_trusted { joined(headers, &X_FORWARDED_FOR) } else { None };
    let incoming_host = if client.peer_trusted {
        headers.get(&X_FORWARDED_HOST).and_then(|v| v.to_str().ok()).map(str::to_owned)
    } else {
        None
    };
    let incoming_forwarded = if client.peer_trusted { joined(headers, &header::FORWARDED) } else { None };
    for name in [&X_FORWARDED_FOR, &X_FORWARDED_PROTO, &X_FORWARDED_HOST, &header::FORWARDED] {
        headers.remove(name);
    }
    let chain = match incoming_chain {
        Some(chain) => format!("{chain}, {}", client.peer),
        None => client.peer.to_string(),
    };
    let host = incoming_host.as_deref().or(host);
    let node = match client.peer {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("\"[{v6}]\""),
    };
    let mut element = format!("for={node};proto={proto}");
    if let Some(host) = host.filter(|h| h.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')) {
        element.push_str(";host=\"");
        element.push_str(host);
        element.push('"');
    }
    let forwarded = match incoming_forwarded {
        Some(previous) => format!("{previous}, {element}"),
        None => element,
    };
    let mut set = |name: &HeaderName, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name.clone(), value);
        }
    };
    set(&X_FORWARDED_FOR, &chain);
    set(&X_FORWARDED_PROTO, proto);
    if let Some(host) = host {
        set(&X_FORWARDED_HOST, host);
    }
    set(&header::FORWARDED, &forwarded);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn spoofed_forwarded_for_from_untrusted_peer_is_ignored() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "1.2.3.4".parse().unwrap());
        headers.insert("x-forwarded-proto", "https".parse().unwrap());
        headers.insert("forwarded", "for=1.2.3.4".parse().unwrap());
        let info = client_info("198.51.100.7".parse().unwrap(), false, &headers, &nets(&["10.0.0.0/8"]));
        assert_eq!(info.ip.to_string(), "198.51.100.7");
        assert!(!info.https, "an untrusted peer cannot claim https");
        set_forwarding_headers(&mut headers, &info, Some("api.example.com"));
        assert_eq!(headers["x-forwarded-for"], "198.51.100.7");
        assert_eq!(headers["x-forwarded-proto"], "http");
        assert_eq!(headers["forwarded"], "for=198.51.100.7;proto=http;host=\"api.example.com\"");
    }

    #[test]
    fn trusted_chain_is_walked_from_the_right() {
        let trusted = nets(&["10.0.0.0/8", "192.168.0.0/16"]);
        let peer = "10.0.0.1".parse().unwrap();
        assert_eq!(client_ip(peer, Some("6.6.6.6, 203.0.113.5, 192.168.1.1"), &trusted).to_string(), "203.0.113.5");
        assert_eq!(client_ip(peer, Some("garbage, 10.0.0.2"), &trusted).to_string(), "10.0.0.2");
        assert_eq!(client_ip(peer, None, &trusted).to_string(), "10.0.0.1");
        let mapped = "::ffff:10.0.0.1".parse().unwrap();
        assert!(is_trusted(mapped, &trusted));
    }

    #[test]
    fn trusted_proxy_headers_are_kept_and_extended() {
        let mut headers = HeaderMap::new();
        headers.append("x-forwarded-for", "203.0.113.5".parse().unwrap());
        headers.append("x-forwarded-for", "10.0.0.9".parse().unwrap());
        headers.insert("x-forwarded-proto", "https".parse().unwrap());
        let info = client_info("10.0.0.1".parse().unwrap(), false, &headers, &nets(&["10.0.0.0/8"]));
        assert!(info.https);
        assert_eq!(info.ip.to_string(), "203.0.113.5");
        set_forwarding_headers(&mut headers, &info, None);
        assert_eq!(headers["x-forwarded-for"], "203.0.113.5, 10.0.0.9, 10.0.0.1");
    }

    #[test]
    fn ipv6_peers_are_quoted_in_forwarded() {
        let mut headers = HeaderMap::new();
        let info = client_info("::1".parse().unwrap(), true, &headers, &[]);
        set_forwarding_headers(&mut headers, &info, None);
        assert_eq!(headers["forwarded"], "for=\"[::1]\";proto=https");
    }
}
