//! Encryption at rest (KMS-1 … KMS-3): master keys from outside the database wrap per-owner
//! data keys (an owner is a workspace, or `instance` for instance-wide secrets); data keys seal
//! every stored secret through one API, [`OwnerKeys`] (or `Services::seal_secret` /
//! `open_secret`), so no feature stores a secret any other way.
//!
//! - [`MasterKeys`]: one keyring per region (active + retired), and the default one. A data key
//!   is wrapped by its owner's region's active master key; any configured key unwraps.
//! - [`Vault`]: every data key, unwrapped at start-up (a missing master key stops start-up,
//!   named) and kept in memory; loaded on demand for owners other nodes created, refreshed by
//!   the worker. A new version seals nothing before its `activates_at`, by which time every
//!   node has loaded it, so every node can open whatever any node sealed.
//! - `rotation`: master-key re-wrapping, data-key rotation with background re-encryption, the
//!   90-day schedule and `keys status`.

pub mod rotation;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::crypto::envelope::{Aad, EnvelopeError, Keyring, SymmetricKey, key_id_of};
use crate::crypto::tokens::TokenKey;
use crate::error::{Error, Result, StoreError};
use crate::ids::DataKeyId;
use crate::store::{Access, Store, StoredDataKey, StoredSigningKey};
use crate::tenancy::SystemScope;

pub const INSTANCE: &str = "instance";
pub const ACCESS_TOKEN_PURPOSE: &str = "access_token";

#[derive(Debug, thiserror::Error)]
pub enum KeyLoadError {
    #[error(
        "data key {data_key} (owner {owner}) is wrapped by master key {master_key}, which is not configured; supply it (as the active or a retired master key) to start"
    )]
    MissingMasterKey {
        data_key: String,
        owner: String,
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

impl From<KeyLoadError> for Error {
    fn from(e: KeyLoadError) -> Self {
        match e {
            KeyLoadError::Domain(e) => e,
            KeyLoadError::Store(e) => e.into(),
            other => Error::internal(other),
        }
    }
}

/// What a data key's wrapped form is bound to: its owner and row.
fn dek_aad<'a>(owner: &'a str, id: &'a str) -> Aad<'a> {
    Aad {
        owner,
        table: "data_keys",
        row: id,
        field: "wrapped",
    }
}

/// Where a secret is stored, for its associated data: table, row and field. The owner is given
/// separately, so a value sealed for one owner never opens for another.
#[derive(Debug, Clone, Copy)]
pub struct SecretSite<'a> {
    pub table: &'a str,
    pub row: &'a str,
    pub field: &'a str,
}

/// The configured master keys: the default keyring (instance secrets, and regions without
/// their own) and one per region that has its own.
#[derive(Debug)]
pub struct MasterKeys {
    default: Keyring,
    regions: BTreeMap<String, Keyring>,
}

/// One keyring's ids, for `keys status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeyringIds {
    /// `default`, or a region's name.
    pub name: String,
    pub active: String,
    pub retired: Vec<String>,
}

impl MasterKeys {
    pub fn new(default: Keyring, regions: BTreeMap<String, Keyring>) -> Self {
        Self { default, regions }
    }

    /// The keyring that wraps data keys of an owner in `region`.
    pub fn for_region(&self, region: Option<&str>) -> &Keyring {
        region
            .and_then(|r| self.regions.get(r))
            .unwrap_or(&self.default)
    }

    fn rings(&self) -> impl Iterator<Item = &Keyring> {
        std::iter::once(&self.default).chain(self.regions.values())
    }

    /// Every configured master key id with the keyring naming it.
    pub fn describe(&self) -> Vec<KeyringIds> {
        std::iter::once(("default", &self.default))
            .chain(self.regions.iter().map(|(n, r)| (n.as_str(), r)))
            .map(|(name, ring)| KeyringIds {
                name: name.to_owned(),
                active: ring.active().id().to_owned(),
                retired: ring.retired().iter().map(|k| k.id().to_owned()).collect(),
            })
            .collect()
    }

    /// Opens a stored data key with whichever configured master key wrapped it.
    pub fn unwrap(&self, stored: &StoredDataKey) -> Result<SymmetricKey, KeyLoadError> {
        let id = stored.id.as_str();
        let master_id =
            key_id_of(&stored.wrapped).map_err(|_| KeyLoadError::Unopenable(id.to_owned()))?;
        let ring = self
            .rings()
            .find(|r| r.get(master_id).is_some())
            .ok_or_else(|| KeyLoadError::MissingMasterKey {
                data_key: id.to_owned(),
                owner: stored.owner.clone(),
                master_key: master_id.to_owned(),
            })?;
        ring.unwrap_data_key(id, &stored.wrapped, dek_aad(&stored.owner, id))
            .map_err(|_| KeyLoadError::Unopenable(id.to_owned()))
    }

