//! Rate limits (RTL-1 … RTL-4): one limiter, GCRA budgets per policy and key, tiers per plan.
//!
//! A policy (`sign_in_per_account`, `api_per_workspace`, …) is a [`Rate`]: `limit` units per
//! `window`, as GCRA, so a full budget allows a burst of `limit` and refills evenly. Every key's
//! state is one timestamp (the theoretical arrival time, TAT) in the database, so a restart keeps
//! it and several nodes share it. Two paths ([`limiter`]):
//! - **exact** (`auth`, and the quota endpoint): the TAT is read, checked and written in one
//!   database transaction under a row lock;
//! - **leased** (`api`): a node takes a slice of the budget from the database and spends it from
//!   memory, so a request costs no database round trip; unused slices go back within a second.

pub mod limiter;
pub mod service;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::workspaces::model::Plan;

pub use limiter::{LimitStats, Limiter};

/// What a budget limits (RTL-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    Auth,
    Api,
    Upload,
    WebhookIngest,
    Ai,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Auth => "auth",
            Category::Api => "api",
            Category::Upload => "upload",
            Category::WebhookIngest => "webhook_ingest",
            Category::Ai => "ai",
        }
    }

    /// The categories an application may spend through `quotas/{category}/consume`.
    pub const CONSUMABLE: [Category; 3] = [Category::Ai, Category::Upload, Category::WebhookIngest];

    pub fn consumable(text: &str) -> Option<Category> {
        Self::CONSUMABLE.into_iter().find(|c| c.as_str() == text)
    }
}

/// `limit` units per `window_secs`, e.g. `10/15m`. Written in configuration as
/// `<limit>/<n><unit>` with unit `s`, `m`, `h` or `d` (`n` may be omitted: `100/s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub limit: u32,
    pub window_secs: u64,
}

const MICROS: i64 = 1_000_000;
const MAX_WINDOW_SECS: u64 = 31 * 86_400;
const MAX_LIMIT: u32 = 1_000_000_000;

impl Rate {
    pub const fn new(limit: u32, window_secs: u64) -> Self {
        Self { limit, window_secs }
    }

    fn window_us(self) -> i64 {
        i64::try_from(self.window_secs.min(MAX_WINDOW_SECS)).unwrap_or(0) * MICROS
    }

    /// The emission interval: one unit refills every `window / limit`.
    pub fn emission_us(self) -> i64 {
        (self.window_us() / i64::from(self.limit.max(1))).max(1)
    }

    /// The bucket's depth in time: exactly `limit` units.
    fn capacity_us(self) -> i64 {
        self.emission_us() * i64::from(self.limit)
    }

    /// GCRA: spends `cost` units at `now` from a key whose TAT is `tat` (µs since the epoch;
    /// 0 for a fresh key). `Ok(new_tat)`, or `Err(wait)`: µs until `cost` units are there.
    pub fn take(self, tat: i64, now: i64, cost: u32) -> Result<i64, i64> {
        let base = self.clamp(tat, now);
        let new_tat = base + self.emission_us() * i64::from(cost);
        let allow_at = new_tat - self.capacity_us();
        if allow_at <= now {
            Ok(new_tat)
        } else {
            Err(allow_at - now)
        }
    }

    /// Units available at `now`.
    pub fn available(self, tat: i64, now: i64) -> u32 {
        let used = self.clamp(tat, now) - now;
        let left = (self.capacity_us() - used).max(0) / self.emission_us();
        u32::try_from(left).unwrap_or(0).min(self.limit)
    }

    /// µs until the budget is full again.
    pub fn reset_us(self, tat: i64, now: i64) -> i64 {
        self.clamp(tat, now) - now
    }

    /// A TAT further ahead than this rate's bucket is deep was written under an older, stricter
    /// rate: it reads as "spent now", and the limiter stores it so, so a raised limit takes
    /// effect within one new window.
    pub fn clamp(self, tat: i64, now: i64) -> i64 {
        tat.max(now).min(now + self.capacity_us())
    }

