//! `/api/v1/workspaces`: create, list mine, read and update by id or slug (TEN-1).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use palisade_core::acl::Role;
use palisade_core::workspaces::model::{
    Branding, BrandingPatch, NewWorkspace, Patch, Workspace, WorkspacePatch,
};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use crate::extract::{Auth, JsonBody, ListParams, Meta, Tenant};
use crate::problem::{ApiResult, Problem};
use crate::routes::{ListOut, rfc3339};
use crate::state::AppState;

/// A merge-patch field on the wire: absent, `null`, or a value.
#[derive(Debug, Default)]
pub enum Nullable<T> {
    #[default]
    Absent,
    Null,
    Value(T),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Nullable<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Option::<T>::deserialize(d)?.map_or(Nullable::Null, Nullable::Value))
    }
}

impl<T> Nullable<T> {
    pub fn into_patch<U>(self, f: impl FnOnce(T) -> U) -> Patch<U> {
        match self {
            Nullable::Absent => Patch::Absent,
            Nullable::Null => Patch::Null,
            Nullable::Value(v) => Patch::Value(f(v)),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceIn {
    #[schema(example = "Acme Corp", min_length = 1, max_length = 200)]
    pub name: String,
    /// 3 to 63 lowercase letters, digits or `-`; derived from the name when absent.
    #[schema(example = "acme")]
    pub slug: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BrandingOut {
    pub display_name: Option<String>,
    pub logo_url: Option<String>,
    pub primary_color: Option<String>,
    pub accent_color: Option<String>,
}

impl From<Branding> for BrandingOut {
    fn from(b: Branding) -> Self {
        Self {
            display_name: b.display_name,
            logo_url: b.logo_url,
            primary_color: b.primary_color,
            accent_color: b.accent_color,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WorkspaceOut {
    #[schema(example = "ws_06f1x9k2m3n4p5q6r7s8t9v0wx")]
    pub id: String,
    pub slug: String,
    pub name: String,
    pub branding: BrandingOut,
    #[schema(example = "eu")]
    pub region: String,
    #[schema(example = "Europe/Brussels")]
    pub timezone: String,
    #[schema(example = "EUR")]
    pub currency: String,
    /// `starter`, `pro` or `business`; set by instance administrators.
    pub plan: String,
    /// Enabled modules; set by instance administrators.
    pub modules: Vec<String>,
    pub parent_id: Option<String>,
    /// Set while the parent's owners suspend the workspace (only owners can read it then).
    pub suspended_at: Option<String>,
    /// The caller's role here (absent for instance-administrator responses).
    pub role: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl WorkspaceOut {
    pub fn new(w: Workspace, role: Option<Role>) -> Self {
        Self {
            id: w.id.to_string(),
            slug: w.slug,
            name: w.name,
            branding: w.branding.into(),
            region: w.region,
            timezone: w.timezone,
            currency: w.currency,
            plan: w.plan.as_str().to_owned(),
            modules: w.modules.iter().map(|m| m.as_str().to_owned()).collect(),
            parent_id: w.parent_id.map(|p| p.to_string()),
            suspended_at: w.suspended_at.map(rfc3339),
            role: role.map(|r| r.as_str().to_owned()),
            created_at: rfc3339(w.created_at),
            updated_at: rfc3339(w.updated_at),
        }
    }
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BrandingPatchIn {
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub display_name: Nullable<String>,
    /// An https URL.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub logo_url: Nullable<String>,
    /// `#rrggbb`.
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "#0a7cff")]
    pub primary_color: Nullable<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub accent_color: Nullable<String>,
}

/// JSON merge patch: absent fields stay, `null` clears an optional field.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkspacePatchIn {
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub name: Nullable<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub slug: Nullable<String>,
    /// IANA time zone, e.g. `Europe/Brussels`.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub timezone: Nullable<String>,
    /// ISO 4217 code, e.g. `EUR`.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub currency: Nullable<String>,
    #[serde(default)]
    #[schema(value_type = Option<BrandingPatchIn>)]
    pub branding: Nullable<BrandingPatchIn>,
}

impl From<WorkspacePatchIn> for WorkspacePatch {
    fn from(p: WorkspacePatchIn) -> Self {
        WorkspacePatch {
            name: p.name.into_patch(|v| v),
            slug: p.slug.into_patch(|v| v),
            timezone: p.timezone.into_patch(|v| v),
            currency: p.currency.into_patch(|v| v),
            branding: p.branding.into_patch(|b| BrandingPatch {
                display_name: b.display_name.into_patch(|v| v),
                logo_url: b.logo_url.into_patch(|v| v),
                primary_color: b.primary_color.into_patch(|v| v),
                accent_color: b.accent_color.into_patch(|v| v),
            }),
        }
    }
}

/// Create a workspace; you become its owner.
#[utoipa::path(post, path = "/api/v1/workspaces", tag = "workspaces", security(("bearer" = [])), request_body = WorkspaceIn,
    responses(
        (status = 201, description = "Created", body = WorkspaceOut),
        (status = 409, description = "`slug_taken`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Meta(meta): Meta,
    JsonBody(input): JsonBody<WorkspaceIn>,
) -> ApiResult<(StatusCode, HeaderMap, Json<WorkspaceOut>)> {
    let ws = state
        .services
        .create_workspace(
            &principal,
            NewWorkspace {
                name: input.name,
                slug: input.slug,
            },
            &meta,
        )
        .await?;
    let mut headers = HeaderMap::new();
    if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/workspaces/{}", ws.id)) {
        headers.insert(header::LOCATION, location);
    }
    Ok((
        StatusCode::CREATED,
        headers,
        Json(WorkspaceOut::new(ws, Some(Role::Owner))),
    ))
}

/// The workspaces you are a member of, oldest first.
#[utoipa::path(get, path = "/api/v1/workspaces", tag = "workspaces", security(("bearer" = [])),
    params(
        ("limit" = Option<u32>, Query, description = "1 to 200, default 50"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "One page", body = ListOut<WorkspaceOut>),
        (status = 422, description = "`validation_failed` (names the parameter)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    Auth(principal): Auth,
    page: ListParams,
) -> ApiResult<Json<ListOut<WorkspaceOut>>> {
    let page = state
        .services
        .list_workspaces(&principal, page.after, page.limit)
        .await?;
    Ok(Json(ListOut {
        data: page
            .data
            .into_iter()
            .map(|m| WorkspaceOut::new(m.workspace, Some(m.role)))
            .collect(),
        next_cursor: page.next_cursor,
    }))
}

/// A workspace, by id or slug. Non-members get 404.
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}", tag = "workspaces", security(("bearer" = [])),
    params(("workspace" = String, Path, description = "Workspace id or slug")),
    responses(
        (status = 200, description = "The workspace", body = WorkspaceOut),
        (status = 404, description = "`workspace_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<AppState>,
    Tenant(scope): Tenant,
) -> ApiResult<Json<WorkspaceOut>> {
    let ws = state.services.get_workspace(&scope).await?;
    Ok(Json(WorkspaceOut::new(ws, scope.role())))
}

/// Change name, slug, branding, timezone or currency (needs `workspace.update`).
#[utoipa::path(patch, path = "/api/v1/workspaces/{workspace}", tag = "workspaces", security(("bearer" = [])),
    params(("workspace" = String, Path, description = "Workspace id or slug")),
    request_body(content = WorkspacePatchIn, content_type = "application/merge-patch+json"),
    responses(
        (status = 200, description = "Updated", body = WorkspaceOut),
        (status = 403, description = "`permission_denied`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`workspace_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`slug_taken`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update(
    State(state): State<AppState>,
    Tenant(scope): Tenant,
    Meta(meta): Meta,
    JsonBody(patch): JsonBody<WorkspacePatchIn>,
) -> ApiResult<Json<WorkspaceOut>> {
    let ws = state
        .services
        .update_workspace(&scope, patch.into(), &meta)
        .await?;
    Ok(Json(WorkspaceOut::new(ws, scope.role())))
}
