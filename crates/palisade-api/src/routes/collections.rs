//! Collections (DAT-1): a workspace's typed schemas.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use palisade_core::collections::model::RecordStatus;
use palisade_core::collections::model::{
    CollectionPatch, FieldChange, FieldInput, FieldOptionsInput, NewCollection,
};
use palisade_core::collections::records::{NewRecord, RecordView};
use palisade_core::collections::service::CollectionView;
use palisade_core::ids::CollectionId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::extract::{JsonBody, ListParams, Meta, RecordListParams, Tenant};
use crate::problem::{ApiResult, Problem};
use crate::routes::{ListOut, rfc3339};
use crate::state::AppState;

/// Type-specific settings.
#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldOptionsIo {
    /// `enum`: the allowed values (1 to 500, each 1 to 200 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = json!(["open", "done"]))]
    pub values: Option<Vec<String>>,
    /// `relation`: the name of the collection its values point to (this one included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "customers")]
    pub collection: Option<String>,
}

impl From<FieldOptionsIo> for FieldOptionsInput {
    fn from(o: FieldOptionsIo) -> Self {
        Self {
            values: o.values,
            collection: o.collection,
        }
    }
}

/// A field: `^[a-z][a-z0-9_]{0,62}$`, not one of a record's own attributes (`id`, `status`,
/// `version`, `created_at` …).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldIn {
    #[schema(example = "amount")]
    pub name: String,
    /// `text`, `integer`, `decimal` (a string on the wire, exact), `boolean`, `date`,
    /// `datetime`, `enum`, `json`, `relation`, `tags`, `file` (reserved for attachments).
    #[serde(rename = "type")]
    #[schema(example = "decimal")]
    pub kind: String,
    #[serde(default)]
    pub required: bool,
    /// Unique per workspace (text, integer, decimal, date, datetime, enum; not encrypted).
    #[serde(default)]
    pub unique: bool,
    /// Personal data: values enter audit entries only as commitments.
    #[serde(default)]
    pub pii: bool,
    /// Stored encrypted under the workspace's data key; cannot be filtered or unique.
    #[serde(default)]
    pub encrypted: bool,
    #[serde(default)]
    pub options: FieldOptionsIo,
}