    /// A fresh data key for `owner`, wrapped by its region's active master key.
    fn new_data_key(
        &self,
        owner: &str,
        region: Option<&str>,
        version: i64,
        now: OffsetDateTime,
        activates_at: OffsetDateTime,
    ) -> Result<(SymmetricKey, StoredDataKey)> {
        let id = DataKeyId::generate();
        let (key, wrapped) = self
            .for_region(region)
            .new_data_key(id.as_str(), dek_aad(owner, id.as_str()))?;
        Ok((
            key,
            StoredDataKey {
                id,
                owner: owner.to_owned(),
                version,
                wrapped,
                created_at: now,
                activates_at,
                retired_at: None,
            },
        ))
    }

    /// The data key wrapped anew by its region's active master key; `None` if it already is.
    pub fn rewrap(
        &self,
        stored: &StoredDataKey,
        region: Option<&str>,
    ) -> Result<Option<Vec<u8>>, KeyLoadError> {
        let target = self.for_region(region).active();
        let current = key_id_of(&stored.wrapped)
            .map_err(|_| KeyLoadError::Unopenable(stored.id.to_string()))?;
        if current == target.id() {
            return Ok(None);
        }
        let key = self.unwrap(stored)?;
        let wrapped = key.wrap_with(target, dek_aad(&stored.owner, stored.id.as_str()))?;
        Ok(Some(wrapped))
    }
}

/// One owner's data keys, oldest version first.
#[derive(Debug)]
struct OwnerSet {
    region: Option<String>,
    versions: Vec<Version>,
}

#[derive(Debug)]
struct Version {
    version: i64,
    activates_at: OffsetDateTime,
    created_at: OffsetDateTime,
    key: Arc<SymmetricKey>,
}

/// An owner's data keys as of one moment: the version that seals, and every version, which
/// open. Cheap to clone.
#[derive(Debug, Clone)]
pub struct OwnerKeys {
    owner: String,
    set: Arc<OwnerSet>,
    active: usize,
    /// The instance's keys, which open a workspace's values from before it had its own.
    legacy: Option<Arc<OwnerSet>>,
}

impl OwnerKeys {
    fn at(owner: &str, set: Arc<OwnerSet>, now: OffsetDateTime) -> Self {
        // The newest active version; the oldest if none is active yet (a first version is
        // active at once).
        let active = set
            .versions
            .iter()
            .rposition(|v| v.activates_at <= now)
            .unwrap_or(0);
        Self {
            owner: owner.to_owned(),
            set,
            active,
            legacy: None,
        }
    }

    fn aad<'a>(&'a self, site: SecretSite<'a>) -> Aad<'a> {
        Aad {
            owner: &self.owner,
            table: site.table,
            row: site.row,
            field: site.field,
        }
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The version new values are sealed under.
    pub fn active_version(&self) -> i64 {
        self.set.versions.get(self.active).map_or(0, |v| v.version)
    }

    /// Seals `plaintext` for `site` under the active version.
    pub fn seal(&self, site: SecretSite<'_>, plaintext: &[u8]) -> Result<Vec<u8>> {
        let v = self.set.versions.get(self.active).ok_or_else(|| {
            Error::Internal(format!("owner {} has no data key", self.owner).into())
        })?;
        v.key.seal(plaintext, self.aad(site))
    }

    /// Seals under `version` (re-encryption to a version not yet active on this node).
    pub fn seal_with(
        &self,
        version: i64,
        site: SecretSite<'_>,
        plaintext: &[u8],
    ) -> Result<Vec<u8>> {
        let v = self
            .set
            .versions
            .iter()
            .find(|v| v.version == version)
            .ok_or_else(|| {
                Error::Internal(
                    format!("owner {} has no data key version {version}", self.owner).into(),
                )
            })?;
        v.key.seal(plaintext, self.aad(site))
    }

    /// Opens a value sealed for `site` under any version of this owner's keys.
    pub fn open(
        &self,
        site: SecretSite<'_>,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
        let id = key_id_of(sealed)?;
        let v = self
            .set
            .versions
            .iter()
            .chain(self.legacy.iter().flat_map(|l| l.versions.iter()))
            .find(|v| v.key.id() == id)
            .ok_or_else(|| EnvelopeError::UnknownKey(id.to_owned()))?;
        v.key.open(sealed, self.aad(site)).map(Zeroizing::new)
    }

    /// The version a value was sealed under, if it is one of this owner's.
    pub fn version_of(&self, sealed: &[u8]) -> Option<i64> {
        let id = key_id_of(sealed).ok()?;
        self.set
            .versions
            .iter()
            .find(|v| v.key.id() == id)
            .map(|v| v.version)
    }

    /// When the newest version was created (the rotation schedule's clock).
    fn newest_created(&self) -> Option<OffsetDateTime> {
        self.set.versions.last().map(|v| v.created_at)
    }
}

/// Every owner's data keys, opened, with the master keys that wrap new ones.
#[derive(Debug)]
pub struct Vault {
    masters: MasterKeys,
    owners: RwLock<HashMap<String, Arc<OwnerSet>>>,
}

impl Vault {
    /// Opens every stored data key (a missing master key is named before anything runs) and
    /// creates the instance's first data key on first start.
    pub async fn load(
        store: &dyn Store,
        masters: MasterKeys,
        now: OffsetDateTime,
    ) -> Result<Self, KeyLoadError> {
        let vault = Self {
            masters,
            owners: RwLock::new(HashMap::new()),
        };
        vault.refresh(store).await?;
        vault.owner(store, INSTANCE, now).await?;
        Ok(vault)
    }

