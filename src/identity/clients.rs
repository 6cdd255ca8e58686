//! OAuth clients: registration and client authentication.

use subtle::ConstantTimeEq as _;

use super::{AdminError, CLIENT_SECRET_PREFIX, Identity, TokenPair, hash_opaque, opaque, valid_names};
use crate::store::clients::ClientRecord;
use crate::store::{StoreError, now};

impl Identity {
    /// Authenticates an OAuth client by id and secret (constant-time compare).
    pub async fn authenticate_client(&self, client_id: &str, secret: &str) -> Result<ClientRecord, StoreError> {
        let record = crate::store::clients::find(&self.store, client_id).await?;
        let presented = hash_opaque(secret);
        match record {
            Some(record)
                if record.disabled == 0 && bool::from(record.secret_hash.as_bytes().ct_eq(presented.as_bytes())) =>
            {
                Ok(record)
            }
            _ => Err(StoreError::Database(sqlx::Error::RowNotFound)),
        }
    }

    /// A client-credentials access token for `client`, with the requested
    /// scopes (all the client may have when none are asked). Refuses scopes
    /// the client may not have.
    pub fn client_token(&self, client: &ClientRecord, requested: Option<&str>) -> Result<TokenPair, &'static str> {
        let allowed: Vec<&str> = client.scopes.split_whitespace().collect();
        let scope = match requested {
            None => allowed.join(" "),
            Some(requested) => {
                let wanted: Vec<&str> = requested.split_whitespace().collect();
                if wanted.iter().any(|s| !allowed.contains(s)) {
                    return Err("invalid_scope");
                }
                wanted.join(" ")
            }
        };
        // auth_time 0: no password was typed, so routes demanding a fresh
        // login (fresh_within) never accept client tokens.
        self.issue_access(&client.client_id, None, Vec::new(), scope, 0, Some(client.client_id.clone()))
            .map_err(|_| "server_error")
    }

    /// Registers a client; returns its id and secret (shown once).
    pub async fn add_client(&self, name: &str, scopes: &[String]) -> Result<(String, String), AdminError> {
        let scopes = valid_names(scopes)?;
        let client_id = format!("pc_{}", &uuid::Uuid::new_v4().simple().to_string()[..16]);
        let secret = opaque(CLIENT_SECRET_PREFIX)?;
        let record = ClientRecord {
            client_id: client_id.clone(),
            name: name.to_owned(),
            secret_hash: hash_opaque(&secret),
            scopes,
            disabled: 0,
            created_at: now(),
        };
        crate::store::clients::insert(&self.store, &record).await?;
        Ok((client_id, secret))
    }
}
