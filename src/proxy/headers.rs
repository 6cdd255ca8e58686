//! Header hygiene between client and upstream: hop-by-hop headers, and
//! headers only the gateway may set.

use http::{HeaderMap, HeaderName, header};

/// Hop-by-hop headers (RFC 9110 §7.6.1) that never cross the gateway.
static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Headers through which the gateway tells the upstream who the caller is.
/// A client can never send them: they are removed from every request.
pub const GATEWAY_OWNED: &[&str] =
    &["x-user-id", "x-user-name", "x-user-roles", "x-user-scopes", "x-client-id", "x-identity-token"];

/// Prefix of further gateway-owned headers (`X-Portcullis-…`).
pub const GATEWAY_OWNED_PREFIX: &str = "x-portcullis-";

/// Removes hop-by-hop headers, including those named in `Connection`.
///
/// ```
/// use portcullis::proxy::headers::remove_hop_by_hop;
/// let mut h = http::HeaderMap::new();
/// h.insert("connection", "close, x-secret-hop".parse().unwrap());
/// h.insert("x-secret-hop", "1".parse().unwrap());
/// h.insert("accept", "*/*".parse().unwrap());
/// remove_hop_by_hop(&mut h);
/// assert_eq!(h.len(), 1);
/// ```
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    remove_where(headers, |name| HOP_BY_HOP.contains(name));
}

/// Removes hop-by-hop headers and every header only the gateway may set,
/// in one pass (for requests on their way upstream).
pub fn remove_hop_by_hop_and_gateway_owned(headers: &mut HeaderMap) {
    remove_where(headers, |name| HOP_BY_HOP.contains(name) || is_gateway_owned(name));
}

/// Whether only the gateway may set header `name`.
pub fn is_gateway_owned(name: &HeaderName) -> bool {
    GATEWAY_OWNED.contains(&name.as_str()) || name.as_str().starts_with(GATEWAY_OWNED_PREFIX)
}

/// Removes the headers matching `remove` and those listed in `Connection`,
/// scanning the (few) headers present instead of looking up every candidate.
fn remove_where(headers: &mut HeaderMap, remove: impl Fn(&HeaderName) -> bool) {
    let mut doomed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    doomed.extend(headers.keys().filter(|name| remove(name)).cloned());
    for name in doomed {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forged_identity_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert("x-user-id", "admin".parse().unwrap());
        h.append("x-user-roles", "admin".parse().unwrap());
        h.insert("x-portcullis-identity", "x".parse().unwrap());
        h.insert("x-user-agentish", "kept".parse().unwrap());
        remove_hop_by_hop_and_gateway_owned(&mut h);
        assert_eq!(h.len(), 1);
    }
}
