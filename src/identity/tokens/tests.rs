//! The JWT attack suite at the unit level (the e2e suite repeats it through
//! the binary).

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{EncodingKey, Header};

use super::*;
use crate::config::secrets::Environment;
use crate::identity::keys::{Keys, SigningAlgorithm};

fn setup(alg: SigningAlgorithm) -> (tempfile::TempDir, Keys, TokenRules) {
    let dir = tempfile::tempdir().unwrap();
    let keys = Keys::load(&Environment::default(), dir.path(), alg, Duration::from_secs(60)).unwrap();
    let rules =
        TokenRules { issuer: "https://gw.test".into(), audience: "portcullis".into(), leeway: 5, max_size: 8192 };
    (dir, keys, rules)
}

fn claims() -> AccessClaims {
    let now = crate::store::now();
    AccessClaims {
        iss: "https://gw.test".into(),
        aud: "portcullis".into(),
        sub: "user-1".into(),
        exp: now + 600,
        iat: now,
        nbf: now,
        jti: "jti-1".into(),
        roles: vec!["user".into()],
        scope: String::new(),
        auth_time: now,
        client_id: None,
        username: Some("alice".into()),
    }
}

fn b64(value: &serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

#[test]
fn valid_tokens_verify_for_every_algorithm() {
    for alg in [SigningAlgorithm::EdDSA, SigningAlgorithm::ES256, SigningAlgorithm::RS256, SigningAlgorithm::HS256] {
        let (_dir, keys, rules) = setup(alg);
        let token = sign(&keys.ring(), &claims()).unwrap();
        assert_eq!(verify(&keys.ring(), &rules, &token).unwrap(), claims(), "{alg:?}");
    }
}

#[test]
fn claim_checks() {
    let (_dir, keys, rules) = setup(SigningAlgorithm::EdDSA);
    let ring = keys.ring();
    let check = |c: AccessClaims| verify(&ring, &rules, &sign(&ring, &c).unwrap()).unwrap_err();
    let now = crate::store::now();
    assert_eq!(check(AccessClaims { exp: now - 60, ..claims() }), TokenError::Expired);
    assert_eq!(check(AccessClaims { nbf: now + 600, ..claims() }), TokenError::NotYetValid);
    assert_eq!(check(AccessClaims { iss: "https://evil".into(), ..claims() }), TokenError::WrongIssuer);
    assert_eq!(check(AccessClaims { aud: "other-api".into(), ..claims() }), TokenError::WrongAudience);
    // Within the leeway passes.
    let token = sign(&ring, &AccessClaims { exp: now - 2, ..claims() }).unwrap();
    assert!(verify(&ring, &rules, &token).is_ok());
}

#[test]
fn forged_and_broken_tokens_are_refused() {
    let (_dir, keys, rules) = setup(SigningAlgorithm::EdDSA);
    let ring = keys.ring();
    let kid = ring.active().kid.clone();
    let good = sign(&ring, &claims()).unwrap();
    let parts: Vec<&str> = good.split('.').collect();
    let payload = b64(&serde_json::to_value(claims()).unwrap());

    // alg none with our kid.
    let none = format!("{}.{}.", b64(&serde_json::json!({"alg": "none", "typ": "at+jwt", "kid": kid})), parts[1]);
    assert_eq!(verify(&ring, &rules, &none).unwrap_err(), TokenError::AlgorithmMismatch);

    // HS256 signed with the public key as the HMAC secret (key confusion).
    let jwks = ring.jwks().clone();
    let public_x = jwks["keys"][0]["x"].as_str().unwrap();
    let mut header = Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(kid.clone());
    header.typ = Some("at+jwt".into());
    for secret in [public_x.as_bytes().to_vec(), URL_SAFE_NO_PAD.decode(public_x).unwrap()] {
        let confused = jsonwebtoken::encode(&header, &claims(), &EncodingKey::from_secret(&secret).unwrap()).unwrap();
        assert_eq!(verify(&ring, &rules, &confused).unwrap_err(), TokenError::AlgorithmMismatch);
    }

    // Tampered payload (role raised), old signature.
    let mut raised = claims();
    raised.roles = vec!["admin".into()];
    let tampered = format!("{}.{}.{}", parts[0], b64(&serde_json::to_value(&raised).unwrap()), parts[2]);
    assert_eq!(verify(&ring, &rules, &tampered).unwrap_err(), TokenError::BadSignature);

    // Tampered header (typ changed keeps the check order honest: signature fails).
    let header_json = serde_json::json!({"typ": "at+jwt", "alg": "EdDSA", "kid": kid, "x": 1});
    let tampered = format!("{}.{}.{}", b64(&header_json), parts[1], parts[2]);
    assert_eq!(verify(&ring, &rules, &tampered).unwrap_err(), TokenError::BadSignature);

    // Unknown kid; an attacker's key embedded as jwk.
    let (_other_dir, other, _) = setup(SigningAlgorithm::EdDSA);
    let foreign = sign(&other.ring(), &claims()).unwrap();
    assert_eq!(verify(&ring, &rules, &foreign).unwrap_err(), TokenError::UnknownKey);
    let embedded_header = serde_json::json!({
        "alg": "EdDSA", "typ": "at+jwt", "kid": other.ring().active().kid, "jwk": other.ring().jwks()["keys"][0],
    });
    let foreign_parts: Vec<&str> = foreign.split('.').collect();
    let embedded = format!("{}.{}.{}", b64(&embedded_header), foreign_parts[1], foreign_parts[2]);
    assert_eq!(verify(&ring, &rules, &embedded).unwrap_err(), TokenError::UnknownKey);

    // Wrong typ (an identity token or a plain JWT is not an access token).
    for typ in [Some("JWT"), Some("id+jwt"), None] {
        let mut header = serde_json::json!({"alg": "EdDSA", "kid": kid});
        if let Some(typ) = typ {
            header["typ"] = typ.into();
        }
        let token = format!("{}.{}.{}", b64(&header), payload, parts[2]);
        assert_eq!(verify(&ring, &rules, &token).unwrap_err(), TokenError::WrongType, "{typ:?}");
    }

    // Oversized, malformed base64, wrong shape.
    assert_eq!(verify(&ring, &rules, &"a".repeat(9000)).unwrap_err(), TokenError::TooLarge);
    assert_eq!(verify(&ring, &rules, "not.a.jwt").unwrap_err(), TokenError::Malformed);
    assert_eq!(verify(&ring, &rules, "e30.e30").unwrap_err(), TokenError::Malformed);
    assert_eq!(verify(&ring, &rules, &format!("{good}.x")).unwrap_err(), TokenError::Malformed);
    assert_eq!(verify(&ring, &rules, "%%%.%%%.%%%").unwrap_err(), TokenError::Malformed);
}

#[test]
fn missing_claims_and_duplicate_keys_are_refused() {
    let (_dir, keys, rules) = setup(SigningAlgorithm::HS256);
    let ring = keys.ring();
    let kid = ring.active().kid.clone();
    let sign_raw = |header: &str, payload: &str| -> String {
        let signing_input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(payload));
        let signature = jsonwebtoken::crypto::sign(
            signing_input.as_bytes(),
            &ring.active().encoding,
            jsonwebtoken::Algorithm::HS256,
        )
        .unwrap();
        format!("{signing_input}.{signature}")
    };
    let header = format!(r#"{{"alg":"HS256","typ":"at+jwt","kid":"{kid}"}}"#);
    let mut full = serde_json::to_value(claims()).unwrap();
    assert!(verify(&ring, &rules, &sign_raw(&header, &full.to_string())).is_ok(), "the raw signer works");
    for claim in ["exp", "sub", "iss", "aud", "jti", "iat", "nbf", "auth_time", "roles"] {
        let mut partial = full.clone();
        partial.as_object_mut().unwrap().remove(claim);
        let err = verify(&ring, &rules, &sign_raw(&header, &partial.to_string())).unwrap_err();
        assert!(matches!(err, TokenError::BadClaims(_)), "{claim}: {err:?}");
    }
    // A string exp (type confusion, CVE-2026-25537).
    full["exp"] = serde_json::Value::from("9999999999");
    assert!(matches!(
        verify(&ring, &rules, &sign_raw(&header, &full.to_string())).unwrap_err(),
        TokenError::BadClaims(_)
    ));
    // Duplicate keys in the header and in the payload.
    let duplicate_header = format!(r#"{{"alg":"HS256","typ":"at+jwt","kid":"{kid}","kid":"other"}}"#);
    let payload = serde_json::to_value(claims()).unwrap().to_string();
    assert_eq!(verify(&ring, &rules, &sign_raw(&duplicate_header, &payload)).unwrap_err(), TokenError::DuplicateKeys);
    let duplicate_payload = payload.replacen('{', r#"{"sub":"admin-1","#, 1);
    assert_eq!(verify(&ring, &rules, &sign_raw(&header, &duplicate_payload)).unwrap_err(), TokenError::DuplicateKeys);
}
