//! Members, invitations and the permission catalog (ACL-1, ACL-2, ACL-5, ACL-7).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use palisade_core::acl::{Permission, Role};
use palisade_core::api_keys::model::Scope;
use palisade_core::ids::{InvitationId, MemberId};
use palisade_core::workspaces::model::{Invitation, MemberPatch, MemberView};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::extract::{Auth, JsonBody, ListParams, Meta, Tenant};
use crate::problem::{ApiResult, Problem};
use crate::routes::workspaces::{Nullable, WorkspaceOut};
use crate::routes::{ListOut, rfc3339};
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct PermissionOut {
    #[schema(example = "members.manage")]
    pub key: &'static str,
    pub meaning: &'static str,
    /// The enum roles whose baseline holds it.
    #[schema(example = json!(["owner", "admin"]))]
    pub roles: Vec<&'static str>,
    /// The API key scopes that allow it (a key also needs its creator to have held it).
    #[schema(example = json!(["management"]))]
    pub api_key_scopes: Vec<&'static str>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PermissionsOut {
    pub data: Vec<PermissionOut>,
}

/// Every permission key, its meaning, and the enum roles and API key scopes that hold it
/// (ACL-2).
#[utoipa::path(get, path = "/api/v1/permissions", tag = "members",
    responses((status = 200, description = "The catalog", body = PermissionsOut)))]
pub async fn permissions() -> Json<PermissionsOut> {
    Json(PermissionsOut {
        data: Permission::ALL
            .iter()
            .map(|p| PermissionOut {
                key: p.key(),
                meaning: p.meaning(),
                roles: Role::ALL
                    .into_iter()
                    .filter(|r| r.grants(*p))
                    .map(Role::as_str)
                    .collect(),
                api_key_scopes: Scope::ALL
                    .into_iter()
                    .filter(|s| s.permissions().contains(*p))
                    .map(Scope::as_str)
                    .collect(),
            })
            .collect(),
    })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MemberOut {
    #[schema(example = "mem_06f1x9k2m3n4p5q6r7s8t9v0wx")]
    pub id: String,
    pub user_id: String,
    pub email: String,
    pub name: String,
    /// `owner`, `admin`, `member` or `billing`: the ceiling of what the member may do.
    pub role: String,
    /// A custom role narrowing the enum role (module `advanced_rbac`).
    pub custom_role: Option<String>,
    /// A deactivated member cannot act in the workspace.
    pub active: bool,
    pub created_at: String,
    pub updated_at: String,
}

impl From<MemberView> for MemberOut {
    fn from(v: MemberView) -> Self {
        let m = v.member;
        Self {
            id: m.id.to_string(),
            user_id: m.user_id.to_string(),
            email: v.email,
            name: v.name,
            role: m.role.as_str().to_owned(),
            custom_role: m.custom_role_id.map(|r| r.to_string()),
            active: m.active,
            created_at: rfc3339(m.created_at),
            updated_at: rfc3339(m.updated_at),
        }
    }
}

/// JSON merge patch of a membership.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberPatchIn {
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "admin")]
    pub role: Nullable<String>,
    /// A custom role id, or `null` to clear it.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub custom_role: Nullable<String>,
    #[serde(default)]
    #[schema(value_type = Option<bool>)]
    pub active: Nullable<bool>,
}

type ListParamsIn = ListParams<MemberId>;

