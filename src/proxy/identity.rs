//! Telling the upstream who the caller is.
//!
//! Every request loses the gateway-owned headers a client may have sent
//! (see [`super::headers`]). For an authenticated caller, the route's
//! `forward_identity` then adds, by default, plain headers:
//!
//! | header | value |
//! |---|---|
//! | `X-User-Id` | `sub` (user id, or client id for client credentials) |
//! | `X-User-Name` | username, when known |
//! | `X-User-Roles` | roles, comma-separated |
//! | `X-User-Scopes` | scopes, space-separated |
//! | `X-Client-Id` | OAuth client, for client-credentials tokens |
//!
//! and, with `token = true`, `X-Identity-Token`: a JWT signed by Portcullis
//! (`typ: identity+jwt`, 60 seconds, `aud` = the upstream), verifiable with
//! `/.well-known/jwks.json`. An upstream that verifies it cannot be fooled
//! even by a request that bypassed the gateway.

use http::{HeaderMap, HeaderName, HeaderValue, header};

use crate::config::ForwardIdentity;
use crate::identity::Identity;
use crate::identity::tokens::AccessClaims;

/// `X-User-Id`.
pub static X_USER_ID: HeaderName = HeaderName::from_static("x-user-id");
/// `X-User-Name`.
pub static X_USER_NAME: HeaderName = HeaderName::from_static("x-user-name");
/// `X-User-Roles`.
pub static X_USER_ROLES: HeaderName = HeaderName::from_static("x-user-roles");
/// `X-User-Scopes`.
pub static X_USER_SCOPES: HeaderName = HeaderName::from_static("x-user-scopes");
/// `X-Client-Id`.
pub static X_CLIENT_ID: HeaderName = HeaderName::from_static("x-client-id");
/// `X-Identity-Token`.
pub static X_IDENTITY_TOKEN: HeaderName = HeaderName::from_static("x-identity-token");

/// Applies `forward` for `caller` (if any) to request headers already
/// cleaned of gateway-owned headers. `authenticated_route` says whether the
/// gateway checks credentials on this route (then the client's own
/// `Authorization` is dropped unless `forward.bearer`).
pub fn forward(
    headers: &mut HeaderMap,
    caller: Option<&AccessClaims>,
    forward: &ForwardIdentity,
    authenticated_route: bool,
    identity: &Identity,
) -> Result<(), String> {
    if authenticated_route && !forward.bearer {
        headers.remove(header::AUTHORIZATION);
    }
    let Some(caller) = caller else { return Ok(()) };
    // Bytes as they are: usernames may hold any letter (UTF-8).
    let mut set = |name: &HeaderName, value: &str| {
        if let Ok(value) = HeaderValue::from_bytes(value.as_bytes()) {
            headers.insert(name.clone(), value);
        }
    };
    if forward.headers {
        set(&X_USER_ID, &caller.sub);
        if let Some(username) = &caller.username {
            set(&X_USER_NAME, username);
        }
        set(&X_USER_ROLES, &caller.roles.join(","));
        set(&X_USER_SCOPES, &caller.scope);
        if let Some(client) = &caller.client_id {
            set(&X_CLIENT_ID, client);
        }
    }
    if let Some(audience) = &forward.token {
        let token = identity.identity_token(caller, audience)?;
        set(&X_IDENTITY_TOKEN, &token);
    }
    Ok(())
}
