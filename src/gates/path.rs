//! Path normalization: the one canonical form of a request path that every
//! later gate sees.
//!
//! Runs once, before route matching. `/admin`, `//admin`, `/x/../admin`,
//! `/%61dmin`, `/admin/` and `/admin/.` all have the same canonical path
//! `/admin`, so they meet the same rule. Paths that cannot be made canonical
//! without guessing what the upstream would do are refused with 400:
//!
//! | refused | why |
//! |---|---|
//! | `%2F`, `%5C` (encoded `/`, `\`) | upstreams disagree on whether they separate segments |
//! | `\` | Windows servers treat it as `/` |
//! | `%00` and control characters | truncation in C-based upstreams |
//! | `%25XX` (double encoding) | an upstream that decodes twice sees a different path |
//! | `;` | Tomcat and Spring strip `;params` from segments (`/admin;x` is `/admin` there) |
//! | `..` above the root | an attempt to escape, never a real path |
//! | a malformed `%` escape | not a URI |
//!
//! Matching is case-sensitive: `/Admin` is not `/admin`. If an upstream
//! treats paths case-insensitively, declare its routes in lower case and do
//! not add a catch-all route with weaker rules.
//!
//! ```
//! use portcullis::gates::path::normalize;
//! let p = normalize("//x/../%61dmin/./").unwrap();
//! assert_eq!(p.canonical(), "/admin");
//! assert_eq!(p.forward(), "/admin/");
//! assert!(normalize("/a%2Fb").is_err());
//! ```

use std::convert::Infallible;
use std::fmt::Write as _;
use std::task::{Context, Poll};

use futures_util::FutureExt as _;
use http::{Request, Response};
use tower::{Layer, Service};

use crate::audit::{self, EventContext, SecurityEvent};
use crate::body::Body;
use crate::error::{Reason, Rejection};
use crate::gates::context::RequestId;
use crate::proxy::forwarded::ClientInfo;

/// A request path in canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalPath {
    /// Canonical path without a trailing slash (except the root `/`).
    canonical: String,
    /// Whether the request path ended in `/` (kept when forwarding).
    trailing_slash: bool,
    /// Whether normalization changed anything (a possible path trick).
    changed: bool,
}

impl CanonicalPath {
    /// The path every gate matches and decides on.
    pub fn canonical(&self) -> &str {
        &self.canonical
    }

    /// The path sent to the upstream: the canonical path, with the trailing
    /// slash the client sent (frameworks like Flask route `/a/` and `/a` differently).
    pub fn forward(&self) -> String {
        if self.trailing_slash && self.canonical != "/" {
            format!("{}/", self.canonical)
        } else {
            self.canonical.clone()
        }
    }

    /// True when the client's path differed from its canonical form.
    pub fn was_changed(&self) -> bool {
        self.changed
    }
}