/// The workspace's members (needs `members.read`).
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/members", tag = "members", security(("bearer" = [])),
    params(
        ("workspace" = String, Path, description = "Workspace id or slug"),
        ("limit" = Option<u32>, Query, description = "1 to 200, default 50"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "One page", body = ListOut<MemberOut>),
        (status = 403, description = "`permission_denied`, `workspace_suspended`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`workspace_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_members(
    State(state): State<AppState>,
    Tenant(scope): Tenant,
    page: ListParamsIn,
) -> ApiResult<Json<ListOut<MemberOut>>> {
    let page = state
        .services
        .list_members(&scope, page.after, page.limit)
        .await?;
    Ok(Json(ListOut {
        data: page.data.into_iter().map(MemberOut::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// One member (needs `members.read`).
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/members/{member}", tag = "members", security(("bearer" = [])),
    params(("workspace" = String, Path, description = "Workspace id or slug"), ("member" = String, Path, description = "Member id")),
    responses(
        (status = 200, description = "The member", body = MemberOut),
        (status = 403, description = "`permission_denied`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`workspace_not_found`, `member_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_member(
    State(state): State<AppState>,
    Tenant(scope): Tenant,
    Path(path): Path<(String, String)>,
) -> ApiResult<Json<MemberOut>> {
    let (_, member) = path;
    Ok(Json(
        state.services.get_member(&scope, &member).await?.into(),
    ))
}

/// Change a member's role, custom role or active flag (needs `members.manage`; owners and
/// the owner role need `owners.manage`). The last active owner cannot be demoted or
/// deactivated.
#[utoipa::path(patch, path = "/api/v1/workspaces/{workspace}/members/{member}", tag = "members", security(("bearer" = [])),
    params(("workspace" = String, Path, description = "Workspace id or slug"), ("member" = String, Path, description = "Member id")),
    request_body(content = MemberPatchIn, content_type = "application/merge-patch+json"),
    responses(
        (status = 200, description = "Updated", body = MemberOut),
        (status = 403, description = "`permission_denied`, `module_disabled` (custom roles)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`workspace_not_found`, `member_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`last_owner`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed` (e.g. a custom role beyond the member's role)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update_member(
    State(state): State<AppState>,
    Tenant(scope): Tenant,
    Meta(meta): Meta,
    Path(path): Path<(String, String)>,
    JsonBody(patch): JsonBody<MemberPatchIn>,
) -> ApiResult<Json<MemberOut>> {
    let (_, member) = path;
    let patch = MemberPatch {
        role: patch.role.into_patch(|v| v),
        custom_role: patch.custom_role.into_patch(|v| v),
        active: patch.active.into_patch(|v| v),
    };
    let view = state
        .services
        .update_member(&scope, &member, patch, &meta)
        .await?;
    Ok(Json(view.into()))
}

/// Remove a member (needs `members.manage`; an owner needs `owners.manage`). The last active
/// owner cannot be removed.
#[utoipa::path(delete, path = "/api/v1/workspaces/{workspace}/members/{member}", tag = "members", security(("bearer" = [])),
    params(("workspace" = String, Path, description = "Workspace id or slug"), ("member" = String, Path, description = "Member id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 403, description = "`permission_denied`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`workspace_not_found`, `member_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`last_owner`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn remove_member(
    State(state): State<AppState>,
    Tenant(scope): Tenant,
    Meta(meta): Meta,
    Path(path): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (_, member) = path;
    state.services.remove_member(&scope, &member, &meta).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Leave the workspace. The last active owner cannot.
#[utoipa::path(post, path = "/api/v1/workspaces/{workspace}/leave", tag = "members", security(("bearer" = [])),
    params(("workspace" = String, Path, description = "Workspace id or slug")),
    responses(
        (status = 204, description = "Left"),
        (status = 404, description = "`workspace_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`last_owner`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn leave(
    State(state): State<AppState>,
    Tenant(scope): Tenant,
    Meta(meta): Meta,
) -> ApiResult<StatusCode> {
    state.services.leave_workspace(&scope, &meta).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InvitationIn {
    #[schema(example = "grace@example.com")]
    pub email: String,
    #[schema(example = "member")]
    pub role: String,
    /// A custom role id (module `advanced_rbac`).
    pub custom_role: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InvitationOut {
    #[schema(example = "inv_06f1x9k2m3n4p5q6r7s8t9v0wx")]
    pub id: String,
    pub email: String,
    pub role: String,
    pub custom_role: Option<String>,
    /// `pending`, `accepted`, `revoked` or `expired`.
    pub status: String,
    /// The inviting user's id.
    pub invited_by: String,
    pub created_at: String,
    pub expires_at: String,
    pub accepted_at: Option<String>,
    pub revoked_at: Option<String>,
}

impl InvitationOut {
    fn new(i: Invitation, now: time::OffsetDateTime) -> Self {
        Self {
            status: i.status(now).to_owned(),
            id: i.id.to_string(),
            email: i.email,
            role: i.role.as_str().to_owned(),
            custom_role: i.custom_role_id.map(|r| r.to_string()),
            invited_by: i.invited_by.to_string(),
            created_at: rfc3339(i.created_at),
            expires_at: rfc3339(i.expires_at),
            accepted_at: i.accepted_at.map(rfc3339),
            revoked_at: i.revoked_at.map(rfc3339),
        }
    }
}

/// Invite someone by email (needs `members.manage`; the owner role needs `owners.manage`).
/// The link works once, for 7 days, for that address only; a newer invitation to the same
/// address replaces the open one.
#[utoipa::path(post, path = "/api/v1/workspaces/{workspace}/invitations", tag = "members", security(("bearer" = [])),
    params(("workspace" = String, Path, description = "Workspace id or slug")),
    request_body = InvitationIn,
    responses(
        (status = 201, description = "Invited; the link was emailed", body = InvitationOut),
        (status = 403, description = "`permission_denied`, `module_disabled`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`workspace_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`already_member`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn invite(
    State(state): State<AppState>,
    Tenant(scope): Tenant,
    Meta(meta): Meta,
    JsonBody(input): JsonBody<InvitationIn>,
) -> ApiResult<(StatusCode, Json<InvitationOut>)> {
    let invitation = state
        .services
        .invite(
            &scope,
            &input.email,
            &input.role,
            input.custom_role.as_deref(),
            &meta,
        )
        .await?;
    let now = state.services.now();
    Ok((
        StatusCode::CREATED,
        Json(InvitationOut::new(invitation, now)),
    ))
}

/// Invitations, newest first (needs `members.read`).
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/invitations", tag = "members", security(("bearer" = [])),
    params(
        ("workspace" = String, Path, description = "Workspace id or slug"),
        ("limit" = Option<u32>, Query, description = "1 to 200, default 50"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "One page", body = ListOut<InvitationOut>),
        (status = 403, description = "`permission_denied`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`workspace_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_invitations(
    State(state): State<AppState>,
    Tenant(scope): Tenant,
    page: ListParams<InvitationId>,
) -> ApiResult<Json<ListOut<InvitationOut>>> {
    let page = state
        .services
        .list_invitations(&scope, page.after, page.limit)
        .await?;
    let now = state.services.now();
    Ok(Json(ListOut {
        data: page
            .data
            .into_iter()
            .map(|i| InvitationOut::new(i, now))
            .collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Revoke an open invitation: its link stops working at once (needs `members.manage`).
#[utoipa::path(delete, path = "/api/v1/workspaces/{workspace}/invitations/{invitation}", tag = "members", security(("bearer" = [])),
    params(("workspace" = String, Path, description = "Workspace id or slug"), ("invitation" = String, Path, description = "Invitation id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 403, description = "`permission_denied`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`workspace_not_found`, `invitation_not_found` (also when accepted or revoked already)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn revoke_invitation(
    State(state): State<AppState>,
    Tenant(scope): Tenant,
    Meta(meta): Meta,
    Path(path): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (_, invitation) = path;
    state
        .services
        .revoke_invitation(&scope, &invitation, &meta)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptIn {
    /// The token from the invitation link (`#token=…`).
    #[schema(value_type = String, format = Password)]
    pub token: SecretString,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AcceptedOut {
    pub workspace: WorkspaceOut,
    pub member: MemberOut,
}

/// Accept an invitation as the signed-in user; the invited address must be yours.
#[utoipa::path(post, path = "/api/v1/invitations/accept", tag = "members", security(("bearer" = [])),
    request_body = AcceptIn,
    responses(
        (status = 200, description = "Joined", body = AcceptedOut),
        (status = 400, description = "`invalid_token`: unknown, used, revoked or expired", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`invitation_mismatch`: sent to another address", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`already_member`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn accept_invitation(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Meta(meta): Meta,
    JsonBody(input): JsonBody<AcceptIn>,
) -> ApiResult<Json<AcceptedOut>> {
    let (workspace, member) = state
        .services
        .accept_invitation(&principal, &input.token, &meta)
        .await?;
    Ok(Json(AcceptedOut {
        workspace: WorkspaceOut::new(workspace, Some(member.member.role)),
        member: member.into(),
    }))
}
