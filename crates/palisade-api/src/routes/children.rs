//! Child workspaces (TEN-3) and the workspace auth policy (TEN-4).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use palisade_core::ids::WorkspaceId;
use palisade_core::workspaces::children::Lifecycle;
use palisade_core::workspaces::model::{AuthPolicy, AuthPolicyPatch, NewChild, Workspace};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::extract::{JsonBody, ListParams, Meta, Tenant};
use crate::problem::{ApiResult, Problem};
use crate::routes::workspaces::Nullable;
use crate::routes::{ListOut, rfc3339};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChildIn {
    #[schema(example = "Acme Belgium", min_length = 1, max_length = 200)]
    pub name: String,
    pub slug: Option<String>,
    /// Invite this address as the child's owner; you do not join the child.
    pub owner_email: Option<String>,
}

/// A child's metadata: what its parent's owners see (never its data or members).
#[derive(Debug, Serialize, ToSchema)]
pub struct ChildOut {
    pub id: String,
    pub slug: String,
    pub name: String,
    pub region: String,
    pub plan: String,
    pub suspended_at: Option<String>,
    pub created_at: String,
}

impl From<Workspace> for ChildOut {
    fn from(w: Workspace) -> Self {
        Self {
            id: w.id.to_string(),
            slug: w.slug,
            name: w.name,
            region: w.region,
            plan: w.plan.as_str().to_owned(),
            suspended_at: w.suspended_at.map(rfc3339),
            created_at: rfc3339(w.created_at),
        }
    }
}

/// Create a child workspace (needs `children.manage`: owners). It shares nothing with its
/// parent but the link.
#[utoipa::path(post, path = "/api/v1/workspaces/{workspace}/children", tag = "children", security(("bearer" = [])),
    params(("workspace" = String, Path, description = "Workspace id or slug")),
    request_body = ChildIn,
    responses(
        (status = 201, description = "Created", body = ChildOut),
        (status = 403, description = "`permission_denied`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`workspace_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`slug_taken`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_child(
    State(state): State<AppState>,
    Tenant(scope): Tenant,
    Meta(meta): Meta,
    JsonBody(input): JsonBody<ChildIn>,
) -> ApiResult<(StatusCode, Json<ChildOut>)> {
    let child = state
        .services
        .create_child(
            &scope,
            NewChild {
                name: input.name,
                slug: input.slug,
                owner_email: input.owner_email,
            },
            &meta,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(child.into())))
}

