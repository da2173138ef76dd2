//! Verified API keys in memory, so the request path does no database work for a known key,
//! without a cache that outlives a revocation on any node (KEY-2).
//!
//! The protocol, for several nodes on one database:
//! - Every change that can invalidate a cached key (revoke, rotate, a change to the key's
//!   workspace) writes an `api_key_changes` row in its own transaction.
//! - Each node's worker syncs every [`SYNC_INTERVAL`]: it notes the monotonic time, reads the
//!   changes of the last [`CHANGE_WINDOW`], drops the cached keys of each workspace named by a
//!   change it has not applied yet, and extends its *lease* to that noted time plus [`LEASE`].
//! - A node answers from the cache only while its lease runs; past it (worker stalled, database
//!   unreachable) every request reads the database, which is always right.
//! - A revoking node commits, drops its own entries, then waits [`LEASE`] plus a margin before it
//!   acknowledges. Any other node's lease was then taken from a sync that started after the
//!   commit (and so saw the change), or it has run out. Either way, no node answers from a stale
//!   entry once the revocation is acknowledged.
//! - A lookup that raced with an invalidation does not store its (possibly stale) result: each
//!   invalidation bumps a generation that inserts must still match.
//!
//! Lease timing uses the monotonic clock, never the wall clock: a wall-clock jump must not
//! stretch a lease.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::time::Instant;

use crate::acl::Grants;
use crate::ids::{ApiKeyId, UserId, WorkspaceId};
use crate::workspaces::model::Plan;

/// How often each node reads the change list.
pub const SYNC_INTERVAL: Duration = Duration::from_millis(100);
/// How long one successful sync lets a node answer from its cache.
pub const LEASE: Duration = Duration::from_millis(400);
/// What a revocation waits before it is acknowledged: a lease plus a margin for timer slack.
pub const PROPAGATION: Duration = Duration::from_millis(450);
/// How far back each sync reads changes: far longer than any transaction between writing its
/// change row and committing, so a change that commits late is still seen.
pub const CHANGE_WINDOW: time::Duration = time::Duration::minutes(5);

/// What the request path needs of a verified key and its workspace.
#[derive(Debug, Clone)]
pub struct CachedKey {
    pub key_id: ApiKeyId,
    pub workspace_id: WorkspaceId,
    pub workspace_slug: String,
    pub plan: Plan,
    pub suspended: bool,
    pub on_behalf_of: UserId,
    pub grants: Grants,
    pub expires_at: Option<OffsetDateTime>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<[u8; 32], Arc<CachedKey>>,
    generation: u64,
    lease_until: Option<Instant>,
    /// Change rows already applied; forgotten once a sync no longer returns them (they left
    /// the window).
    applied: HashSet<i64>,
    /// Hashes the database did not know or knew revoked. Both are final (a revoked key never
    /// comes back; a future key's hash equals one of these with probability 2^-256), so they
    /// need no lease. Bounded: emptied when full.
    refused: HashSet<[u8; 32]>,
}

/// The most refused hashes a node remembers.
const REFUSED_MAX: usize = 10_000;

#[derive(Debug, Default)]
pub struct KeyCache {
    inner: Mutex<Inner>,
}

