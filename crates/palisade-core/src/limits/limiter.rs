//! The one limiter: exact checks in the database, leased budgets in memory, and the cache of
//! spent keys that keeps a flood off the database.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde_json::json;

use super::{Check, Decision, Limited, Rate, ceil_secs};
use crate::audit::{Actor, AuditEvent, AuditLog, AuditResult, Target};
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::principal::RequestMeta;
use crate::store::{Access, LimitState, LimitTx, Store};
use crate::tenancy::TenantScope;

/// Leased budget unused for this long goes back to the database, so a node that stops
/// receiving traffic strands nothing for more than a second.
const LEASE_TTL_US: i64 = 1_000_000;
/// A lease nobody used for this long is forgotten.
const LEASE_IDLE_US: i64 = 60_000_000;

/// Where an exact check runs, and which log its breach goes to.
#[derive(Debug, Clone, Copy)]
pub enum Ledger<'a> {
    /// The instance log (the `auth` category).
    Instance,
    /// The workspace's log (quotas an application consumes).
    Workspace(&'a TenantScope),
}

/// Counters for tests and benchmarks: how often the limiter reached the database.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitStats {
    /// Transactions of the exact path (one per check that was not answered from the cache).
    pub exact_trips: u64,
    /// Lease transactions of the leased path.
    pub lease_trips: u64,
    /// Requests the leased path answered from memory.
    pub leased_local: u64,
}

#[derive(Debug)]
struct Lease {
    rate: Rate,
    /// Units taken from the database and not yet spent.
    tokens: u32,
    leased_at: i64,
    last_used: i64,
    /// The database said the budget is spent until then (for one unit).
    spent_until: i64,
    /// The key's TAT in the database after this node's last lease.
    global_tat: i64,
    /// Serializes this key's lease transactions on this node.
    gate: Arc<tokio::sync::Mutex<()>>,
}

impl Lease {
    fn new(rate: Rate) -> Self {
        Self {
            rate,
            tokens: 0,
            leased_at: 0,
            last_used: 0,
            spent_until: 0,
            global_tat: 0,
            gate: Arc::default(),
        }
    }