/// The children's metadata (needs `children.manage`).
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/children", tag = "children", security(("bearer" = [])),
    params(
        ("workspace" = String, Path, description = "Workspace id or slug"),
        ("limit" = Option<u32>, Query, description = "1 to 200, default 50"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "One page", body = ListOut<ChildOut>),
        (status = 403, description = "`permission_denied`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`workspace_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_children(
    State(state): State<AppState>,
    Tenant(scope): Tenant,
    page: ListParams<WorkspaceId>,
) -> ApiResult<Json<ListOut<ChildOut>>> {
    let page = state
        .services
        .list_children(&scope, page.after, page.limit)
        .await?;
    Ok(Json(ListOut {
        data: page.data.into_iter().map(ChildOut::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

async fn lifecycle(
    state: &AppState,
    scope: &palisade_core::tenancy::TenantScope,
    child: &str,
    op: Lifecycle,
    meta: &palisade_core::principal::RequestMeta,
) -> ApiResult<Workspace> {
    Ok(state
        .services
        .child_lifecycle(scope, child, op, meta)
        .await?)
}

/// Suspend a child: its members get 403 `workspace_suspended`, except its owners' read of the
/// workspace itself.
#[utoipa::path(post, path = "/api/v1/workspaces/{workspace}/children/{child}/suspend", tag = "children", security(("bearer" = [])),
    params(("workspace" = String, Path, description = "Workspace id or slug"), ("child" = String, Path, description = "Child id or slug")),
    responses(
        (status = 200, description = "Suspended", body = ChildOut),
        (status = 403, description = "`permission_denied`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`workspace_not_found`, `child_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn suspend_child(
    State(state): State<AppState>,
    Tenant(scope): Tenant,
    Meta(meta): Meta,
    Path(path): Path<(String, String)>,
) -> ApiResult<Json<ChildOut>> {
    let (_, child) = path;
    let w = lifecycle(&state, &scope, &child, Lifecycle::Suspend, &meta).await?;
    Ok(Json(w.into()))
}

/// Resume a suspended child.
#[utoipa::path(post, path = "/api/v1/workspaces/{workspace}/children/{child}/resume", tag = "children", security(("bearer" = [])),
    params(("workspace" = String, Path, description = "Workspace id or slug"), ("child" = String, Path, description = "Child id or slug")),
    responses(
        (status = 200, description = "Resumed", body = ChildOut),
        (status = 403, description = "`permission_denied`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`workspace_not_found`, `child_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn resume_child(
    State(state): State<AppState>,
    Tenant(scope): Tenant,
    Meta(meta): Meta,
    Path(path): Path<(String, String)>,
) -> ApiResult<Json<ChildOut>> {
    let (_, child) = path;
    let w = lifecycle(&state, &scope, &child, Lifecycle::Resume, &meta).await?;
    Ok(Json(w.into()))
}

/// Delete a child: it is gone for all its members at once. Refused while it has children.
#[utoipa::path(delete, path = "/api/v1/workspaces/{workspace}/children/{child}", tag = "children", security(("bearer" = [])),
    params(("workspace" = String, Path, description = "Workspace id or slug"), ("child" = String, Path, description = "Child id or slug")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "`permission_denied`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`workspace_not_found`, `child_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`has_children`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete_child(
    State(state): State<AppState>,
    Tenant(scope): Tenant,
    Meta(meta): Meta,
    Path(path): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (_, child) = path;
    lifecycle(&state, &scope, &child, Lifecycle::Delete, &meta).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuthPolicyOut {
    /// `password`, `magic_link`: sessions started otherwise are refused here.
    pub sign_in_methods: Vec<String>,
    /// Sessions older than this since sign-in are refused here (403
    /// `reauthentication_required`).
    pub session_max_secs: Option<u32>,
    /// Applied when a member sets a password (the strictest of their workspaces).
    pub password_min_length: Option<u32>,
    /// Stored; enforced once TOTP and passkeys exist.
    pub mfa_required: bool,
}

impl From<AuthPolicy> for AuthPolicyOut {
    fn from(p: AuthPolicy) -> Self {
        Self {
            sign_in_methods: p
                .sign_in_methods
                .iter()
                .map(|m| m.as_str().to_owned())
                .collect(),
            session_max_secs: p.session_max_secs,
            password_min_length: p.password_min_length,
            mfa_required: p.mfa_required,
        }
    }
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthPolicyPatchIn {
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>, example = json!(["password", "magic_link"]))]
    pub sign_in_methods: Nullable<Vec<String>>,
    /// 300 to 31,536,000; `null` for no cap.
    #[serde(default)]
    #[schema(value_type = Option<u32>)]
    pub session_max_secs: Nullable<u32>,
    /// 10 to 256; `null` for the instance's minimum.
    #[serde(default)]
    #[schema(value_type = Option<u32>)]
    pub password_min_length: Nullable<u32>,
    #[serde(default)]
    #[schema(value_type = Option<bool>)]
    pub mfa_required: Nullable<bool>,
}

/// The workspace's auth policy (needs `workspace.read`).
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/auth-policy", tag = "workspaces", security(("bearer" = [])),
    params(("workspace" = String, Path, description = "Workspace id or slug")),
    responses(
        (status = 200, description = "The policy", body = AuthPolicyOut),
        (status = 403, description = "`permission_denied`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`workspace_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_auth_policy(
    State(state): State<AppState>,
    Tenant(scope): Tenant,
) -> ApiResult<Json<AuthPolicyOut>> {
    Ok(Json(state.services.get_auth_policy(&scope).await?.into()))
}

/// Change the auth policy (needs `auth_policy.manage`). A policy that would refuse your own
/// session is refused.
#[utoipa::path(patch, path = "/api/v1/workspaces/{workspace}/auth-policy", tag = "workspaces", security(("bearer" = [])),
    params(("workspace" = String, Path, description = "Workspace id or slug")),
    request_body(content = AuthPolicyPatchIn, content_type = "application/merge-patch+json"),
    responses(
        (status = 200, description = "Updated", body = AuthPolicyOut),
        (status = 403, description = "`permission_denied`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`workspace_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update_auth_policy(
    State(state): State<AppState>,
    Tenant(scope): Tenant,
    Meta(meta): Meta,
    JsonBody(input): JsonBody<AuthPolicyPatchIn>,
) -> ApiResult<Json<AuthPolicyOut>> {
    let patch = AuthPolicyPatch {
        sign_in_methods: input.sign_in_methods.into_patch(|v| v),
        session_max_secs: input.session_max_secs.into_patch(|v| v),
        password_min_length: input.password_min_length.into_patch(|v| v),
        mfa_required: input.mfa_required.into_patch(|v| v),
    };
    let policy = state
        .services
        .update_auth_policy(&scope, patch, &meta)
        .await?;
    Ok(Json(policy.into()))
}