    pub fn masters(&self) -> &MasterKeys {
        &self.masters
    }

    fn cached(&self, owner: &str) -> Option<Arc<OwnerSet>> {
        self.owners
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(owner)
            .cloned()
    }

    fn build_set(
        &self,
        region: Option<String>,
        rows: &[StoredDataKey],
    ) -> Result<OwnerSet, KeyLoadError> {
        let previous: HashMap<String, Arc<SymmetricKey>> = rows
            .first()
            .and_then(|r| self.cached(&r.owner))
            .map(|set| {
                set.versions
                    .iter()
                    .map(|v| (v.key.id().to_owned(), v.key.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let mut versions = Vec::with_capacity(rows.len());
        for row in rows {
            let key = match previous.get(row.id.as_str()) {
                Some(key) => key.clone(),
                None => Arc::new(self.masters.unwrap(row)?),
            };
            versions.push(Version {
                version: row.version,
                activates_at: row.activates_at,
                created_at: row.created_at,
                key,
            });
        }
        versions.sort_by_key(|v| v.version);
        Ok(OwnerSet { region, versions })
    }

    /// Re-reads every data key (new versions, other nodes' owners); only keys not yet open are
    /// unwrapped. Start-up and the worker call it.
    pub async fn refresh(&self, store: &dyn Store) -> Result<(), KeyLoadError> {
        let scope = SystemScope::new("data key refresh");
        let mut tx = store.system(&scope, Access::Read).await?;
        let rows = tx.data_keys_all().await?;
        drop(tx);
        let mut by_owner: BTreeMap<String, (Option<String>, Vec<StoredDataKey>)> = BTreeMap::new();
        for (row, region) in rows {
            let entry = by_owner.entry(row.owner.clone()).or_default();
            entry.0 = region;
            entry.1.push(row);
        }
        let mut fresh = HashMap::with_capacity(by_owner.len());
        for (owner, (region, rows)) in by_owner {
            let set = self.build_set(region, &rows)?;
            fresh.insert(owner, Arc::new(set));
        }
        *self
            .owners
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
        Ok(())
    }

    /// Re-reads one owner's data keys.
    async fn reload(
        &self,
        store: &dyn Store,
        owner: &str,
    ) -> Result<Option<Arc<OwnerSet>>, KeyLoadError> {
        let scope = SystemScope::new("data key load");
        let mut tx = store.system(&scope, Access::Read).await?;
        let rows = tx.data_keys(owner).await?;
        if rows.is_empty() {
            return Ok(None);
        }
        let region = if owner == INSTANCE {
            None
        } else {
            tx.workspace_region(owner).await?
        };
        drop(tx);
        let set = Arc::new(self.build_set(region, &rows)?);
        self.owners
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(owner.to_owned(), set.clone());
        Ok(Some(set))
    }

    /// An owner's keys as of `now`: from memory, else from the database, else a first data key
    /// is created (racing nodes agree on the one stored first).
    pub async fn owner(
        &self,
        store: &dyn Store,
        owner: &str,
        now: OffsetDateTime,
    ) -> Result<OwnerKeys, KeyLoadError> {
        self.owner_or_create(store, owner, None, now).await
    }

    /// [`owner`](Self::owner) for a workspace being created, whose row (and region) is not
    /// stored yet.
    pub async fn owner_in_region(
        &self,
        store: &dyn Store,
        owner: &str,
        region: &str,
        now: OffsetDateTime,
    ) -> Result<OwnerKeys, KeyLoadError> {
        self.owner_or_create(store, owner, Some(region), now).await
    }

    async fn owner_or_create(
        &self,
        store: &dyn Store,
        owner: &str,
        region: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<OwnerKeys, KeyLoadError> {
        if let Some(set) = self.cached(owner) {
            return Ok(self.keys_at(owner, set, now));
        }
        if let Some(set) = self.reload(store, owner).await? {
            return Ok(self.keys_at(owner, set, now));
        }
        let scope = SystemScope::new("data key creation");
        let mut tx = store.system(&scope, Access::Write).await?;
        let region = match region {
            Some(r) => Some(r.to_owned()),
            None if owner == INSTANCE => None,
            None => tx.workspace_region(owner).await?,
        };
        let (_, stored) = self
            .masters
            .new_data_key(owner, region.as_deref(), 1, now, now)?;
        match tx.data_key_insert(&stored).await {
            Ok(()) => tx.commit().await?,
            // Another node created it first: use theirs.
            Err(StoreError::Conflict(_)) => drop(tx),
            Err(e) => return Err(e.into()),
        }
        let set = self
            .reload(store, owner)
            .await?
            .ok_or_else(|| KeyLoadError::Unopenable(owner.to_owned()))?;
        Ok(self.keys_at(owner, set, now))
    }

    /// A workspace's keys also open values sealed under the instance's keys for it: before
    /// workspaces had keys of their own (issue 8 and earlier), theirs were sealed so, bound to
    /// the workspace all the same. Re-encryption moves them to the workspace's own.
    fn keys_at(&self, owner: &str, set: Arc<OwnerSet>, now: OffsetDateTime) -> OwnerKeys {
        let mut keys = OwnerKeys::at(owner, set, now);
        if owner != INSTANCE {
            keys.legacy = self.cached(INSTANCE);
        }
        keys
    }

    /// Every owner known to this node with its keys as of `now`.
    fn owners_at(&self, now: OffsetDateTime) -> Vec<OwnerKeys> {
        self.owners
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(owner, set)| self.keys_at(owner, set.clone(), now))
            .collect()
    }

    fn region_of(&self, owner: &str) -> Option<String> {
        self.cached(owner).and_then(|s| s.region.clone())
    }
}

/// The master key ids that wrap the stored data keys (none on a fresh database): what start-up
/// must have configured, and what `rotate-master` may not retire yet.
pub async fn master_ids_in_use(store: &dyn Store) -> Result<BTreeSet<String>, StoreError> {
    let scope = SystemScope::new("master key use");
    let mut tx = store.system(&scope, Access::Read).await?;
    Ok(tx
        .data_keys_all()
        .await?
        .iter()
        .filter_map(|(k, _)| key_id_of(&k.wrapped).ok().map(str::to_owned))
        .collect())
}

/// Loads (or creates on first start) the key that signs access tokens, sealed under the
/// instance's data key. Several nodes starting at once may each create one; every node then
/// picks the oldest, so they agree.
pub async fn load_access_token_key(
    store: &dyn Store,
    vault: &Vault,
    now: OffsetDateTime,
) -> Result<TokenKey, KeyLoadError> {
    let instance = vault.owner(store, INSTANCE, now).await?;
    let scope = SystemScope::new("start-up key loading");
    let mut tx = store.system(&scope, Access::Write).await?;
    let mut keys = tx.signing_keys(ACCESS_TOKEN_PURPOSE).await?;
    if keys.is_empty() {
        let key = TokenKey::generate()?;
        let sealed = instance.seal(
            SecretSite {
                table: "signing_keys",
                row: key.kid(),
                field: "sealed_seed",
            },
            key.seed().as_slice(),
        )?;
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
    let seed = instance
        .open(
            SecretSite {
                table: "signing_keys",
                row: &active.kid,
                field: "sealed_seed",
            },
            &active.sealed_seed,
        )
        .map_err(|_| KeyLoadError::Unopenable(active.kid.clone()))?;
    let seed: [u8; 32] = seed
        .as_slice()
        .try_into()
        .map_err(|_| KeyLoadError::Unopenable(active.kid.clone()))?;
    let key = TokenKey::from_seed(&seed);
    if key.kid() != active.kid {
        return Err(KeyLoadError::Unopenable(active.kid.clone()));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn master(byte: u8) -> SymmetricKey {
        use base64::Engine as _;
        let text = base64::engine::general_purpose::STANDARD.encode([byte; 32]);
        SymmetricKey::master_from_base64(&text).unwrap_or_else(|_| unreachable!())
    }

    fn at(secs: i64) -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(secs)
    }

    fn set(masters: &MasterKeys, owner: &str, versions: &[(i64, i64)]) -> Result<Arc<OwnerSet>> {
        let rows = versions
            .iter()
            .map(|&(version, activates)| {
                masters
                    .new_data_key(owner, None, version, at(0), at(activates))
                    .map(|(_, stored)| stored)
            })
            .collect::<Result<Vec<_>>>()?;
        let vault = Vault {
            masters: MasterKeys::new(Keyring::new(master(1), vec![]), BTreeMap::new()),
            owners: RwLock::new(HashMap::new()),
        };
        Ok(Arc::new(vault.build_set(None, &rows).map_err(Error::from)?))
    }

    const SITE: SecretSite<'static> = SecretSite {
        table: "records",
        row: "rec_1",
        field: "secret",
    };

    #[test]
    fn a_new_version_seals_only_once_active_and_every_version_opens() -> Result<()> {
        let masters = MasterKeys::new(Keyring::new(master(1), vec![]), BTreeMap::new());
        let set = set(&masters, "ws_a", &[(1, 0), (2, 100)])?;
        let before = OwnerKeys::at("ws_a", set.clone(), at(99));
        assert_eq!(before.active_version(), 1);
        let old = before.seal(SITE, b"value")?;
        let after = OwnerKeys::at("ws_a", set, at(100));
        assert_eq!(after.active_version(), 2);
        let new = after.seal(SITE, b"value")?;
        assert_eq!(after.version_of(&old), Some(1));
        assert_eq!(after.version_of(&new), Some(2));
        assert_eq!(
            after.open(SITE, &old).map_err(Error::internal)?.as_slice(),
            b"value"
        );
        assert_eq!(
            before.open(SITE, &new).map_err(Error::internal)?.as_slice(),
            b"value"
        );
        // Bound to owner and site.
        let moved = SecretSite {
            row: "rec_2",
            ..SITE
        };
        assert!(after.open(moved, &new).is_err());
        let other = set_for_other(&masters)?;
        assert!(other.open(SITE, &new).is_err());
        Ok(())
    }

    fn set_for_other(masters: &MasterKeys) -> Result<OwnerKeys> {
        Ok(OwnerKeys::at(
            "ws_b",
            set(masters, "ws_b", &[(1, 0)])?,
            at(0),
        ))
    }

    #[test]
    fn rewrap_moves_a_data_key_to_its_regions_active_master_key() -> Result<()> {
        let old = MasterKeys::new(Keyring::new(master(1), vec![]), BTreeMap::new());
        let (key, stored) = old.new_data_key("ws_a", Some("us"), 1, at(0), at(0))?;
        let sealed = key.seal(b"x", dek_aad("ws_a", "row"))?;
        let mut regions = BTreeMap::new();
        regions.insert("us".to_owned(), Keyring::new(master(3), vec![]));
        let new = MasterKeys::new(Keyring::new(master(2), vec![master(1)]), regions);
        let wrapped = new
            .rewrap(&stored, Some("us"))
            .map_err(Error::from)?
            .ok_or_else(|| Error::Internal("expected a re-wrap".into()))?;
        assert_eq!(key_id_of(&wrapped).ok(), Some(master(3).id()));
        let moved = StoredDataKey { wrapped, ..stored };
        // Already where it belongs: nothing to do; and it opens the same data.
        assert!(
            new.rewrap(&moved, Some("us"))
                .map_err(Error::from)?
                .is_none()
        );
        let again = new.unwrap(&moved).map_err(Error::from)?;
        assert!(again.open(&sealed, dek_aad("ws_a", "row")).is_ok());
        // Without the region's key it cannot be opened, and the message names the key.
        let without = MasterKeys::new(Keyring::new(master(2), vec![]), BTreeMap::new());
        match without.unwrap(&moved) {
            Err(KeyLoadError::MissingMasterKey {
                master_key, owner, ..
            }) => {
                assert_eq!(master_key, master(3).id());
                assert_eq!(owner, "ws_a");
            }
            other => return Err(Error::Internal(format!("{other:?}").into())),
        }
        Ok(())
    }
}
