//! Discovery: `GET /.well-known/jwks.json` (every public key in force) and
//! `GET /.well-known/openid-configuration` (issuer metadata).

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, header};

use super::Api;

pub(super) async fn jwks(State(api): State<Api>) -> Response {
    let ring = api.identity.keys().ring();
    let mut response = Json(ring.jwks().clone()).into_response();
    // Short: caches must see a rotation quickly.
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=60"));
    response
}

pub(super) async fn openid_configuration(State(api): State<Api>) -> Response {
    let config = api.identity.tokens_config();
    let issuer = config.issuer.trim_end_matches('/');
    let alg = format!("{:?}", config.algorithm.jwt());
    Json(serde_json::json!({
        "issuer": config.issuer,
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "token_endpoint": format!("{issuer}/oauth/token"),
        "introspection_endpoint": format!("{issuer}/oauth/introspect"),
        "revocation_endpoint": format!("{issuer}/oauth/revoke"),
        "grant_types_supported": ["client_credentials", "refresh_token"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "token_endpoint_auth_signing_alg_values_supported": [alg],
        "response_types_supported": [],
    }))
    .into_response()
}