    fn check(self) -> Result<Self, String> {
        if self.limit == 0 || self.limit > MAX_LIMIT {
            return Err(format!("limit must be 1 to {MAX_LIMIT}"));
        }
        if self.window_secs == 0 || self.window_secs > MAX_WINDOW_SECS {
            return Err("window must be 1 second to 31 days".into());
        }
        Ok(self)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = self.window_secs;
        let (n, unit) = if w.is_multiple_of(86_400) {
            (w / 86_400, "d")
        } else if w.is_multiple_of(3_600) {
            (w / 3_600, "h")
        } else if w.is_multiple_of(60) {
            (w / 60, "m")
        } else {
            (w, "s")
        };
        write!(f, "{}/{n}{unit}", self.limit)
    }
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let shape = || format!("`{text}` is not a rate like `10/15m` (units s, m, h, d)");
        let (limit, window) = text.trim().split_once('/').ok_or_else(shape)?;
        let limit: u32 = limit.trim().parse().map_err(|_| shape())?;
        let window = window.trim();
        let split = window.len().saturating_sub(1);
        let (n, unit) = window.split_at(split);
        let n: u64 = if n.is_empty() {
            1
        } else {
            n.parse().map_err(|_| shape())?
        };
        let seconds = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3_600,
            "d" => 86_400,
            _ => return Err(shape()),
        };
        Rate::new(limit, n.saturating_mul(seconds)).check()
    }
}

impl Serialize for Rate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The instance-wide budgets: the `auth` category (no plan applies before sign-in) and
/// authenticated requests outside any workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthLimits {
    pub sign_in_per_ip: Rate,
    pub sign_in_per_account: Rate,
    pub sign_up_per_ip: Rate,
    pub sign_up_per_email_domain: Rate,
    pub refresh_per_ip: Rate,
    /// Authenticated requests outside a workspace (`/me`, listing workspaces), per principal.
    pub api_per_account: Rate,
    /// Password-reset codes issued per address (known or not) and per IP (IDN-3).
    pub password_reset_per_account: Rate,
    pub password_reset_per_ip: Rate,
    /// Magic links issued per address and per IP (IDN-4).
    pub magic_link_per_account: Rate,
    pub magic_link_per_ip: Rate,
    /// Verification emails (re)sent per address and per IP (IDN-1).
    pub verify_email_per_account: Rate,
    pub verify_email_per_ip: Rate,
    /// Attempts to redeem an emailed code or token (reset code, magic link, verification), per IP.
    pub redeem_per_ip: Rate,
    /// Well-formed API keys that turned out unknown or revoked, per IP: past it, keys not yet
    /// verified on the node are refused from memory, without a database lookup.
    pub api_key_failures_per_ip: Rate,
}

impl Default for AuthLimits {
    fn default() -> Self {
        Self {
            sign_in_per_ip: Rate::new(30, 60),
            sign_in_per_account: Rate::new(10, 15 * 60),
            sign_up_per_ip: Rate::new(10, 3_600),
            sign_up_per_email_domain: Rate::new(100, 3_600),
            refresh_per_ip: Rate::new(120, 60),
            api_per_account: Rate::new(20, 1),
            password_reset_per_account: Rate::new(3, 3_600),
            password_reset_per_ip: Rate::new(20, 3_600),
            magic_link_per_account: Rate::new(5, 3_600),
            magic_link_per_ip: Rate::new(20, 3_600),
            verify_email_per_account: Rate::new(3, 3_600),
            verify_email_per_ip: Rate::new(20, 3_600),
            redeem_per_ip: Rate::new(30, 15 * 60),
            api_key_failures_per_ip: Rate::new(30, 60),
        }
    }
}

/// One category's budgets in a workspace: for the whole workspace, and per key (the principal
/// for `api`; the application's `key` for consumed quotas).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Budget {
    pub per_workspace: Rate,
    pub per_key: Rate,
}

/// A plan's budgets for every workspace category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PlanLimits {
    pub api: Budget,
    pub upload: Budget,
    pub webhook_ingest: Budget,
    pub ai: Budget,
}

