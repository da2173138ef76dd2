//! `/api/v1/admin/*`: what only instance administrators (config `admins`) may do.

use axum::Json;
use axum::extract::State;
use palisade_core::workspaces::model::AdminWorkspacePatch;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::extract::{Auth, JsonBody, Meta, WorkspaceKey};
use crate::problem::{ApiResult, Problem};
use crate::routes::workspaces::{Nullable, WorkspaceOut};
use crate::state::AppState;

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminWorkspacePatchIn {
    /// `starter`, `pro` or `business`.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub plan: Nullable<String>,
    /// A configured region.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub region: Nullable<String>,
    /// The full set of enabled modules: `advanced_rbac`, `sso`, `dora_pack`, `eu_failover`, `einvoicing`.
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>)]
    pub modules: Nullable<Vec<String>>,
}

/// Change a workspace's plan, region or modules (instance administrators only).
#[utoipa::path(patch, path = "/api/v1/admin/workspaces/{workspace}", tag = "admin", security(("bearer" = [])),
    params(("workspace" = String, Path, description = "Workspace id or slug")),
    request_body(content = AdminWorkspacePatchIn, content_type = "application/merge-patch+json"),
    responses(
        (status = 200, description = "Updated", body = WorkspaceOut),
        (status = 403, description = "`instance_admin_required`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`workspace_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update_workspace(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Meta(meta): Meta,
    WorkspaceKey(workspace): WorkspaceKey,
    JsonBody(patch): JsonBody<AdminWorkspacePatchIn>,
) -> ApiResult<Json<WorkspaceOut>> {
    let patch = AdminWorkspacePatch {
        plan: patch.plan.into_patch(|v| v),
        region: patch.region.into_patch(|v| v),
        modules: patch.modules.into_patch(|v| v),
    };
    let ws = state
        .services
        .admin_update_workspace(&principal, &workspace, patch, &meta)
        .await?;
    Ok(Json(WorkspaceOut::new(ws, None)))
}
