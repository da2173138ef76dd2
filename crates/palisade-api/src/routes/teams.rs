//! Teams (ACL-4) and custom roles (ACL-3).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use palisade_core::acl::{FieldGrant, TeamGrant};
use palisade_core::ids::{CustomRoleId, MemberId, TeamId};
use palisade_core::workspaces::model::{
    CustomRole, CustomRoleInput, Team, TeamGrantInput, TeamInput,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::extract::{JsonBody, ListParams, Meta, Tenant};
use crate::problem::{ApiResult, Problem};
use crate::routes::members::MemberOut;
use crate::routes::workspaces::Nullable;
use crate::routes::{ListOut, rfc3339};
use crate::state::AppState;

/// Permissions a team gives its members: workspace-wide without `collection`, else on that
/// collection only (`records.read`, `records.read_draft`, `records.write`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TeamGrantIo {
    #[schema(example = "invoices")]
    pub collection: Option<String>,
    #[schema(example = json!(["records.read", "records.write"]))]
    pub permissions: Vec<String>,
}

impl From<TeamGrant> for TeamGrantIo {
    fn from(g: TeamGrant) -> Self {
        Self {
            collection: g.collection,
            permissions: g
                .permissions
                .keys()
                .into_iter()
                .map(str::to_owned)
                .collect(),
        }
    }
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TeamIn {
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "Finance")]
    pub name: Nullable<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub description: Nullable<String>,
    /// Needs `roles.manage` to set.
    #[serde(default)]
    #[schema(value_type = Option<Vec<TeamGrantIo>>)]
    pub grants: Nullable<Vec<TeamGrantIo>>,
}