impl PlanLimits {
    /// The built-in tiers, documented in the README.
    pub fn default_for(plan: Plan) -> Self {
        let b = |w: (u32, u64), k: (u32, u64)| Budget {
            per_workspace: Rate::new(w.0, w.1),
            per_key: Rate::new(k.0, k.1),
        };
        match plan {
            Plan::Starter => Self {
                api: b((50, 1), (20, 1)),
                upload: b((200, 3_600), (50, 3_600)),
                webhook_ingest: b((20, 1), (10, 1)),
                ai: b((1_000, 86_400), (100, 86_400)),
            },
            Plan::Pro => Self {
                api: b((200, 1), (50, 1)),
                upload: b((2_000, 3_600), (200, 3_600)),
                webhook_ingest: b((100, 1), (50, 1)),
                ai: b((10_000, 86_400), (1_000, 86_400)),
            },
            Plan::Business => Self {
                api: b((1_000, 1), (200, 1)),
                upload: b((20_000, 3_600), (2_000, 3_600)),
                webhook_ingest: b((500, 1), (200, 1)),
                ai: b((100_000, 86_400), (10_000, 86_400)),
            },
        }
    }

    pub fn budget(&self, category: Category) -> Option<Budget> {
        match category {
            Category::Api => Some(self.api),
            Category::Upload => Some(self.upload),
            Category::WebhookIngest => Some(self.webhook_ingest),
            Category::Ai => Some(self.ai),
            Category::Auth => None,
        }
    }

    fn apply(mut self, patch: &PlanLimitsPatch) -> Self {
        for (slot, p) in [
            (&mut self.api, &patch.api),
            (&mut self.upload, &patch.upload),
            (&mut self.webhook_ingest, &patch.webhook_ingest),
            (&mut self.ai, &patch.ai),
        ] {
            if let Some(p) = p {
                slot.per_workspace = p.per_workspace.unwrap_or(slot.per_workspace);
                slot.per_key = p.per_key.unwrap_or(slot.per_key);
            }
        }
        self
    }
}

/// A partial [`Budget`] in configuration: what is absent keeps the plan's value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_workspace: Option<Rate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_key: Option<Rate>,
}

/// A partial [`PlanLimits`]: a plan's changes to the built-in tier, or one workspace's
/// changes to its plan.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanLimitsPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<BudgetPatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload: Option<BudgetPatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_ingest: Option<BudgetPatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ai: Option<BudgetPatch>,
}

/// `[rate_limits]` of the configuration: instance budgets, per-plan changes to the built-in
/// tiers, and the operator's per-workspace overrides (by workspace id).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    #[serde(default)]
    pub auth: AuthLimits,
    #[serde(default)]
    pub plans: BTreeMap<String, PlanLimitsPatch>,
    #[serde(default)]
    pub workspaces: BTreeMap<String, PlanLimitsPatch>,
}

impl LimitsConfig {
    /// Plan names and workspace ids must exist; the message names the bad key.
    pub fn validate(&self) -> Result<(), String> {
        for plan in self.plans.keys() {
            if Plan::parse(plan).is_none() {
                return Err(format!(
                    "rate_limits.plans.{plan}: unknown plan (starter, pro, business)"
                ));
            }
        }
        for ws in self.workspaces.keys() {
            if crate::ids::WorkspaceId::parse(ws).is_none() {
                return Err(format!(
                    "rate_limits.workspaces.{ws}: not a workspace id (ws_…)"
                ));
            }
        }
        Ok(())
    }

    /// The budgets of a workspace on `plan`: built-in tier, then the plan's changes, then the
    /// workspace's own.
    pub fn for_workspace(&self, workspace: &str, plan: Plan) -> PlanLimits {
        let mut limits = PlanLimits::default_for(plan);
        if let Some(p) = self.plans.get(plan.as_str()) {
            limits = limits.apply(p);
        }
        if let Some(p) = self.workspaces.get(workspace) {
            limits = limits.apply(p);
        }
        limits
    }
}

/// The outcome of one policy for one request: what the `RateLimit-Policy` and `RateLimit`
/// headers report (draft-ietf-httpapi-ratelimit-headers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub policy: &'static str,
    pub limit: u32,
    pub window_secs: u64,
    pub remaining: u32,
    /// Seconds until the budget is full again.
    pub reset_secs: u64,
    /// Set when this policy refused the request: seconds until it would be allowed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
}

/// Whole seconds, rounded up, so a client that waits that long is allowed.
pub(crate) fn ceil_secs(us: i64) -> u64 {
    u64::try_from((us.max(0) + MICROS - 1) / MICROS).unwrap_or(0)
}

