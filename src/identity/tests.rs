//! Identity flows over a real SQLite store (the e2e suite runs them through
//! the binary, on SQLite and PostgreSQL).

use std::sync::Arc;
use std::time::Duration;

use argon2::Params;

use super::*;
use crate::config::secrets::Environment;
use crate::identity::keys::SigningAlgorithm;
use crate::identity::password::PasswordPolicy;

const PASSWORD: &str = "correct horse battery staple";

async fn identity() -> (tempfile::TempDir, Identity) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}/db.sqlite", dir.path().display()), None).await.unwrap();
    store.migrate().await.unwrap();
    let keys =
        Keys::load(&Environment::default(), &dir.path().join("keys"), SigningAlgorithm::EdDSA, Duration::from_secs(60))
            .unwrap();
    let tokens = TokensConfig {
        algorithm: SigningAlgorithm::EdDSA,
        issuer: "https://gw.test".into(),
        audience: "portcullis".into(),
        access_ttl: Duration::from_secs(900),
        refresh_ttl: Duration::from_secs(3600),
        leeway: Duration::from_secs(5),
        max_token_size: 8192,
        keys_dir: dir.path().join("keys"),
        external: Vec::new(),
        shared_secret: Vec::new(),
    };
    let login = LoginConfig {
        allow_registration: true,
        policy: PasswordPolicy::default(),
        max_concurrent_hashes: 2,
        max_failures: 3,
        lockout: Duration::from_secs(60),
        rate_limit: Vec::new(),
        rate_limit_on_store_error: crate::gates::rate_limit::store::OnStoreError::Local,
    };
    let hasher = PasswordHasher::with_params(Params::new(1024, 1, 1, None).unwrap(), 2).unwrap();
    (dir, Identity::with_hasher(store, Arc::new(keys), tokens, login, hasher))
}

#[tokio::test]
async fn login_verify_refresh_and_reuse_detection() {
    let (_dir, id) = identity().await;
    id.add_user("Alice", &Secret::new(PASSWORD), &["user".into()]).await.unwrap();
    let (pair, user) = id.login("ALICE", &Secret::new(PASSWORD)).await.unwrap();
    assert_eq!(user.display_name, "Alice");
    let claims = id.verify(&pair.access_token).unwrap();
    assert_eq!(claims.sub, user.id);
    assert_eq!(claims.roles, ["user"]);
    let first_refresh = pair.refresh_token.unwrap();
    assert!(first_refresh.starts_with(REFRESH_PREFIX));

    let (second, _) = id.refresh(&first_refresh).await.unwrap();
    assert_eq!(second.claims.auth_time, claims.auth_time, "a refresh keeps the time of the password login");
    let second_refresh = second.refresh_token.unwrap();
    // The used token comes back: the whole family dies, including the new one.
    assert!(matches!(id.refresh(&first_refresh).await, Err(RefreshFailure::Reused { .. })));
    assert!(matches!(id.refresh(&second_refresh).await, Err(RefreshFailure::Expired)));
    assert!(matches!(id.refresh("pcr_unknown").await, Err(RefreshFailure::Unknown)));
}

#[tokio::test]
async fn login_failures_look_the_same_to_the_caller() {
    let (_dir, id) = identity().await;
    id.add_user("bob", &Secret::new(PASSWORD), &["user".into()]).await.unwrap();
    assert_eq!(id.login("bob", &Secret::new("wrong password!")).await.unwrap_err(), LoginFailure::WrongPassword);
    assert_eq!(id.login("nobody", &Secret::new(PASSWORD)).await.unwrap_err(), LoginFailure::UnknownUser);
    assert_eq!(id.login("bad name!", &Secret::new(PASSWORD)).await.unwrap_err(), LoginFailure::UnknownUser);
    id.disable("bob").await.unwrap();
    assert_eq!(id.login("bob", &Secret::new(PASSWORD)).await.unwrap_err(), LoginFailure::Disabled);
}

