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

use std::borrow::Cow;
use std::net::IpAddr;

use bytes::Bytes;
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
    let ip = match peer_trusted {
        true => client_ip(peer, joined(headers, &X_FORWARDED_FOR).as_deref(), trusted),
        false => peer,
    };
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

/// All values of a repeated header joined with `, ` (as RFC 9110 allows);
/// borrowed when the header appears once (the usual case).
fn joined<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<Cow<'a, str>> {
    let mut values = headers.get_all(name).iter().filter_map(|v| v.to_str().ok());
    let first = values.next()?;
    let Some(second) = values.next() else { return Some(Cow::Borrowed(first)) };
    let mut all = String::with_capacity(first.len() + second.len() + 2);
    for value in [first, second].into_iter().chain(values) {
        if !all.is_empty() {
            all.push_str(", ");
        }
        all.push_str(value);
    }
    Some(Cow::Owned(all))
}

/// Appends `ip` to `out` as text (`203.0.113.9`, `2001:db8::1`), without
/// the formatting machinery for IPv4, the common case on the request path.
///
/// ```
/// let mut text = String::from("for=");
/// portcullis::proxy::forwarded::push_ip(&mut text, "203.0.113.9".parse().unwrap());
/// assert_eq!(text, "for=203.0.113.9");
/// ```
pub fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                if octet >= 100 {
                    out.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    out.push(char::from(b'0' + octet / 10 % 10));
                }
                out.push(char::from(b'0' + octet % 10));
            }
        }
        IpAddr::V6(v6) => {
            use std::fmt::Write as _;
            // Writing to a String cannot fail.
            let _ = write!(out, "{v6}");
        }
    }
}

/// Rewrites the forwarding headers of a request about to go upstream.
///
/// From a trusted proxy, the incoming `X-Forwarded-For` chain is kept and the
/// peer appended; from anyone else, every forwarding header is replaced by
/// what the gateway itself saw.
pub fn set_forwarding_headers(headers: &mut HeaderMap, client: &ClientInfo, host: Option<&str>) {
    let proto = if client.https { "https" } else { "http" };
    let trusted = client.peer_trusted;
    // X-Forwarded-For: the trusted chain, then the peer.
    let mut chain = String::with_capacity(64);
    if let Some(incoming) = trusted.then(|| joined(headers, &X_FORWARDED_FOR)).flatten() {
        chain.push_str(&incoming);
        chain.push_str(", ");
    }
    push_ip(&mut chain, client.peer);
    // Forwarded (RFC 7239): the trusted elements, then ours.
    let mut forwarded = String::with_capacity(96);
    if let Some(incoming) = trusted.then(|| joined(headers, &header::FORWARDED)).flatten() {
        forwarded.push_str(&incoming);
        forwarded.push_str(", ");
    }
    forwarded.push_str("for=");
    match client.peer {
        IpAddr::V4(_) => push_ip(&mut forwarded, client.peer),
        IpAddr::V6(_) => {
            forwarded.push_str("\"[");
            push_ip(&mut forwarded, client.peer);
            forwarded.push_str("]\"");
        }
    }
    forwarded.push_str(";proto=");
    forwarded.push_str(proto);
    let incoming_host = if trusted { headers.get(&X_FORWARDED_HOST).cloned() } else { None };
    // A trusted proxy's host when it is text, else the one the client sent.
    let host = incoming_host.as_ref().and_then(|v| v.to_str().ok()).or(host);
    if let Some(host) = host.filter(|h| h.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')) {
        forwarded.push_str(";host=\"");
        forwarded.push_str(host);
        forwarded.push('"');
    }
    let host = host.and_then(|h| HeaderValue::from_str(h).ok());
    // `insert` replaces every incoming value of the name; a value that
    // cannot be sent removes the name.
    let mut set = |name: &HeaderName, value: Option<HeaderValue>| match value {
        Some(value) => {
            headers.insert(name.clone(), value);
        }
        None => {
            headers.remove(name);
        }
    };
    set(&X_FORWARDED_FOR, HeaderValue::from_maybe_shared(Bytes::from(chain)).ok());
    set(&X_FORWARDED_PROTO, Some(HeaderValue::from_static(proto)));
    set(&X_FORWARDED_HOST, host);
    set(&header::FORWARDED, HeaderValue::from_maybe_shared(Bytes::from(forwarded)).ok());
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
    fn a_trusted_proxys_host_is_kept_unless_it_is_not_text() {
        let trusted = nets(&["10.0.0.0/8"]);
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-host", "public.example.com".parse().unwrap());
        let info = client_info("10.0.0.1".parse().unwrap(), false, &headers, &trusted);
        set_forwarding_headers(&mut headers, &info, Some("internal:8080"));
        assert_eq!(headers["x-forwarded-host"], "public.example.com");
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-host", HeaderValue::from_bytes(b"caf\xe9").unwrap());
        set_forwarding_headers(&mut headers, &info, Some("internal:8080"));
        assert_eq!(headers["x-forwarded-host"], "internal:8080");
        assert!(headers["forwarded"].to_str().unwrap().ends_with(";host=\"internal:8080\""));
        // From an untrusted peer, its own X-Forwarded-Host is replaced.
        let untrusted = client_info("198.51.100.7".parse().unwrap(), false, &headers, &trusted);
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-host", "evil.example".parse().unwrap());
        set_forwarding_headers(&mut headers, &untrusted, None);
        assert!(headers.get("x-forwarded-host").is_none());
    }

    #[test]
    fn ipv6_peers_are_quoted_in_forwarded() {
        let mut headers = HeaderMap::new();
        let info = client_info("::1".parse().unwrap(), true, &headers, &[]);
        set_forwarding_headers(&mut headers, &info, None);
        assert_eq!(headers["forwarded"], "for=\"[::1]\";proto=https");
    }
}
