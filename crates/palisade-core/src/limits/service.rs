//! Where limits apply: sign-up, sign-in and refresh (exact, `auth`), every authenticated request
//! (leased, `api`), and the quotas applications consume before their own costly work (exact).

use tracing::instrument;

use super::limiter::Ledger;
use super::{Category, Check, Decision, Limiter};
use crate::acl::{Permission, authorize};
use crate::app::Services;
use crate::audit::Actor;
use crate::error::{Error, FieldError, Resource, Result};
use crate::principal::{Principal, RequestMeta};
use crate::store::Access;
use crate::tenancy::TenantScope;
use crate::workspaces::model::Plan;

/// Longest application key accepted by the quota endpoint.
pub const QUOTA_KEY_MAX: usize = 200;

/// What `quotas/{category}/consume` spent, and what is left.
#[derive(Debug, Clone)]
pub struct QuotaUsage {
    pub category: Category,
    pub cost: u32,
    /// The workspace's budget, then the key's when a key was given.
    pub decisions: Vec<Decision>,
}

impl QuotaUsage {
    /// The least any of the budgets has left.
    pub fn remaining(&self) -> u32 {
        self.decisions
            .iter()
            .map(|d| d.remaining)
            .min()
            .unwrap_or(0)
    }
}

fn principal_key(principal: &Principal) -> String {
    match principal {
        Principal::User { user_id, .. } => user_id.to_string(),
        Principal::ApiKey { key_id, .. } => key_id.to_string(),
    }
}

impl Services {
    pub fn limiter(&self) -> &Limiter {
        &self.limiter
    }

    /// `auth` checks before any password work, so a flood is refused before it costs Argon2
    /// time.
    pub(crate) async fn limit_auth(
        &self,
        checks: Vec<Option<Check>>,
        meta: &RequestMeta,
    ) -> Result<()> {
        let checks: Vec<Check> = checks.into_iter().flatten().collect();
        self.limiter
            .take_exact(Ledger::Instance, &checks, 1, &Actor::anonymous(), meta)
            .await
            .map(drop)
    }

    /// An authenticated request outside any workspace: the principal's instance budget.
    #[instrument(skip_all)]
    pub async fn limit_account_request(
        &self,
        principal: &Principal,
        meta: &RequestMeta,
    ) -> Result<()> {
        let check = Check::by_id(
            "api_per_account",
            self.settings.limits.auth.api_per_account,
            &principal_key(principal),
        );
        self.limiter.take_leased(&[check], meta).await.map(drop)
    }

    /// An authenticated request in a workspace: its plan's budget for the workspace and for
    /// the principal in it.
    pub(crate) async fn limit_workspace_request(
        &self,
        scope: &TenantScope,
        plan: Plan,
        meta: &RequestMeta,
    ) -> Result<()> {
        let ws = scope.workspace_id().as_str();
        let budget = self.settings.limits.for_workspace(ws, plan).api;
        let checks = [
            Check::by_id("api_per_workspace", budget.per_workspace, ws),
            Check::by_id(
                "api_per_principal",
                budget.per_key,
                &format!("{ws}:{}", principal_key(scope.principal())),
            ),
        ];
        self.limiter.take_leased(&checks, meta).await.map(drop)
    }

    /// `POST …/quotas/{category}/consume`: spends `cost` units of the workspace's budget and,
    /// with a `key`, of that key's, exactly (one database transaction, shared by every node).
    /// The first refusal per key and window is an audit entry in the workspace's log.
    #[instrument(skip_all, fields(workspace = %scope.workspace_id()))]
    pub async fn consume_quota(
        &self,
        scope: &TenantScope,
        category: &str,
        key: Option<&str>,
        cost: Option<i64>,
        meta: &RequestMeta,
    ) -> Result<QuotaUsage> {
        authorize(scope, Permission::QuotasConsume)?;
        let mut errors = Vec::new();
        let category = Category::consumable(category);
        if category.is_none() {
            errors.push(FieldError::new(
                "category",
                "must be one of ai, upload, webhook_ingest",
            ));
        }
        if let Some(key) = key {
            let len = key.chars().count();
            if !(1..=QUOTA_KEY_MAX).contains(&len) || key.chars().any(char::is_control) {
                errors.push(FieldError::new(
                    "/key",
                    format!("must be 1 to {QUOTA_KEY_MAX} characters without control characters"),
                ));
            }
        }
        let plan = {
            let mut tx = self.store.tenant(scope, Access::Read).await?;
            tx.workspace_get()
                .await?
                .ok_or(Error::NotFound(Resource::Workspace))?
                .plan
        };
        let ws = scope.workspace_id().as_str();
        let limits = self.settings.limits.for_workspace(ws, plan);
        let budget = category.and_then(|c| limits.budget(c));
        let cost = cost.unwrap_or(1);
        if let Some(b) = budget {
            let most = b.per_workspace.limit.min(if key.is_some() {
                b.per_key.limit
            } else {
                u32::MAX
            });
            if !(1..=i64::from(most)).contains(&cost) {
                errors.push(FieldError::new(
                    "/cost",
                    format!("must be an integer from 1 to {most} (the budget's size)"),
                ));
            }
        }
        let (Some(category), Some(budget)) = (category, budget) else {
            return Err(Error::Validation(errors));
        };
        if !errors.is_empty() {
            return Err(Error::Validation(errors));
        }
        let cost = u32::try_from(cost).map_err(Error::internal)?;
        let (ws_policy, key_policy) = match category {
            Category::Ai => ("ai_per_workspace", "ai_per_key"),
            Category::Upload => ("upload_per_workspace", "upload_per_key"),
            _ => ("webhook_ingest_per_workspace", "webhook_ingest_per_key"),
        };
        let mut checks = vec![Check::by_id(ws_policy, budget.per_workspace, ws)];
        if let Some(key) = key {
            checks.push(Check::by_personal(key_policy, budget.per_key, ws, key));
        }
        let actor = Actor::of(scope.principal());
        let decisions = self
            .limiter
            .take_exact(Ledger::Workspace(scope), &checks, cost, &actor, meta)
            .await?;
        Ok(QuotaUsage {
            category,
            cost,
            decisions,
        })
    }
}