impl From<TeamIn> for TeamInput {
    fn from(t: TeamIn) -> Self {
        TeamInput {
            name: t.name.into_patch(|v| v),
            description: t.description.into_patch(|v| v),
            grants: t.grants.into_patch(|gs| {
                gs.into_iter()
                    .map(|g| TeamGrantInput {
                        collection: g.collection,
                        permissions: g.permissions,
                    })
                    .collect()
            }),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TeamOut {
    #[schema(example = "team_06f1x9k2m3n4p5q6r7s8t9v0wx")]
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub grants: Vec<TeamGrantIo>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<Team> for TeamOut {
    fn from(t: Team) -> Self {
        Self {
            id: t.id.to_string(),
            name: t.name,
            description: t.description,
            grants: t.grants.into_iter().map(TeamGrantIo::from).collect(),
            created_at: rfc3339(t.created_at),
            updated_at: rfc3339(t.updated_at),
        }
    }
}

/// Create a team (needs `members.manage`; grants need `roles.manage` and may not exceed
/// your own permissions).
#[utoipa::path(post, path = "/api/v1/workspaces/{workspace}/teams", tag = "teams", security(("bearer" = [])),
    params(("workspace" = String, Path, description = "Workspace id or slug")),
    request_body = TeamIn,
    responses(
        (status = 201, description = "Created", body = TeamOut),
        (status = 403, description = "`permission_denied`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`workspace_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`name_taken`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_team(
    State(state): State<AppState>,
    Tenant(scope): Tenant,
    Meta(meta): Meta,
    JsonBody(input): JsonBody<TeamIn>,
) -> ApiResult<(StatusCode, Json<TeamOut>)> {
    let team = state
        .services
        .create_team(&scope, input.into(), &meta)
        .await?;
    Ok((StatusCode::CREATED, Json(team.into())))
}

/// The workspace's teams (needs `members.read`).
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/teams", tag = "teams", security(("bearer" = [])),
    params(
        ("workspace" = String, Path, description = "Workspace id or slug"),
        ("limit" = Option<u32>, Query, description = "1 to 200, default 50"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "One page", body = ListOut<TeamOut>),
        (status = 403, description = "`permission_denied`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`workspace_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_teams(
    State(state): State<AppState>,
    Tenant(scope): Tenant,
    page: ListParams<TeamId>,
) -> ApiResult<Json<ListOut<TeamOut>>> {
    let page = state
        .services
        .list_teams(&scope, page.after, page.limit)
        .await?;
    Ok(Json(ListOut {
        data: page.data.into_iter().map(TeamOut::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// One team (needs `members.read`).
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/teams/{team}", tag = "teams", security(("bearer" = [])),
    params(("workspace" = String, Path, description = "Workspace id or slug"), ("team" = String, Path, description = "Team id")),
    responses(
        (status = 200, description = "The team", body = TeamOut),
        (status = 403, description = "`permission_denied`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`workspace_not_found`, `team_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_team(
    State(state): State<AppState>,
    Tenant(scope): Tenant,
    Path(path): Path<(String, String)>,
) -> ApiResult<Json<TeamOut>> {
    let (_, team) = path;
    Ok(Json(state.services.get_team(&scope, &team).await?.into()))
}

/// Rename a team or change its grants (merge patch).
#[utoipa::path(patch, path = "/api/v1/workspaces/{workspace}/teams/{team}", tag = "teams", security(("bearer" = [])),
    params(("workspace" = String, Path, description = "Workspace id or slug"), ("team" = String, Path, description = "Team id")),
    request_body(content = TeamIn, content_type = "application/merge-patch+json"),
    responses(
        (status = 200, description = "Updated", body = TeamOut),
        (status = 403, description = "`permission_denied`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`workspace_not_found`, `team_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`name_taken`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update_team(
    State(state): State<AppState>,
    Tenant(scope): Tenant,
    Meta(meta): Meta,
    Path(path): Path<(String, String)>,
    JsonBody(input): JsonBody<TeamIn>,
) -> ApiResult<Json<TeamOut>> {
    let (_, team) = path;
    let team = state
        .services
        .update_team(&scope, &team, input.into(), &meta)
        .await?;
    Ok(Json(team.into()))
}

/// Delete a team; its members keep their workspace membership.
#[utoipa::path(delete, path = "/api/v1/workspaces/{workspace}/teams/{team}", tag = "teams", security(("bearer" = [])),
    params(("workspace" = String, Path, description = "Workspace id or slug"), ("team" = String, Path, description = "Team id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "`permission_denied`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`workspace_not_found`, `team_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete_team(
    State(state): State<AppState>,
    Tenant(scope): Tenant,
    Meta(meta): Meta,
    Path(path): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (_, team) = path;
    state.services.delete_team(&scope, &team, &meta).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The team's members (needs `members.read`).
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/teams/{team}/members", tag = "teams", security(("bearer" = [])),
    params(
        ("workspace" = String, Path, description = "Workspace id or slug"),
        ("team" = String, Path, description = "Team id"),
        ("limit" = Option<u32>, Query, description = "1 to 200, default 50"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "One page", body = ListOut<MemberOut>),
        (status = 403, description = "`permission_denied`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`workspace_not_found`, `team_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_team_members(
    State(state): State<AppState>,
    Tenant(scope): Tenant,
    Path(path): Path<(String, String)>,
    page: ListParams<MemberId>,
) -> ApiResult<Json<ListOut<MemberOut>>> {
    let (_, team) = path;
    let page = state
        .services
        .list_team_members(&scope, &team, page.after, page.limit)
        .await?;
    Ok(Json(ListOut {
        data: page.data.into_iter().map(MemberOut::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Add a member to a team; adding twice changes nothing (needs `members.manage`, and
/// `roles.manage` for a team with grants).
#[utoipa::path(put, path = "/api/v1/workspaces/{workspace}/teams/{team}/members/{member}", tag = "teams", security(("bearer" = [])),
    params(("workspace" = String, Path, description = "Workspace id or slug"), ("team" = String, Path, description = "Team id"), ("member" = String, Path, description = "Member id")),
    responses(
        (status = 200, description = "In the team", body = MemberOut),
        (status = 403, description = "`permission_denied`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`workspace_not_found`, `team_not_found`, `member_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn add_team_member(
    State(state): State<AppState>,
    Tenant(scope): Tenant,
    Meta(meta): Meta,
    Path(path): Path<(String, String, String)>,
) -> ApiResult<Json<MemberOut>> {
    let (_, team, member) = path;
    let view = state
        .services
        .add_team_member(&scope, &team, &member, &meta)
        .await?;
    Ok(Json(view.into()))
}

/// Remove a member from a team.
#[utoipa::path(delete, path = "/api/v1/workspaces/{workspace}/teams/{team}/members/{member}", tag = "teams", security(("bearer" = [])),
    params(("workspace" = String, Path, description = "Workspace id or slug"), ("team" = String, Path, description = "Team id"), ("member" = String, Path, description = "Member id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 403, description = "`permission_denied`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`workspace_not_found`, `team_not_found`, `member_not_found` (also when not in the team)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn remove_team_member(
    State(state): State<AppState>,
    Tenant(scope): Tenant,
    Meta(meta): Meta,
    Path(path): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    let (_, team, member) = path;
    state
        .services
        .remove_team_member(&scope, &team, &member, &meta)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Read and write on one collection's field (`*`: every field), for a custom role.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldGrantIo {
    #[schema(example = "invoices")]
    pub collection: String,
    #[schema(example = "amount")]
    pub field: String,
    pub read: bool,
    pub write: bool,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleIn {
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "Bookkeeper")]
    pub name: Nullable<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub description: Nullable<String>,
    /// The enum role whose baseline bounds the permissions.
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "member")]
    pub base_role: Nullable<String>,
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>, example = json!(["workspace.read", "records.read"]))]
    pub permissions: Nullable<Vec<String>>,
    /// Enforced on records (DAT-4); a collection listed here shows only the granted fields.
    #[serde(default)]
    #[schema(value_type = Option<Vec<FieldGrantIo>>)]
    pub fields: Nullable<Vec<FieldGrantIo>>,
}

impl From<RoleIn> for CustomRoleInput {
    fn from(r: RoleIn) -> Self {
        CustomRoleInput {
            name: r.name.into_patch(|v| v),
            description: r.description.into_patch(|v| v),
            base_role: r.base_role.into_patch(|v| v),
            permissions: r.permissions.into_patch(|v| v),
            fields: r.fields.into_patch(|fs| {
                fs.into_iter()
                    .map(|f| FieldGrant {
                        collection: f.collection,
                        field: f.field,
                        read: f.read,
                        write: f.write,
                    })
                    .collect()
            }),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RoleOut {
    #[schema(example = "role_06f1x9k2m3n4p5q6r7s8t9v0wx")]
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub base_role: String,
    pub permissions: Vec<String>,
    pub fields: Vec<FieldGrantIo>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<CustomRole> for RoleOut {
    fn from(r: CustomRole) -> Self {
        Self {
            id: r.id.to_string(),
            name: r.name,
            description: r.description,
            base_role: r.base_role.as_str().to_owned(),
            permissions: r
                .permissions
                .keys()
                .into_iter()
                .map(str::to_owned)
                .collect(),
            fields: r
                .fields
                .into_iter()
                .map(|f| FieldGrantIo {
                    collection: f.collection,
                    field: f.field,
                    read: f.read,
                    write: f.write,
                })
                .collect(),
            created_at: rfc3339(r.created_at),
            updated_at: rfc3339(r.updated_at),
        }
    }
}

/// Define a custom role (needs `roles.manage` and module `advanced_rbac`). Permissions
/// beyond the base role's baseline, or your own, are refused by name.
#[utoipa::path(post, path = "/api/v1/workspaces/{workspace}/roles", tag = "roles", security(("bearer" = [])),
    params(("workspace" = String, Path, description = "Workspace id or slug")),
    request_body = RoleIn,
    responses(
        (status = 201, description = "Created", body = RoleOut),
        (status = 403, description = "`permission_denied`, `module_disabled`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`workspace_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`name_taken`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_role(
    State(state): State<AppState>,
    Tenant(scope): Tenant,
    Meta(meta): Meta,
    JsonBody(input): JsonBody<RoleIn>,
) -> ApiResult<(StatusCode, Json<RoleOut>)> {
    let role = state
        .services
        .create_custom_role(&scope, input.into(), &meta)
        .await?;
    Ok((StatusCode::CREATED, Json(role.into())))
}

/// The workspace's custom roles (needs `members.read` and module `advanced_rbac`).
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/roles", tag = "roles", security(("bearer" = [])),
    params(
        ("workspace" = String, Path, description = "Workspace id or slug"),
        ("limit" = Option<u32>, Query, description = "1 to 200, default 50"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "One page", body = ListOut<RoleOut>),
        (status = 403, description = "`permission_denied`, `module_disabled`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`workspace_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_roles(
    State(state): State<AppState>,
    Tenant(scope): Tenant,
    page: ListParams<CustomRoleId>,
) -> ApiResult<Json<ListOut<RoleOut>>> {
    let page = state
        .services
        .list_custom_roles(&scope, page.after, page.limit)
        .await?;
    Ok(Json(ListOut {
        data: page.data.into_iter().map(RoleOut::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// One custom role.
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/roles/{role}", tag = "roles", security(("bearer" = [])),
    params(("workspace" = String, Path, description = "Workspace id or slug"), ("role" = String, Path, description = "Custom role id")),
    responses(
        (status = 200, description = "The role", body = RoleOut),
        (status = 403, description = "`permission_denied`, `module_disabled`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`workspace_not_found`, `role_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_role(
    State(state): State<AppState>,
    Tenant(scope): Tenant,
    Path(path): Path<(String, String)>,
) -> ApiResult<Json<RoleOut>> {
    let (_, role) = path;
    Ok(Json(
        state.services.get_custom_role(&scope, &role).await?.into(),
    ))
}

/// Change a custom role (merge patch); its holders' access changes with their next request.
#[utoipa::path(patch, path = "/api/v1/workspaces/{workspace}/roles/{role}", tag = "roles", security(("bearer" = [])),
    params(("workspace" = String, Path, description = "Workspace id or slug"), ("role" = String, Path, description = "Custom role id")),
    request_body(content = RoleIn, content_type = "application/merge-patch+json"),
    responses(
        (status = 200, description = "Updated", body = RoleOut),
        (status = 403, description = "`permission_denied`, `module_disabled`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`workspace_not_found`, `role_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`name_taken`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update_role(
    State(state): State<AppState>,
    Tenant(scope): Tenant,
    Meta(meta): Meta,
    Path(path): Path<(String, String)>,
    JsonBody(input): JsonBody<RoleIn>,
) -> ApiResult<Json<RoleOut>> {
    let (_, role) = path;
    let role = state
        .services
        .update_custom_role(&scope, &role, input.into(), &meta)
        .await?;
    Ok(Json(role.into()))
}

/// Delete a custom role that no member or open invitation holds.
#[utoipa::path(delete, path = "/api/v1/workspaces/{workspace}/roles/{role}", tag = "roles", security(("bearer" = [])),
    params(("workspace" = String, Path, description = "Workspace id or slug"), ("role" = String, Path, description = "Custom role id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "`permission_denied`, `module_disabled`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`workspace_not_found`, `role_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`role_in_use`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete_role(
    State(state): State<AppState>,
    Tenant(scope): Tenant,
    Meta(meta): Meta,
    Path(path): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (_, role) = path;
    state
        .services
        .delete_custom_role(&scope, &role, &meta)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