/// Why a path was refused. The message is safe to show the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PathError(pub &'static str);

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Characters allowed literally in a path segment (RFC 3986 `pchar` without
/// `;`, which is refused, and without `%`, handled as an escape).
fn is_allowed_literal(b: u8) -> bool {
    is_unreserved(b) || matches!(b, b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b'=' | b':' | b'@')
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Normalizes one raw segment: decodes escaped unreserved characters,
/// upper-cases the remaining escapes, and refuses dangerous bytes.
fn normalize_segment(raw: &[u8], out: &mut String) -> Result<(), PathError> {
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b == b'%' {
            let (Some(hi), Some(lo)) =
                (raw.get(i + 1).copied().and_then(hex_value), raw.get(i + 2).copied().and_then(hex_value))
            else {
                return Err(PathError("The path contains a malformed percent-escape."));
            };
            let decoded = hi * 16 + lo;
            match decoded {
                b'/' | b'\\' => return Err(PathError("Encoded slashes are not accepted in paths.")),
                0x00..=0x1f | 0x7f => return Err(PathError("Control characters are not accepted in paths.")),
                b';' => return Err(PathError("Semicolons are not accepted in paths.")),
                b'%' if raw.get(i + 3).copied().and_then(hex_value).is_some()
                    && raw.get(i + 4).copied().and_then(hex_value).is_some() =>
                {
                    return Err(PathError("Double percent-encoding is not accepted in paths."));
                }
                d if is_unreserved(d) => out.push(char::from(d)),
                d => {
                    let _ = write!(out, "%{d:02X}");
                }
            }
            i += 3;
        } else if b == b'\\' {
            return Err(PathError("Backslashes are not accepted in paths."));
        } else if b == b';' {
            return Err(PathError("Semicolons are not accepted in paths."));
        } else if is_allowed_literal(b) {
            out.push(char::from(b));
            i += 1;
        } else {
            return Err(PathError("The path contains a character that must be percent-encoded."));
        }
    }
    Ok(())
}

/// Normalizes a raw request path (without the query).
///
/// Steps: refuse what is listed in the module docs; decode escaped unreserved
/// characters (`%61` is `a`); resolve `.` and `..` segments, including
/// escaped ones (`%2e%2e`); collapse repeated slashes; drop the trailing slash
/// from the canonical form.
pub fn normalize(raw: &str) -> Result<CanonicalPath, PathError> {
    let Some(rest) = raw.strip_prefix('/') else {
        return Err(PathError("The path must start with a slash."));
    };
    let mut segments: Vec<String> = Vec::new();
    let mut segment = String::new();
    let mut ends_as_directory = false;
    for raw_segment in rest.split('/') {
        segment.clear();
        normalize_segment(raw_segment.as_bytes(), &mut segment)?;
        // `/a/`, `/a/.` and `/a/b/..` all name a directory.
        ends_as_directory = matches!(segment.as_str(), "" | "." | "..");
        match segment.as_str() {
            "" | "." => {}
            ".." => {
                if segments.pop().is_none() {
                    return Err(PathError("The path climbs above the root."));
                }
            }
            _ => segments.push(segment.clone()),
        }
    }
    let trailing_slash = !segments.is_empty() && ends_as_directory;
    let mut canonical = String::with_capacity(raw.len());
    for s in &segments {
        canonical.push('/');
        canonical.push_str(s);
    }
    if canonical.is_empty() {
        canonical.push('/');
    }
    let forwarded_form_equals_raw =
        if trailing_slash { raw.len() == canonical.len() + 1 } else { raw.len() == canonical.len() };
    let changed = !(forwarded_form_equals_raw && raw.starts_with(canonical.as_str()));
    Ok(CanonicalPath { canonical, trailing_slash, changed })
}

/// Normalizes the path of every request; later gates read the
/// [`CanonicalPath`] from the request extensions.
///
/// Refuses with 400 ([`Reason::BadPath`]); emits a low-severity
/// `request.path-normalized` event when the path had to be rewritten.
#[derive(Debug, Clone, Copy, Default)]
pub struct PathLayer;

impl<S> Layer<S> for PathLayer {
    type Service = NormalizePath<S>;
    fn layer(&self, inner: S) -> Self::Service {
        NormalizePath { inner }
    }
}

/// The service of [`PathLayer`].
#[derive(Debug, Clone)]
pub struct NormalizePath<S> {
    inner: S,
}

impl<S> Service<Request<Body>> for NormalizePath<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = crate::body::ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        let canonical = match normalize(request.uri().path()) {
            Ok(canonical) => canonical,
            Err(PathError(detail)) => {
                return Box::pin(std::future::ready(Ok(Rejection::new(Reason::BadPath { detail }).into_response())));
            }
        };
        if canonical.was_changed() {
            let request_id = request.extensions().get::<RequestId>().map(RequestId::as_str).unwrap_or("");
            let client_ip = request.extensions().get::<ClientInfo>().map(|c| c.ip);
            audit::emit(
                &SecurityEvent::PathNormalized,
                &EventContext {
                    request_id,
                    client_ip,
                    method: request.method().as_str(),
                    path: canonical.canonical(),
                    route: None,
                    subject: None,
                },
            );
        }
        request.extensions_mut().insert(canonical.clone());
        let future = self.inner.call(request);
        Box::pin(future.map(move |outcome| {
            let mut response = outcome?;
            response.extensions_mut().insert(canonical);
            Ok(response)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(raw: &str) -> String {
        normalize(raw).unwrap_or_else(|e| panic!("{raw}: {e}")).canonical().to_owned()
    }

    #[test]
    fn tricks_reach_the_same_canonical_path() {
        for trick in [
            "/admin",
            "//admin",
            "///admin//",
            "/x/../admin",
            "/x/y/../../admin",
            "/%61dmin",
            "/%61%64%6D%69%6E",
            "/admin/.",
            "/admin/",
            "/./admin",
            "/x/%2e%2e/admin",
            "/x/%2E%2E/admin",
            "/x/.%2e/admin",
            "/admin/x/..",
        ] {
            assert_eq!(canon(trick), "/admin", "{trick}");
        }
    }

    #[test]
    fn refused_paths() {
        for bad in [
            "/a%2Fb",
            "/a%2fb",
            "/a%5Cb",
            "/a\\b",
            "/a%00b",
            "/a%0Ab",
            "/a;x",
            "/..;/admin",
            "/a%3Bb",
            "/..",
            "/a/../..",
            "/%",
            "/%zz",
            "/%2",
            "/a%252e",
            "*",
            "admin",
            "/a b",
            "/a\u{7f}",
            "/é",
        ] {
            assert!(normalize(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn escapes_are_normalized_not_decoded() {
        assert_eq!(canon("/caf%c3%a9"), "/caf%C3%A9");
        assert_eq!(canon("/a%3ab"), "/a%3Ab");
        assert_eq!(canon("/a%25"), "/a%25");
        assert_eq!(canon("/users/al~ice_1.2-3"), "/users/al~ice_1.2-3");
    }

    #[test]
    fn case_is_kept() {
        assert_eq!(canon("/Admin"), "/Admin");
    }

    #[test]
    fn forward_form_keeps_the_trailing_slash_and_marks_changes() {
        let p = normalize("/items/").unwrap();
        assert_eq!((p.canonical(), p.forward().as_str(), p.was_changed()), ("/items", "/items/", false));
        let p = normalize("/items").unwrap();
        assert_eq!((p.forward().as_str(), p.was_changed()), ("/items", false));
        let p = normalize("/").unwrap();
        assert_eq!((p.canonical(), p.forward().as_str(), p.was_changed()), ("/", "/", false));
        assert!(normalize("//items").unwrap().was_changed());
        assert!(normalize("/%69tems").unwrap().was_changed());
        assert!(normalize("/a/..").unwrap().was_changed());
    }
}