impl KeyCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The guarded state is always consistent between statements, so a poisoned lock
        // (a panic elsewhere while holding it) is safe to keep using.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The cached key for `hash`, if the lease runs.
    pub fn get(&self, hash: &[u8; 32]) -> Option<Arc<CachedKey>> {
        let inner = self.lock();
        let fresh = inner
            .lease_until
            .is_some_and(|until| Instant::now() < until);
        if fresh {
            inner.entries.get(hash).cloned()
        } else {
            None
        }
    }

    /// The generation to hand back to [`KeyCache::insert`] after a database lookup.
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Stores a lookup's result, unless an invalidation happened since `generation` was read.
    pub fn insert(&self, hash: [u8; 32], key: Arc<CachedKey>, generation: u64) {
        let mut inner = self.lock();
        if inner.generation == generation {
            inner.entries.insert(hash, key);
        }
    }

    /// Drops every cached key of these workspaces.
    pub fn invalidate(&self, workspaces: &HashSet<WorkspaceId>) {
        if workspaces.is_empty() {
            return;
        }
        let mut inner = self.lock();
        inner.generation += 1;
        inner
            .entries
            .retain(|_, key| !workspaces.contains(&key.workspace_id));
    }

    /// Applies one sync: `changes` are every change row of the window, read by a sync that
    /// began at `started` (monotonic).
    pub fn apply_sync(&self, started: Instant, changes: Vec<(i64, WorkspaceId)>) {
        let mut inner = self.lock();
        let mut stale = HashSet::new();
        let mut seen = HashSet::with_capacity(changes.len());
        for (seq, workspace) in changes {
            seen.insert(seq);
            if inner.applied.insert(seq) {
                stale.insert(workspace);
            }
        }
        inner.applied.retain(|seq| seen.contains(seq));
        if !stale.is_empty() {
            inner.generation += 1;
            inner
                .entries
                .retain(|_, key| !stale.contains(&key.workspace_id));
        }
        let until = started + LEASE;
        if inner.lease_until.is_none_or(|current| current < until) {
            inner.lease_until = Some(until);
        }
    }

    /// Whether this hash was refused before (unknown or revoked).
    pub fn is_refused(&self, hash: &[u8; 32]) -> bool {
        self.lock().refused.contains(hash)
    }

    pub fn refuse(&self, hash: [u8; 32]) {
        let mut inner = self.lock();
        if inner.refused.len() >= REFUSED_MAX {
            inner.refused.clear();
        }
        inner.refused.insert(hash);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::Role;

    fn key(workspace: &WorkspaceId) -> Arc<CachedKey> {
        Arc::new(CachedKey {
            key_id: ApiKeyId::generate(),
            workspace_id: workspace.clone(),
            workspace_slug: "acme".into(),
            plan: Plan::Pro,
            suspended: false,
            on_behalf_of: UserId::generate(),
            grants: Grants::resolve(Role::Admin, None, &[]),
            expires_at: None,
        })
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_is_served_without_a_running_lease() {
        let cache = KeyCache::default();
        let ws = WorkspaceId::generate();
        cache.insert([1; 32], key(&ws), cache.generation());
        assert!(cache.get(&[1; 32]).is_none(), "no sync yet: no lease");
        cache.apply_sync(Instant::now(), Vec::new());
        assert!(cache.get(&[1; 32]).is_some());
        tokio::time::advance(LEASE).await;
        assert!(cache.get(&[1; 32]).is_none(), "the lease ran out");
        cache.apply_sync(Instant::now(), Vec::new());
        assert!(cache.get(&[1; 32]).is_some(), "a new sync renews it");
    }

    #[tokio::test]
    async fn a_change_drops_its_workspace_once_and_only_its_workspace() {
        let cache = KeyCache::default();
        let (a, b) = (WorkspaceId::generate(), WorkspaceId::generate());
        cache.apply_sync(Instant::now(), Vec::new());
        cache.insert([1; 32], key(&a), cache.generation());
        cache.insert([2; 32], key(&b), cache.generation());
        cache.apply_sync(Instant::now(), vec![(7, a.clone())]);
        assert!(cache.get(&[1; 32]).is_none());
        assert!(cache.get(&[2; 32]).is_some());
        // The same change read again by the next sync does not drop a fresh entry.
        cache.insert([1; 32], key(&a), cache.generation());
        cache.apply_sync(Instant::now(), vec![(7, a.clone())]);
        assert!(cache.get(&[1; 32]).is_some());
    }

    #[tokio::test]
    async fn a_lookup_that_raced_an_invalidation_is_not_stored() {
        let cache = KeyCache::default();
        let ws = WorkspaceId::generate();
        cache.apply_sync(Instant::now(), Vec::new());
        let before = cache.generation();
        cache.invalidate(&HashSet::from([ws.clone()]));
        cache.insert([1; 32], key(&ws), before);
        assert!(cache.get(&[1; 32]).is_none());
    }
}