/// A refused request: every policy checked, at least one with `retry_after_secs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited {
    pub decisions: Vec<Decision>,
}

impl Limited {
    /// The longest wait among the refusing policies.
    pub fn retry_after_secs(&self) -> u64 {
        self.decisions
            .iter()
            .filter_map(|d| d.retry_after_secs)
            .max()
            .unwrap_or(1)
            .max(1)
    }

    /// The first refusing policy's name.
    pub fn policy(&self) -> &'static str {
        self.decisions
            .iter()
            .find(|d| d.retry_after_secs.is_some())
            .map_or("", |d| d.policy)
    }
}

/// The decisions taken while serving one request, for the response headers. The HTTP layer
/// creates one per request; services record into the copy in `RequestMeta`.
#[derive(Debug, Clone, Default)]
pub struct LimitReport(Arc<Mutex<Vec<Decision>>>);

impl LimitReport {
    /// Records decisions, replacing an earlier one of the same policy.
    pub fn record(&self, decisions: &[Decision]) {
        let mut all = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        for d in decisions {
            all.retain(|o| o.policy != d.policy);
            all.push(d.clone());
        }
    }

    pub fn decisions(&self) -> Vec<Decision> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// One policy applied to one key. `key` is what the database stores: personal subjects (IP,
/// email, an application's key) only as a hash. `personal` is the subject in clear, for the
/// audit entry of a breach, where it becomes a commitment; `Debug` never shows it.
#[derive(Clone)]
pub struct Check {
    pub policy: &'static str,
    pub rate: Rate,
    pub key: String,
    pub personal: Option<serde_json::Value>,
}

impl fmt::Debug for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Check")
            .field("policy", &self.policy)
            .field("rate", &self.rate)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// The subject of a per-IP budget: an IPv4 address, or an IPv6 address's /64 (one host usually
/// holds a whole /64, so per-address budgets would be no limit at all).
pub fn ip_subject(ip: std::net::IpAddr) -> String {
    match ip.to_canonical() {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

impl Check {
    /// A key naming an id (workspace, principal): stored as is.
    pub fn by_id(policy: &'static str, rate: Rate, id: &str) -> Self {
        Self {
            policy,
            rate,
            key: format!("{policy}:{id}"),
            personal: None,
        }
    }

    /// A per-IP key ([`ip_subject`]); none when the transport gave no address.
    pub fn for_ip(policy: &'static str, rate: Rate, ip: Option<std::net::IpAddr>) -> Option<Self> {
        ip.map(|ip| Self::by_personal(policy, rate, "ip", &ip_subject(ip)))
    }

    /// A key naming a personal value: stored as its SHA-256, committed in the audit entry.
    pub fn by_personal(policy: &'static str, rate: Rate, scope: &str, value: &str) -> Self {
        let digest = crate::crypto::sha256(format!("{scope}\n{value}").as_bytes());
        let hex = crate::crypto::hex(&digest);
        Self {
            policy,
            rate,
            key: format!("{policy}:{scope}:{hex}"),
            personal: Some(serde_json::Value::String(value.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = MICROS;

    #[test]
    fn rates_parse_and_print() {
        assert_eq!("10/15m".parse(), Ok(Rate::new(10, 900)));
        assert_eq!("100/s".parse(), Ok(Rate::new(100, 1)));
        assert_eq!("5/1d".parse(), Ok(Rate::new(5, 86_400)));
        assert_eq!(Rate::new(10, 900).to_string(), "10/15m");
        assert_eq!(Rate::new(7, 90).to_string(), "7/90s");
        assert_eq!(Rate::new(1, 7_200).to_string(), "1/2h");
        for bad in [
            "", "10", "10/", "x/1s", "10/1w", "0/1s", "10/0s", "10/40d", "-1/1s",
        ] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_full_budget_allows_exactly_limit_then_refills_evenly() {
        for rate in [Rate::new(10, 900), Rate::new(1_500, 1), Rate::new(3, 1)] {
            let now = 1_000 * S;
            let mut tat = 0;
            for _ in 0..rate.limit {
                tat = rate.take(tat, now, 1).unwrap();
            }
            assert_eq!(rate.available(tat, now), 0, "{rate}");
            let wait = rate.take(tat, now, 1).unwrap_err();
            assert_eq!(wait, rate.emission_us(), "{rate}");
            // After one emission interval exactly one more unit is there.
            let later = now + wait;
            assert_eq!(rate.available(tat, later), 1, "{rate}");
            let tat = rate.take(tat, later, 1).unwrap();
            assert!(rate.take(tat, later, 1).is_err(), "{rate}");
        }
    }

    #[test]
    fn cost_counts_several_units_and_an_idle_key_is_full() {
        let rate = Rate::new(100, 60);
        let now = 50 * S;
        let tat = rate.take(0, now, 60).unwrap();
        assert_eq!(rate.available(tat, now), 40);
        assert!(rate.take(tat, now, 41).is_err());
        assert_eq!(
            rate.take(tat, now, 40).map(|t| rate.available(t, now)),
            Ok(0)
        );
        assert_eq!(rate.available(tat, now + 3_600 * S), 100);
        assert_eq!(rate.reset_us(tat, now), 36 * S);
        assert_eq!(ceil_secs(1), 1);
        assert_eq!(ceil_secs(2 * S), 2);
    }

    #[test]
    fn a_changed_rate_reads_old_state_within_its_own_window() {
        let strict = Rate::new(5, 3_600);
        let now = 10 * S;
        let mut tat = 0;
        for _ in 0..5 {
            tat = strict.take(tat, now, 1).unwrap();
        }
        let raised = Rate::new(1_000, 1);
        assert_eq!(raised.available(tat, now), 0);
        let stored = raised.clamp(tat, now);
        assert_eq!(raised.available(stored, now + S), 1_000);
        assert!(raised.take(stored, now + S / 100, 1).is_ok());
    }

    #[test]
    fn tiers_apply_plan_then_workspace_changes() {
        let ws = "ws_06f1x9k2m3n4p5q6r7s8t9v0wx";
        let config: LimitsConfig = serde_json::from_value(serde_json::json!({
            "plans": {"pro": {"ai": {"per_workspace": "5/1d"}}},
            "workspaces": {ws: {"ai": {"per_key": "2/1h"}, "api": {"per_workspace": "9/1s"}}}
        }))
        .unwrap();
        let pro = config.for_workspace("ws_other", Plan::Pro);
        assert_eq!(pro.ai.per_workspace, Rate::new(5, 86_400));
        assert_eq!(
            pro.ai.per_key,
            PlanLimits::default_for(Plan::Pro).ai.per_key
        );
        let mine = config.for_workspace(ws, Plan::Pro);
        assert_eq!(mine.ai.per_workspace, Rate::new(5, 86_400));
        assert_eq!(mine.ai.per_key, Rate::new(2, 3_600));
        assert_eq!(mine.api.per_workspace, Rate::new(9, 1));
        assert_eq!(
            config.for_workspace(ws, Plan::Starter).ai.per_workspace,
            PlanLimits::default_for(Plan::Starter).ai.per_workspace
        );
        let bad: LimitsConfig =
            serde_json::from_value(serde_json::json!({"plans": {"gold": {}}})).unwrap();
        assert!(
            bad.validate()
                .unwrap_err()
                .contains("rate_limits.plans.gold")
        );
    }

    #[test]
    fn ipv6_budgets_cover_the_slash_64() {
        let ip = |t: &str| ip_subject(t.parse().unwrap());
        assert_eq!(ip("192.0.2.7"), "192.0.2.7");
        assert_eq!(ip("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(ip("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(ip("2001:db8:1:2:ffff::9"), ip("2001:db8:1:2::1"));
        assert_ne!(ip("2001:db8:1:3::1"), ip("2001:db8:1:2::1"));
    }

    #[test]
    fn personal_keys_are_hashed() {
        let c = Check::by_personal("p", Rate::new(1, 1), "ip", "192.0.2.7");
        assert!(!c.key.contains("192.0.2.7"));
        assert!(c.key.starts_with("p:ip:") && c.key.len() == "p:ip:".len() + 64);
        assert!(!format!("{c:?}").contains("192.0.2.7"));
    }
}
