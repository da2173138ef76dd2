//! Start-up key loading: the instance data key (wrapped by the master key) and the access-token
//! signing key (sealed by that data key), created on first start. Several nodes starting at once
//! may each create one; every node then picks the oldest, so they agree.

use time::OffsetDateTime;

use crate::crypto::envelope::{Aad, EnvelopeError, Keyring, SymmetricKey, key_id_of};
use crate::crypto::tokens::TokenKey;
use crate::error::{Error, StoreError};
use crate::ids::DataKeyId;
use crate::store::{Access, Store, StoredDataKey, StoredSigningKey};
use crate::tenancy::SystemScope;

pub const INSTANCE: &str = "instance";
pub const ACCESS_TOKEN_PURPOSE: &str = "access_token";

#[derive(Debug, thiserror::Error)]
pub enum KeyLoadError {
    #[error(
        "data key {data_key} is wrapped by master key {master_key}, which is not configured; supply it (e.g. as a retired master key) to start"
    )]
    MissingMasterKey {
        data_key: String,
        master_key: String,
    },
    #[error(
        "stored key {0} does not open with the configured master key (wrong key, or the row was tampered with)"
    )]
    Unopenable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Domain(#[from] Error),
}

fn dek_aad(id: &str) -> Aad<'_> {
    Aad {
        owner: INSTANCE,
        table: "data_keys",
        row: id,
        field: "wrapped",
    }
}

fn seed_aad(kid: &str) -> Aad<'_> {
    Aad {
        owner: INSTANCE,
        table: "signing_keys",
        row: kid,
        field: "sealed_seed",
    }
}

fn unwrap(keyring: &Keyring, stored: &StoredDataKey) -> Result<SymmetricKey, KeyLoadError> {
    keyring
        .unwrap_data_key(
            stored.id.as_str(),
            &stored.wrapped,
            dek_aad(stored.id.as_str()),
        )
        .map_err(|e| match e {
            EnvelopeError::UnknownKey(master_key) => KeyLoadError::MissingMasterKey {
                data_key: stored.id.to_string(),
                master_key,
            },
            _ => KeyLoadError::Unopenable(stored.id.to_string()),
        })
}

/// The instance data keys, opened: the first (oldest) seals new secrets, every one opens.
#[derive(Debug)]
pub struct DataKeys {
    keys: Vec<SymmetricKey>,
}

impl DataKeys {
    pub fn new(keys: Vec<SymmetricKey>) -> Option<Self> {
        (!keys.is_empty()).then_some(Self { keys })
    }

    pub fn active(&self) -> &SymmetricKey {
        &self.keys[0]
    }

    /// The key that sealed `sealed`, by the key id the ciphertext carries.
    pub fn for_sealed(&self, sealed: &[u8]) -> Option<&SymmetricKey> {
        let id = key_id_of(sealed).ok()?;
        self.keys.iter().find(|k| k.id() == id)
    }
}

/// What start-up loads: the access-token key and the opened instance data keys.
#[derive(Debug)]
pub struct InstanceKeys {
    pub access_token: TokenKey,
    pub data_keys: DataKeys,
}

/// Loads (or creates on first start) the key that signs access tokens.
pub async fn load_access_token_key(
    store: &dyn Store,
    keyring: &Keyring,
    now: OffsetDateTime,
) -> Result<TokenKey, KeyLoadError> {
    Ok(load_keys(store, keyring, now).await?.access_token)
}

/// Loads (or creates on first start) the instance data key and the access-token key.
pub async fn load_keys(
    store: &dyn Store,
    keyring: &Keyring,
    now: OffsetDateTime,
) -> Result<InstanceKeys, KeyLoadError> {
    let scope = SystemScope::new("start-up key loading");
    let mut tx = store.system(&scope, Access::Write).await?;
    let mut deks = tx.data_keys(INSTANCE).await?;
    if deks.is_empty() {
        let id = DataKeyId::generate();
        let (_, wrapped) = keyring.new_data_key(id.as_str(), dek_aad(id.as_str()))?;
        let stored = StoredDataKey {
            id,
            owner: INSTANCE.to_owned(),
            version: 1,
            wrapped,
            created_at: now,
        };
        tx.data_key_insert(&stored).await?;
        deks.push(stored);
    }
    // Every stored data key must open: a missing master key is named before anything runs.
    let deks = deks
        .iter()
        .map(|d| unwrap(keyring, d))
        .collect::<Result<Vec<_>, _>>()?;
    let data_keys =
        DataKeys::new(deks).ok_or_else(|| KeyLoadError::Unopenable(INSTANCE.to_owned()))?;

    let mut keys = tx.signing_keys(ACCESS_TOKEN_PURPOSE).await?;
    if keys.is_empty() {
        let key = TokenKey::generate()?;
        let sealed = data_keys
            .active()
            .seal(key.seed().as_slice(), seed_aad(key.kid()))?;
        let stored = StoredSigningKey {
            kid: key.kid().to_owned(),
            purpose: ACCESS_TOKEN_PURPOSE.to_owned(),
            sealed_seed: sealed,
            created_at: now,
        };
        tx.signing_key_insert(&stored).await?;
        keys.push(stored);
    }
    tx.commit().await?;

    // The oldest key is the active one on every node.
    keys.sort_by(|a, b| (a.created_at, &a.kid).cmp(&(b.created_at, &b.kid)));
    let active = keys
        .first()
        .ok_or_else(|| KeyLoadError::Unopenable(ACCESS_TOKEN_PURPOSE.to_owned()))?;
    let dek = data_keys
        .for_sealed(&active.sealed_seed)
        .ok_or_else(|| KeyLoadError::Unopenable(active.kid.clone()))?;
    let seed = dek
        .open(&active.sealed_seed, seed_aad(&active.kid))
        .map_err(|_| KeyLoadError::Unopenable(active.kid.clone()))?;
    let seed: [u8; 32] = seed
        .try_into()
        .map_err(|_| KeyLoadError::Unopenable(active.kid.clone()))?;
    let key = TokenKey::from_seed(&seed);
    if key.kid() != active.kid {
        return Err(KeyLoadError::Unopenable(active.kid.clone()));
    }
    Ok(InstanceKeys {
        access_token: key,
        data_keys,
    })
}
