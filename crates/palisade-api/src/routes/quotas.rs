//! `/api/v1/workspaces/{workspace}/quotas/*`: budgets an application spends before its own
//! costly work (AI calls, uploads, inbound webhooks), shared exactly by every node.

use axum::Json;
use axum::extract::{Path, State};
use palisade_core::limits::Decision;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::extract::{JsonBody, Meta, Tenant};
use crate::problem::{ApiResult, Problem};
use crate::state::AppState;

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsumeIn {
    /// The application's own key (an end user, a tenant of yours): spent from its per-key
    /// budget as well as the workspace's. Stored only as a hash. 1 to 200 characters.
    #[schema(example = "user-42")]
    pub key: Option<String>,
    /// Units to spend (default 1), at most the budget's size.
    #[schema(example = 1, minimum = 1)]
    pub cost: Option<i64>,
}

/// One budget after the spend.
#[derive(Debug, Serialize, ToSchema)]
pub struct BudgetOut {
    /// `ai_per_workspace`, `ai_per_key`, …
    pub policy: &'static str,
    /// Units per window.
    pub limit: u32,
    pub window_secs: u64,
    pub remaining: u32,
    /// Seconds until the budget is full again.
    pub reset_secs: u64,
}

impl From<Decision> for BudgetOut {
    fn from(d: Decision) -> Self {
        Self {
            policy: d.policy,
            limit: d.limit,
            window_secs: d.window_secs,
            remaining: d.remaining,
            reset_secs: d.reset_secs,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConsumeOut {
    pub category: &'static str,
    /// Units spent.
    pub cost: u32,
    /// The least any budget has left.
    pub remaining: u32,
    /// The workspace's budget, then the key's.
    pub budgets: Vec<BudgetOut>,
}

/// Spend a quota before a costly operation: 200 with what is left, or 429 `rate_limited` with
/// `Retry-After` (nothing spent). The workspace's plan sets the budgets; the first refusal per
/// budget and window is an audit entry (`rate_limit.exceeded`).
#[utoipa::path(post, path = "/api/v1/workspaces/{workspace}/quotas/{category}/consume", tag = "quotas", security(("bearer" = [])),
    params(
        ("workspace" = String, Path, description = "Workspace id or slug"),
        ("category" = String, Path, description = "`ai`, `upload` or `webhook_ingest`"),
    ),
    request_body = ConsumeIn,
    responses(
        (status = 200, description = "Spent", body = ConsumeOut),
        (status = 403, description = "`permission_denied` (needs `quotas.consume`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`workspace_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: `category`, `/key` or `/cost`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`: `Retry-After`, `RateLimit` headers", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn consume(
    State(state): State<AppState>,
    Tenant(scope): Tenant,
    Meta(meta): Meta,
    Path(path): Path<(String, String)>,
    JsonBody(input): JsonBody<ConsumeIn>,
) -> ApiResult<Json<ConsumeOut>> {
    let category = path.1;
    let usage = state
        .services
        .consume_quota(&scope, &category, input.key.as_deref(), input.cost, &meta)
        .await?;
    Ok(Json(ConsumeOut {
        category: usage.category.as_str(),
        cost: usage.cost,
        remaining: usage.remaining(),
        budgets: usage.decisions.into_iter().map(BudgetOut::from).collect(),
    }))
}