impl From<FieldIn> for FieldInput {
    fn from(f: FieldIn) -> Self {
        Self {
            name: f.name,
            kind: f.kind,
            required: f.required,
            unique: f.unique,
            pii: f.pii,
            encrypted: f.encrypted,
            options: f.options.into(),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CollectionIn {
    /// `^[a-z][a-z0-9_]{0,62}$`, unique in the workspace; it cannot change later.
    #[schema(example = "invoices")]
    pub name: String,
    #[serde(default)]
    pub fields: Vec<FieldIn>,
}

/// A change to an existing field: a rename (alone), or flags and options (its type and
/// `encrypted` stay).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldChangeIn {
    #[schema(example = "amount")]
    pub name: String,
    /// A new name, in an entry with no other change. Every record's value moves to it. Refused
    /// while a custom role or API key grant names the old or new name.
    pub rename_to: Option<String>,
    pub required: Option<bool>,
    pub unique: Option<bool>,
    pub pii: Option<bool>,
    pub options: Option<FieldOptionsIo>,
}

/// Changes applied all or nothing: `update_fields`, then `remove_fields`, then `add_fields`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CollectionPatchIn {
    /// A new name for the collection; refused while a custom role, team or API key grant names
    /// the old or new name.
    pub name: Option<String>,
    #[serde(default)]
    pub add_fields: Vec<FieldIn>,
    #[serde(default)]
    pub update_fields: Vec<FieldChangeIn>,
    #[serde(default)]
    pub remove_fields: Vec<String>,
}

impl From<CollectionPatchIn> for CollectionPatch {
    fn from(p: CollectionPatchIn) -> Self {
        Self {
            name: p.name,
            add_fields: p.add_fields.into_iter().map(FieldInput::from).collect(),
            update_fields: p
                .update_fields
                .into_iter()
                .map(|c| FieldChange {
                    name: c.name,
                    rename_to: c.rename_to,
                    required: c.required,
                    unique: c.unique,
                    pii: c.pii,
                    options: c.options.map(FieldOptionsInput::from),
                })
                .collect(),
            remove_fields: p.remove_fields,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FieldOut {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub required: bool,
    pub unique: bool,
    pub pii: bool,
    pub encrypted: bool,
    pub options: FieldOptionsIo,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CollectionOut {
    #[schema(example = "col_06f1x9k2m3n4p5q6r7s8t9v0wx")]
    pub id: String,
    pub name: String,
    /// The fields you may read (all of them with `collections.manage`).
    pub fields: Vec<FieldOut>,
    /// Grows by one with every schema change.
    pub version: i64,
    pub created_at: String,
    pub updated_at: String,
}

impl From<CollectionView> for CollectionOut {
    fn from(v: CollectionView) -> Self {
        let c = v.collection;
        let names = v.relation_names;
        Self {
            id: c.id.to_string(),
            name: c.name,
            fields: c
                .fields
                .into_iter()
                .map(|f| FieldOut {
                    name: f.name,
                    kind: f.kind.as_str(),
                    required: f.required,
                    unique: f.unique,
                    pii: f.pii,
                    encrypted: f.encrypted,
                    options: FieldOptionsIo {
                        values: f.options.values,
                        collection: f
                            .options
                            .collection
                            .map(|id| names.get(&id).cloned().unwrap_or_else(|| id.to_string())),
                    },
                })
                .collect(),
            version: c.version,
            created_at: rfc3339(c.created_at),
            updated_at: rfc3339(c.updated_at),
        }
    }
}

/// Define a collection (needs `collections.manage`).
#[utoipa::path(post, path = "/api/v1/workspaces/{workspace}/collections", tag = "collections", security(("bearer" = [])),
    params(("workspace" = String, Path, description = "Workspace id or slug")),
    request_body = CollectionIn,
    responses(
        (status = 201, description = "Created", body = CollectionOut),
        (status = 403, description = "`permission_denied`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`workspace_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`name_taken`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: each bad field named by its pointer", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_collection(
    State(state): State<AppState>,
    Tenant(scope): Tenant,
    Meta(meta): Meta,
    JsonBody(input): JsonBody<CollectionIn>,
) -> ApiResult<(StatusCode, Json<CollectionOut>)> {
    let input = NewCollection {
        name: input.name,
        fields: input.fields.into_iter().map(FieldInput::from).collect(),
    };
    let view = state
        .services
        .create_collection(&scope, input, &meta)
        .await?;
    Ok((StatusCode::CREATED, Json(view.into())))
}

/// The workspace's collections (needs `records.read` or `collections.manage`).
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/collections", tag = "collections", security(("bearer" = [])),
    params(
        ("workspace" = String, Path, description = "Workspace id or slug"),
        ("limit" = Option<u32>, Query, description = "1 to 200, default 50"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "One page", body = ListOut<CollectionOut>),
        (status = 403, description = "`permission_denied`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`workspace_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_collections(
    State(state): State<AppState>,
    Tenant(scope): Tenant,
    page: ListParams<CollectionId>,
) -> ApiResult<Json<ListOut<CollectionOut>>> {
    let page = state
        .services
        .list_collections(&scope, page.after, page.limit)
        .await?;
    Ok(Json(ListOut {
        data: page.data.into_iter().map(CollectionOut::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// One collection (needs `records.read` or `collections.manage`).
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/collections/{collection}", tag = "collections", security(("bearer" = [])),
    params(("workspace" = String, Path, description = "Workspace id or slug"), ("collection" = String, Path, description = "Collection name")),
    responses(
        (status = 200, description = "The collection", body = CollectionOut),
        (status = 403, description = "`permission_denied`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`workspace_not_found`, `collection_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_collection(
    State(state): State<AppState>,
    Tenant(scope): Tenant,
    Path(path): Path<(String, String)>,
) -> ApiResult<Json<CollectionOut>> {
    let (_, name) = path;
    Ok(Json(
        state.services.get_collection(&scope, &name).await?.into(),
    ))
}

/// Add fields, change flags and options, remove fields, rename the collection or fields (needs
/// `collections.manage`); all or nothing.
#[utoipa::path(patch, path = "/api/v1/workspaces/{workspace}/collections/{collection}", tag = "collections", security(("bearer" = [])),
    params(("workspace" = String, Path, description = "Workspace id or slug"), ("collection" = String, Path, description = "Collection name")),
    request_body(content = CollectionPatchIn, content_type = "application/merge-patch+json"),
    responses(
        (status = 200, description = "Changed", body = CollectionOut),
        (status = 403, description = "`permission_denied`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`workspace_not_found`, `collection_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`name_taken`: another collection took the new name meanwhile", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: each bad entry named by pointer; a rename while a grant names the old or new name", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update_collection(
    State(state): State<AppState>,
    Tenant(scope): Tenant,
    Meta(meta): Meta,
    Path(path): Path<(String, String)>,
    JsonBody(input): JsonBody<CollectionPatchIn>,
) -> ApiResult<Json<CollectionOut>> {
    let (_, name) = path;
    let view = state
        .services
        .update_collection(&scope, &name, input.into(), &meta)
        .await?;
    Ok(Json(view.into()))
}

/// Delete a collection; refused while another collection's relation points to it.
#[utoipa::path(delete, path = "/api/v1/workspaces/{workspace}/collections/{collection}", tag = "collections", security(("bearer" = [])),
    params(("workspace" = String, Path, description = "Workspace id or slug"), ("collection" = String, Path, description = "Collection name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "`permission_denied`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`workspace_not_found`, `collection_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`collection_in_use`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete_collection(
    State(state): State<AppState>,
    Tenant(scope): Tenant,
    Meta(meta): Meta,
    Path(path): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (_, name) = path;
    state
        .services
        .delete_collection(&scope, &name, &meta)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------------------------
// Records (DAT-2 … DAT-5).

/// A record: its own attributes, then the fields you may read (unreadable ones are left out).
/// `decimal` values are strings, `datetime` values are UTC.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordOut {
    #[schema(example = "rec_06f1x9k2m3n4p5q6r7s8t9v0wx")]
    pub id: String,
    pub collection: String,
    /// `draft` or `published`.
    pub status: &'static str,
    /// Also the `ETag`; send it back as `If-Match` to change the record safely.
    pub version: i64,
    pub created_at: String,
    pub updated_at: String,
    pub published_at: Option<String>,
    /// Actor ids: a user or an API key.
    pub created_by: String,
    pub updated_by: String,
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub fields: serde_json::Map<String, serde_json::Value>,
}

impl From<RecordView> for RecordOut {
    fn from(v: RecordView) -> Self {
        let r = v.record;
        Self {
            id: r.id.to_string(),
            collection: v.collection,
            status: r.status.as_str(),
            version: r.version,
            created_at: rfc3339(r.created_at),
            updated_at: rfc3339(r.updated_at),
            published_at: r.published_at.map(rfc3339),
            created_by: r.created_by,
            updated_by: r.updated_by,
            fields: r.data,
        }
    }
}

/// The record with its version as a strong `ETag`.
fn with_etag(view: RecordView) -> ([(header::HeaderName, HeaderValue); 1], Json<RecordOut>) {
    let etag = HeaderValue::from_str(&format!("\"{}\"", view.record.version))
        .unwrap_or(HeaderValue::from_static("\"0\""));
    ([(header::ETAG, etag)], Json(view.into()))
}

/// `If-Match`: a version (`"3"`, `W/"3"`), or `*` / absent for any. Anything else can match no
/// version, so it fails the precondition.
fn if_match(headers: &HeaderMap) -> Result<Option<i64>, palisade_core::Error> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or("").trim();
    if text == "*" {
        return Ok(None);
    }
    text.trim_start_matches("W/")
        .trim_matches('"')
        .parse::<i64>()
        .map(Some)
        .map_err(|_| palisade_core::Error::PreconditionFailed)
}

type RecordPath = Path<(String, String, String)>;

/// Create a record (needs `records.write` and write access to every field sent). The body is
/// the record's fields, plus `status` (`draft` or `published`, the default).
#[utoipa::path(post, path = "/api/v1/workspaces/{workspace}/collections/{collection}/records", tag = "records", security(("bearer" = [])),
    params(("workspace" = String, Path, description = "Workspace id or slug"), ("collection" = String, Path, description = "Collection name")),
    request_body(content = Object, description = "Field values, and optionally `status`"),
    responses(
        (status = 201, description = "Created", body = RecordOut, headers(("ETag" = String, description = "The version"))),
        (status = 403, description = "`permission_denied`, `field_not_writable` (each field named in `errors`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`workspace_not_found`, `collection_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: each bad field named by its pointer", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_record(
    State(state): State<AppState>,
    Tenant(scope): Tenant,
    Meta(meta): Meta,
    Path(path): Path<(String, String)>,
    JsonBody(mut body): JsonBody<serde_json::Map<String, serde_json::Value>>,
) -> ApiResult<(StatusCode, impl IntoResponse)> {
    let (_, collection) = path;
    let status = match body.remove("status") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s),
        Some(_) => {
            return Err(
                palisade_core::Error::field("/status", "must be draft or published").into(),
            );
        }
    };
    let input = NewRecord { status, data: body };
    let view = state
        .services
        .create_record(&scope, &collection, input, &meta)
        .await?;
    Ok((StatusCode::CREATED, with_etag(view)))
}

/// A collection's records: filtered, sorted, projected, one page at a time (drafts only with
/// `records.read_draft`; fields the caller may not read are never shown, filtered, sorted or
/// selected).
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/collections/{collection}/records", tag = "records", security(("bearer" = [])),
    params(
        ("workspace" = String, Path, description = "Workspace id or slug"),
        ("collection" = String, Path, description = "Collection name"),
        ("limit" = Option<u32>, Query, description = "1 to 200, default 50"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page (with the same `sort`)"),
        ("sort" = Option<String>, Query, description = "Up to 3 keys, `-` for descending: `sort=-priority,due`. Sortable: text, integer, decimal, boolean, date, datetime, enum and relation fields, and `id`, `status`, `created_at`, `updated_at`, `published_at`, `created_by`, `updated_by`. Missing values sort last (first when descending); ties by `id`; text by code point, decimals as numbers, datetimes as instants. Default: `id`."),
        ("fields" = Option<String>, Query, description = "Only these record fields (comma-separated); the record's meta (id, status, version, times, actors) is always returned"),
        ("filter[field][op]" = Option<String>, Query, description = "Repeatable, ANDed; `filter[field]=v` means `eq`. Ops: `eq ne lt lte gt gte in contains`; `in` takes comma-separated values (at most 100). text: all; integer, decimal, date, datetime: eq ne lt lte gt gte in; boolean: eq ne; enum, relation: eq ne in; tags: contains (holds the tag); `id`, `status`, `created_by`, `updated_by`: eq ne in; `created_at`, `updated_at`, `published_at`: eq ne lt lte gt gte. `ne` also matches a missing value. Values are checked like field values (datetimes normalised to UTC). json, file and encrypted fields cannot be filtered or sorted."),
    ),
    responses(
        (status = 200, description = "One page", body = ListOut<RecordOut>),
        (status = 403, description = "`permission_denied`; `field_not_readable`: a filter, sort or `fields` names a field you may not read (each parameter named in `errors`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`workspace_not_found`, `collection_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: each bad parameter named in `errors[].parameter` (unknown field or operator, a value of the wrong type, an encrypted field, a cursor of another sort)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_records(
    State(state): State<AppState>,
    Tenant(scope): Tenant,
    Path(path): Path<(String, String)>,
    RecordListParams(request): RecordListParams,
) -> ApiResult<Json<ListOut<RecordOut>>> {
    let (_, collection) = path;
    let page = state
        .services
        .list_records(&scope, &collection, &request)
        .await?;
    Ok(Json(ListOut {
        data: page.data.into_iter().map(RecordOut::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// One record (a draft only with `records.read_draft`, else 404).
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/collections/{collection}/records/{record}", tag = "records", security(("bearer" = [])),
    params(("workspace" = String, Path, description = "Workspace id or slug"), ("collection" = String, Path, description = "Collection name"), ("record" = String, Path, description = "Record id")),
    responses(
        (status = 200, description = "The record", body = RecordOut, headers(("ETag" = String, description = "The version"))),
        (status = 403, description = "`permission_denied`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`workspace_not_found`, `collection_not_found`, `record_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_record(
    State(state): State<AppState>,
    Tenant(scope): Tenant,
    Path(path): RecordPath,
) -> ApiResult<impl IntoResponse> {
    let (_, collection, id) = path;
    let view = state.services.get_record(&scope, &collection, &id).await?;
    Ok(with_etag(view))
}

/// Change a record with a JSON merge patch (`null` removes a value). With `If-Match`, only
/// if the record is still at that version (else 412, nothing written).
#[utoipa::path(patch, path = "/api/v1/workspaces/{workspace}/collections/{collection}/records/{record}", tag = "records", security(("bearer" = [])),
    params(("workspace" = String, Path, description = "Workspace id or slug"), ("collection" = String, Path, description = "Collection name"), ("record" = String, Path, description = "Record id"),
        ("If-Match" = Option<String>, Header, description = "The version (ETag) you read")),
    request_body(content = Object, content_type = "application/merge-patch+json"),
    responses(
        (status = 200, description = "Changed", body = RecordOut, headers(("ETag" = String, description = "The new version"))),
        (status = 403, description = "`permission_denied`, `field_not_writable`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`workspace_not_found`, `collection_not_found`, `record_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`precondition_failed`: the record changed since that version", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update_record(
    State(state): State<AppState>,
    Tenant(scope): Tenant,
    Meta(meta): Meta,
    headers: HeaderMap,
    Path(path): RecordPath,
    JsonBody(patch): JsonBody<serde_json::Map<String, serde_json::Value>>,
) -> ApiResult<impl IntoResponse> {
    let (_, collection, id) = path;
    let version = if_match(&headers)?;
    let view = state
        .services
        .update_record(&scope, &collection, &id, patch, version, &meta)
        .await?;
    Ok(with_etag(view))
}

/// Delete a record (with `If-Match`, only at that version).
#[utoipa::path(delete, path = "/api/v1/workspaces/{workspace}/collections/{collection}/records/{record}", tag = "records", security(("bearer" = [])),
    params(("workspace" = String, Path, description = "Workspace id or slug"), ("collection" = String, Path, description = "Collection name"), ("record" = String, Path, description = "Record id"),
        ("If-Match" = Option<String>, Header, description = "The version (ETag) you read")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "`permission_denied`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`workspace_not_found`, `collection_not_found`, `record_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`precondition_failed`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete_record(
    State(state): State<AppState>,
    Tenant(scope): Tenant,
    Meta(meta): Meta,
    headers: HeaderMap,
    Path(path): RecordPath,
) -> ApiResult<StatusCode> {
    let (_, collection, id) = path;
    let version = if_match(&headers)?;
    state
        .services
        .delete_record(&scope, &collection, &id, version, &meta)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Publish a draft (DAT-3).
#[utoipa::path(post, path = "/api/v1/workspaces/{workspace}/collections/{collection}/records/{record}/publish", tag = "records", security(("bearer" = [])),
    params(("workspace" = String, Path, description = "Workspace id or slug"), ("collection" = String, Path, description = "Collection name"), ("record" = String, Path, description = "Record id")),
    responses(
        (status = 200, description = "Published", body = RecordOut),
        (status = 403, description = "`permission_denied`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`record_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn publish_record(
    State(state): State<AppState>,
    Tenant(scope): Tenant,
    Meta(meta): Meta,
    Path(path): RecordPath,
) -> ApiResult<impl IntoResponse> {
    let (_, collection, id) = path;
    let view = state
        .services
        .set_record_status(&scope, &collection, &id, RecordStatus::Published, &meta)
        .await?;
    Ok(with_etag(view))
}

/// Make a record a draft again (DAT-3).
#[utoipa::path(post, path = "/api/v1/workspaces/{workspace}/collections/{collection}/records/{record}/unpublish", tag = "records", security(("bearer" = [])),
    params(("workspace" = String, Path, description = "Workspace id or slug"), ("collection" = String, Path, description = "Collection name"), ("record" = String, Path, description = "Record id")),
    responses(
        (status = 200, description = "A draft", body = RecordOut),
        (status = 403, description = "`permission_denied`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`record_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn unpublish_record(
    State(state): State<AppState>,
    Tenant(scope): Tenant,
    Meta(meta): Meta,
    Path(path): RecordPath,
) -> ApiResult<impl IntoResponse> {
    let (_, collection, id) = path;
    let view = state
        .services
        .set_record_status(&scope, &collection, &id, RecordStatus::Draft, &meta)
        .await?;
    Ok(with_etag(view))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TagsIn {
    /// The tags field; optional when the collection has exactly one.
    pub field: Option<String>,
    #[serde(default)]
    pub add: Vec<String>,
    #[serde(default)]
    pub remove: Vec<String>,
}

/// Add and remove tags (DAT-5): each tag added or removed is its own audit entry.
#[utoipa::path(post, path = "/api/v1/workspaces/{workspace}/collections/{collection}/records/{record}/tags", tag = "records", security(("bearer" = [])),
    params(("workspace" = String, Path, description = "Workspace id or slug"), ("collection" = String, Path, description = "Collection name"), ("record" = String, Path, description = "Record id")),
    request_body = TagsIn,
    responses(
        (status = 200, description = "Changed", body = RecordOut),
        (status = 403, description = "`permission_denied`, `field_not_writable`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`record_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn change_tags(
    State(state): State<AppState>,
    Tenant(scope): Tenant,
    Meta(meta): Meta,
    Path(path): RecordPath,
    JsonBody(input): JsonBody<TagsIn>,
) -> ApiResult<impl IntoResponse> {
    let (_, collection, id) = path;
    let view = state
        .services
        .change_tags(
            &scope,
            &collection,
            &id,
            input.field.as_deref(),
            input.add,
            input.remove,
            &meta,
        )
        .await?;
    Ok(with_etag(view))
}