#[tokio::test]
async fn disabling_or_changing_roles_cuts_off_issued_tokens() {
    let (_dir, id) = identity().await;
    id.add_user("carol", &Secret::new(PASSWORD), &["admin".into()]).await.unwrap();
    let (pair, _) = id.login("carol", &Secret::new(PASSWORD)).await.unwrap();
    // Tokens issued in the same second as the cut-off must die too.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    id.set_roles("carol", &["user".into()]).await.unwrap();
    assert_eq!(id.verify(&pair.access_token).unwrap_err(), TokenError::Revoked);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (pair, _) = id.login("carol", &Secret::new(PASSWORD)).await.unwrap();
    assert_eq!(pair.claims.roles, ["user"]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    id.disable("carol").await.unwrap();
    assert_eq!(id.verify(&pair.access_token).unwrap_err(), TokenError::Revoked);
    assert!(id.refresh(pair.refresh_token.as_deref().unwrap()).await.is_err());
}

#[tokio::test]
async fn revoked_access_tokens_are_refused() {
    let (_dir, id) = identity().await;
    id.add_user("dave", &Secret::new(PASSWORD), &["user".into()]).await.unwrap();
    let (pair, _) = id.login("dave", &Secret::new(PASSWORD)).await.unwrap();
    id.revoke_access(&pair.claims).await.unwrap();
    assert_eq!(id.verify(&pair.access_token).unwrap_err(), TokenError::Revoked);
    id.sync_denylist().await.unwrap();
    assert_eq!(id.verify(&pair.access_token).unwrap_err(), TokenError::Revoked, "the store keeps it across syncs");
}

#[tokio::test]
async fn registration_never_grants_more_than_user() {
    let (_dir, id) = identity().await;
    let user = id.register("eve", &Secret::new(PASSWORD)).await.unwrap();
    assert_eq!(user.roles, "user");
    assert!(matches!(id.register("EVE", &Secret::new(PASSWORD)).await, Err(AdminError::Taken)));
    assert!(matches!(id.register("frank", &Secret::new("password")).await, Err(AdminError::Policy(_))));
}

#[tokio::test]
async fn client_credentials_and_scopes() {
    let (_dir, id) = identity().await;
    let (client_id, secret) = id.add_client("reports", &["reports:read".into(), "reports:write".into()]).await.unwrap();
    assert!(id.authenticate_client(&client_id, "pcs_wrong").await.is_err());
    let client = id.authenticate_client(&client_id, &secret).await.unwrap();
    let pair = id.client_token(&client, Some("reports:read")).unwrap();
    assert_eq!(pair.claims.scope, "reports:read");
    assert_eq!(pair.claims.client_id.as_deref(), Some(client_id.as_str()));
    assert!(pair.refresh_token.is_none());
    assert_eq!(id.client_token(&client, None).unwrap().claims.scope, "reports:read reports:write");
    assert_eq!(id.client_token(&client, Some("admin")).unwrap_err(), "invalid_scope");
    assert!(id.add_client("bad", &["no spaces allowed".into()]).await.is_err());
}

#[tokio::test]
async fn outdated_hashes_are_upgraded_at_login() {
    let (_dir, id) = identity().await;
    let user = id.add_user("grace", &Secret::new(PASSWORD), &["user".into()]).await.unwrap();
    let weak = PasswordHasher::with_params(Params::new(512, 1, 1, None).unwrap(), 1).unwrap();
    let old_hash = weak.hash(&Secret::new(PASSWORD)).await.unwrap();
    crate::store::users::rehash(id.store(), &user.id, &old_hash).await.unwrap();
    id.login("grace", &Secret::new(PASSWORD)).await.unwrap();
    let stored = crate::store::users::find_by_id(id.store(), &user.id).await.unwrap().unwrap();
    assert!(stored.password_hash.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"), "{}", stored.password_hash);
}

#[tokio::test]
async fn repeated_failures_lock_the_account_until_unlocked() {
    let (_dir, id) = identity().await;
    id.add_user("ivan", &Secret::new(PASSWORD), &["user".into()]).await.unwrap();
    assert_eq!(id.login("ivan", &Secret::new("wrong one 1")).await.unwrap_err(), LoginFailure::WrongPassword);
    assert_eq!(id.login("ivan", &Secret::new("wrong one 2")).await.unwrap_err(), LoginFailure::WrongPassword);
    assert!(matches!(id.login("ivan", &Secret::new("wrong one 3")).await.unwrap_err(), LoginFailure::LockedNow { .. }));
    assert_eq!(
        id.login("ivan", &Secret::new(PASSWORD)).await.unwrap_err(),
        LoginFailure::Locked,
        "the right password does not help"
    );
    let user = crate::store::users::find_by_username(id.store(), "ivan").await.unwrap().unwrap();
    let lock = user.locked_until.unwrap() - crate::store::now();
    assert!((55..=60).contains(&lock), "{lock}");
    id.unlock("ivan").await.unwrap();
    assert!(id.login("ivan", &Secret::new(PASSWORD)).await.is_ok());
    // A success resets the count: three more failures are needed to lock again.
    assert_eq!(id.login("ivan", &Secret::new("wrong one 4")).await.unwrap_err(), LoginFailure::WrongPassword);
}
