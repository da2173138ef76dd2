//! `Services`: the use cases, one method per operation, over an injected store, clock and keys.
//! Feature modules add their methods in their own `service.rs`.

use std::sync::Arc;

use crate::clock::{Clock, to_micros};
use crate::crypto::password::Passwords;
use crate::crypto::tokens::AccessTokens;
use crate::keys::{OwnerKeys, SecretSite, Vault};
use crate::limits::Limiter;
use crate::mail::Outbox;
use crate::store::Store;

/// Operator settings the services need (the binary maps its configuration into this).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Lifetime of a session and of each refresh token.
    pub refresh_ttl: time::Duration,
    /// Emails of instance administrators, lowercased.
    pub admins: Vec<String>,
    /// Regions a workspace may be placed in; the first is the default.
    pub regions: Vec<String>,
    /// The public host (and path) that names audit-log origins: `<public_host>/ws/<id>`.
    pub public_host: String,
    /// Shortest time between two `latest` checkpoints of one log (60 s by default).
    pub checkpoint_interval: time::Duration,
    /// Rate limits and quotas per plan (RTL-2).
    pub limits: crate::limits::LimitsConfig,
    /// Sign-up, verification, lockout and emailed-secret rules (IDN-1 … IDN-4).
    pub accounts: crate::accounts::policy::AccountPolicy,
    /// Where emailed links point: `<link_base>/auth/magic#token=…` (the public URL, or an
    /// application's own pages).
    pub link_base: url::Url,
    /// The instance's name and colours in emails.
    pub brand: crate::mail::templates::Brand,
    /// How long a new data key version waits before it seals anything, so every node has
    /// loaded it first (30 s by default: several worker refreshes).
    pub key_propagation: time::Duration,
    /// Data keys older than this are rotated by the worker (90 days by default); `None`: never.
    pub data_key_max_age: Option<time::Duration>,
    /// Retry schedule, failure limits and the target check of webhooks (WHK-4, WHK-5).
    pub webhooks: crate::webhooks::service::WebhookSettings,
}

#[derive(Debug, Clone)]
pub struct Services {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) passwords: Passwords,
    pub(crate) tokens: Arc<AccessTokens>,
    pub(crate) settings: Arc<Settings>,
    pub(crate) vault: Arc<Vault>,
    pub(crate) limiter: Arc<Limiter>,
    pub(crate) outbox: Outbox,
    /// Verified API keys and their pending last-use times (KEY-2).
    pub(crate) keys: Arc<crate::api_keys::KeyState>,
    /// Woken when this node writes a webhook event, so its dispatcher need not wait for its
    /// next poll.
    pub(crate) webhook_wake: Arc<tokio::sync::Notify>,
}

impl Services {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        passwords: Passwords,
        tokens: AccessTokens,
        vault: Arc<Vault>,
        outbox: Outbox,
        settings: Settings,
    ) -> Self {
        Self {
            limiter: Arc::new(Limiter::new(Arc::clone(&store), Arc::clone(&clock))),
            store,
            clock,
            passwords,
            tokens: Arc::new(tokens),
            settings: Arc::new(settings),
            vault,
            outbox,
            keys: Arc::default(),
            webhook_wake: Arc::default(),
        }
    }

    /// Notified whenever this node writes a webhook event (before its commit: the dispatcher
    /// gives the commit a moment, and polls anyway).
    pub fn webhook_wake(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.webhook_wake)
    }

    /// An owner's data keys (a workspace id, or `instance`): what seals and opens its secrets.
    pub(crate) async fn owner_keys(&self, owner: &str) -> crate::error::Result<OwnerKeys> {
        Ok(self
            .vault
            .owner(&*self.store, owner, self.clock.now())
            .await?)
    }

    /// The one way a feature stores a secret (KMS-2): sealed with AES-256-GCM under the
    /// owner's active data key, bound to the owner and `site`. The ciphertext names its key, so
    /// rotation and re-encryption need nothing else; add the column to
    /// `keys::rotation::SealedColumn` so re-encryption and the dump test cover it.
    pub async fn seal_secret(
        &self,
        owner: &str,
        site: SecretSite<'_>,
        plaintext: &[u8],
    ) -> crate::error::Result<Vec<u8>> {
        self.owner_keys(owner).await?.seal(site, plaintext)
    }

    /// Opens what [`seal_secret`](Self::seal_secret) sealed for the same owner and site.
    pub async fn open_secret(
        &self,
        owner: &str,
        site: SecretSite<'_>,
        sealed: &[u8],
    ) -> crate::error::Result<zeroize::Zeroizing<Vec<u8>>> {
        self.owner_keys(owner)
            .await?
            .open(site, sealed)
            .map_err(crate::error::Error::internal)
    }

    /// The outbound mail queue (the binary drains it at shutdown).
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Readiness: the database answers.
    pub async fn ready(&self) -> Result<(), crate::error::StoreError> {
        self.store.ping().await
    }

    pub fn tokens(&self) -> &AccessTokens {
        &self.tokens
    }

    /// The injected clock's now, truncated to microseconds.
    pub fn now(&self) -> time::OffsetDateTime {
        to_micros(self.clock.now())
    }
}