    fn decision(&self, policy: &'static str, now: i64) -> Decision {
        let remaining = self
            .tokens
            .saturating_add(self.rate.available(self.global_tat, now))
            .min(self.rate.limit);
        Decision {
            policy,
            limit: self.rate.limit,
            window_secs: self.rate.window_secs,
            remaining,
            reset_secs: ceil_secs(self.rate.reset_us(self.global_tat, now)),
            retry_after_secs: None,
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    exact_trips: AtomicU64,
    lease_trips: AtomicU64,
    leased_local: AtomicU64,
}

#[derive(Debug)]
pub struct Limiter {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    /// Exact keys found spent: the TAT read then, and the rate. Refusing from it is exact: the
    /// stored TAT can only be later (exact keys are never given back).
    spent: Mutex<HashMap<String, (i64, Rate)>>,
    leases: Mutex<HashMap<String, Lease>>,
    counters: Counters,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn micros(t: time::OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX)
}

fn from_micros(us: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// A TAT written under a stricter rate is stored as `rate` reads it (see [`Rate::clamp`]), so
/// a raised limit is not held back by the old window.
async fn store_clamped(
    tx: &mut dyn LimitTx,
    state: &mut LimitState,
    rate: Rate,
    now: i64,
) -> Result<()> {
    let clamped = rate.clamp(state.tat, now);
    if clamped < state.tat {
        state.tat = clamped;
        tx.limits_put(state).await?;
    }
    Ok(())
}

fn denied(check: &Check, tat: i64, now: i64, wait: i64) -> Decision {
    Decision {
        policy: check.policy,
        limit: check.rate.limit,
        window_secs: check.rate.window_secs,
        remaining: check.rate.available(tat, now),
        reset_secs: ceil_secs(check.rate.reset_us(tat, now)),
        retry_after_secs: Some(ceil_secs(wait).max(1)),
    }
}

impl Limiter {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            clock,
            spent: Mutex::default(),
            leases: Mutex::default(),
            counters: Counters::default(),
        }
    }

    fn now(&self) -> i64 {
        micros(self.clock.now())
    }

    pub fn stats(&self) -> LimitStats {
        LimitStats {
            exact_trips: self.counters.exact_trips.load(Ordering::Relaxed),
            lease_trips: self.counters.lease_trips.load(Ordering::Relaxed),
            leased_local: self.counters.leased_local.load(Ordering::Relaxed),
        }
    }

    async fn begin(&self, ledger: Ledger<'_>) -> Result<Box<dyn LimitTx>> {
        let tx: Box<dyn LimitTx> = match ledger {
            Ledger::Instance => self.store.accounts(None, Access::Write).await?,
            Ledger::Workspace(scope) => self.store.tenant(scope, Access::Write).await?,
        };
        Ok(tx)
    }

    /// Refuses, from memory alone, if one of `checks` is known spent for `cost` units now (a
    /// key this node saw refused, whose next unit is not due yet). Spends nothing.
    pub fn refused_from_memory(
        &self,
        checks: &[Check],
        cost: u32,
        meta: &RequestMeta,
    ) -> Result<()> {
        self.refuse_known_spent(checks, cost, self.now(), meta)
    }

    fn refuse_known_spent(
        &self,
        checks: &[Check],
        cost: u32,
        now: i64,
        meta: &RequestMeta,
    ) -> Result<()> {
        let spent = lock(&self.spent);
        for check in checks {
            if let Some(&(tat, rate)) = spent.get(&check.key)
                && rate == check.rate
                && let Err(wait) = rate.take(tat, now, cost)
            {
                let decision = denied(check, tat, now, wait);
                meta.limits.record(std::slice::from_ref(&decision));
                return Err(Error::RateLimited(Limited {
                    decisions: vec![decision],
                }));
            }
        }
        Ok(())
    }

    /// Spends `cost` units from every check's budget, or from none: checked and written in one
    /// transaction under row locks, so nodes sharing the database share the budget exactly. A
    /// refusal records the first breach of each key per window in the ledger's log, with
    /// `actor`; later refusals within the window are answered from memory.
    pub async fn take_exact(
        &self,
        ledger: Ledger<'_>,
        checks: &[Check],
        cost: u32,
        actor: &Actor,
        meta: &RequestMeta,
    ) -> Result<Vec<Decision>> {
        let now = self.now();
        self.refuse_known_spent(checks, cost, now, meta)?;

        self.counters.exact_trips.fetch_add(1, Ordering::Relaxed);
        let mut order: Vec<usize> = (0..checks.len()).collect();
        order.sort_by(|&a, &b| checks[a].key.cmp(&checks[b].key));
        let keys: Vec<String> = order.iter().map(|&i| checks[i].key.clone()).collect();
        let mut tx = self.begin(ledger).await?;
        let states = tx.limits_lock(&keys).await?;
        let mut outcomes = Vec::with_capacity(checks.len());
        for (&i, mut state) in order.iter().zip(states) {
            let check = &checks[i];
            store_clamped(&mut *tx, &mut state, check.rate, now).await?;
            let outcome = check.rate.take(state.tat, now, cost);
            outcomes.push((i, state, outcome));
        }
        outcomes.sort_by_key(|(i, _, _)| *i);
        let allowed = outcomes.iter().all(|(_, _, o)| o.is_ok());
        let mut decisions = Vec::with_capacity(checks.len());
        for (i, mut state, outcome) in outcomes {
            let check = &checks[i];
            match outcome {
                Ok(new_tat) => {
                    // Refused by another budget: this one is left as it was.
                    let shown = if allowed { new_tat } else { state.tat };
                    decisions.push(Decision {
                        policy: check.policy,
                        limit: check.rate.limit,
                        window_secs: check.rate.window_secs,
                        remaining: check.rate.available(shown, now),
                        reset_secs: ceil_secs(check.rate.reset_us(shown, now)),
                        retry_after_secs: None,
                    });
                    if allowed {
                        state.tat = new_tat;
                        tx.limits_put(&state).await?;
                    }
                }
                Err(wait) => {
                    decisions.push(denied(check, state.tat, now, wait));
                    lock(&self.spent).insert(check.key.clone(), (state.tat, check.rate));
                    if state.logged_until <= now {
                        let log = match ledger {
                            Ledger::Instance => AuditLog::Instance,
                            Ledger::Workspace(scope) => {
                                AuditLog::Workspace(scope.workspace_id().clone())
                            }
                        };
                        let mut event = AuditEvent::new(
                            log,
                            "rate_limit.exceeded",
                            actor.clone(),
                            Target {
                                kind: "rate_limit".into(),
                                id: check.policy.to_owned(),
                            },
                        )
                        .with_result(AuditResult::Denied);
                        event.extra.insert(
                            "limit".into(),
                            json!({"policy": check.policy, "quota": check.rate.limit, "window_secs": check.rate.window_secs}),
                        );
                        if let Some(value) = &check.personal {
                            event = event.personal("/subject", value.clone());
                        }
                        tx.audit_append(&event.seal(meta, from_micros(now))?)
                            .await?;
                        state.logged_until = now + check.rate.window_us();
                        tx.limits_put(&state).await?;
                    }
                }
            }
        }
        tx.commit().await?;
        meta.limits.record(&decisions);
        if allowed {
            Ok(decisions)
        } else {
            Err(Error::RateLimited(Limited { decisions }))
        }
    }

    /// Spends one unit from every check's budget out of this node's leases, leasing more from
    /// the database only when a lease runs dry. A refusal by a later check refunds the earlier
    /// ones (their units are still this node's).
    pub async fn take_leased(&self, checks: &[Check], meta: &RequestMeta) -> Result<Vec<Decision>> {
        let mut decisions = Vec::with_capacity(checks.len());
        for (n, check) in checks.iter().enumerate() {
            match self.take_one_leased(check).await {
                Ok(d) => decisions.push(d),
                Err(e) => {
                    let mut leases = lock(&self.leases);
                    for done in &checks[..n] {
                        if let Some(lease) = leases.get_mut(&done.key) {
                            lease.tokens = lease.tokens.saturating_add(1);
                        }
                    }
                    drop(leases);
                    if let Error::RateLimited(limited) = &e {
                        meta.limits.record(&decisions);
                        meta.limits.record(&limited.decisions);
                    }
                    return Err(e);
                }
            }
        }
        meta.limits.record(&decisions);
        Ok(decisions)
    }

    /// From memory: `Some(Ok)` spent a leased unit, `Some(Err)` the key is known spent, `None`
    /// the lease is dry (the gate to lease more is returned).
    fn take_local(
        &self,
        check: &Check,
        now: i64,
    ) -> std::result::Result<Result<Decision>, Arc<tokio::sync::Mutex<()>>> {
        let mut leases = lock(&self.leases);
        let lease = leases
            .entry(check.key.clone())
            .or_insert_with(|| Lease::new(check.rate));
        if lease.rate != check.rate {
            // The operator changed the budget (or the plan changed): lease afresh.
            lease.rate = check.rate;
            lease.spent_until = 0;
        }
        if lease.tokens > 0 {
            lease.tokens -= 1;
            lease.last_used = now;
            self.counters.leased_local.fetch_add(1, Ordering::Relaxed);
            return Ok(Ok(lease.decision(check.policy, now)));
        }
        if lease.spent_until > now {
            let tat = lease.global_tat;
            return Ok(Err(Error::RateLimited(Limited {
                decisions: vec![denied(check, tat, now, lease.spent_until - now)],
            })));
        }
        Err(Arc::clone(&lease.gate))
    }

    async fn take_one_leased(&self, check: &Check) -> Result<Decision> {
        let now = self.now();
        let gate = match self.take_local(check, now) {
            Ok(answer) => return answer,
            Err(gate) => gate,
        };
        let _leasing = gate.lock().await;
        // Another request may have leased while this one waited for the gate.
        if let Ok(answer) = self.take_local(check, now) {
            return answer;
        }
        self.counters.lease_trips.fetch_add(1, Ordering::Relaxed);
        let rate = check.rate;
        let mut tx = self.begin(Ledger::Instance).await?;
        let mut state = tx
            .limits_lock(std::slice::from_ref(&check.key))
            .await?
            .pop()
            .ok_or_else(|| Error::internal(LeaseError))?;
        store_clamped(&mut *tx, &mut state, rate, now).await?;
        let available = rate.available(state.tat, now);
        // A quarter of what is left: large leases while the budget is full, small ones as it
        // runs out, so little is stranded on one node when another runs dry.
        let grant = (available / 4).max(1).min(available);
        let spent_until = match rate.take(state.tat, now, grant.max(1)) {
            Ok(new_tat) if grant > 0 => {
                state.tat = new_tat;
                tx.limits_put(&state).await?;
                0
            }
            Ok(_) => 0,
            Err(wait) => now + wait,
        };
        tx.commit().await?;
        let mut leases = lock(&self.leases);
        let lease = leases
            .entry(check.key.clone())
            .or_insert_with(|| Lease::new(rate));
        lease.global_tat = state.tat;
        lease.spent_until = spent_until;
        if grant == 0 {
            return Err(Error::RateLimited(Limited {
                decisions: vec![denied(check, state.tat, now, spent_until - now)],
            }));
        }
        lease.tokens = lease.tokens.saturating_add(grant - 1);
        lease.leased_at = now;
        lease.last_used = now;
        Ok(lease.decision(check.policy, now))
    }

    /// Gives unused leased units back to the database (those older than a second, or all with
    /// `all`), forgets idle leases and expired cache entries. The worker calls this every few
    /// hundred milliseconds and once at shutdown.
    pub async fn flush(&self, all: bool) -> Result<usize> {
        let now = self.now();
        let returns: Vec<(String, i64)> = {
            let mut leases = lock(&self.leases);
            let mut returns = Vec::new();
            for (key, lease) in leases.iter_mut() {
                if lease.tokens > 0 && (all || now - lease.leased_at >= LEASE_TTL_US) {
                    returns.push((
                        key.clone(),
                        lease.rate.emission_us() * i64::from(lease.tokens),
                    ));
                    lease.tokens = 0;
                }
            }
            leases.retain(|_, l| {
                l.tokens > 0 || l.spent_until > now || now - l.last_used < LEASE_IDLE_US
            });
            returns
        };
        lock(&self.spent).retain(|_, (tat, _)| *tat > now);
        if returns.is_empty() {
            return Ok(0);
        }
        let mut tx = self.begin(Ledger::Instance).await?;
        for (key, us) in &returns {
            tx.limits_give_back(key, *us).await?;
        }
        tx.commit().await?;
        Ok(returns.len())
    }

    /// Deletes database rows of keys whose budget has been full for an hour.
    pub async fn prune(&self) -> Result<u64> {
        let before = self.now() - 3_600 * 1_000_000;
        let mut tx = self.begin(Ledger::Instance).await?;
        let n = tx.limits_prune(before).await?;
        tx.commit().await?;
        Ok(n)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the rate-limit row was not returned after its insert")]
struct LeaseError;
