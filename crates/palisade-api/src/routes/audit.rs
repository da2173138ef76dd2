//! `/api/v1/workspaces/{workspace}/audit/…` (AUDIT-SPEC §8) and `/api/v1/me/security-events`:
//! the tamper-evident log, its checkpoints, proofs, keys and export.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use palisade_core::audit::service::{
    AuditExport, CheckpointView, ConsistencyProof, EVENTS_LIMIT_DEFAULT, EVENTS_LIMIT_MAX,
    EntryLine, EventView, InclusionProof, NewAppEvent,
};
use palisade_core::store::AuditFilter;
use palisade_core::workspaces::model::Page;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::extract::{Auth, JsonBody, Meta, Tenant};
use crate::problem::{ApiError, ApiResult, Problem, ProblemField};
use crate::routes::{ListOut, rfc3339};
use crate::state::AppState;

/// Query parameters by name; unknown ones are refused, each error names its parameter.
struct Params {
    values: HashMap<String, String>,
    errors: Vec<ProblemField>,
}

impl Params {
    fn parse(query: Option<String>, allowed: &[&str]) -> Self {
        let mut p = Params {
            values: HashMap::new(),
            errors: Vec::new(),
        };
        for (k, v) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            if allowed.contains(&k.as_ref()) {
                p.values.insert(k.into_owned(), v.into_owned());
            } else {
                p.fail(&k, "unknown parameter");
            }
        }
        p
    }

    fn fail(&mut self, name: &str, message: &str) {
        self.errors.push(ProblemField {
            pointer: None,
            parameter: Some(name.to_owned()),
            message: message.to_owned(),
        });
    }

    fn text(&self, name: &str) -> Option<String> {
        self.values.get(name).cloned()
    }

    fn u64(&mut self, name: &str) -> Option<u64> {
        match self.values.get(name)?.parse::<u64>() {
            Ok(n) => Some(n),
            Err(_) => {
                self.fail(name, "must be a non-negative integer");
                None
            }
        }
    }

    /// A required integer; when absent or bad the error is recorded and `finish` reports it.
    fn required_u64(&mut self, name: &str) -> u64 {
        if !self.values.contains_key(name) {
            self.fail(name, "is required");
        }
        self.u64(name).unwrap_or(0)
    }

    fn time(&mut self, name: &str) -> Option<time::OffsetDateTime> {
        let v = self.values.get(name)?;
        match time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339) {
            Ok(t) => Some(t),
            Err(_) => {
                self.fail(
                    name,
                    "must be an RFC 3339 timestamp, e.g. 2026-11-20T10:00:00Z",
                );
                None
            }
        }
    }

    fn bool(&mut self, name: &str) -> Option<bool> {
        match self.values.get(name).map(String::as_str) {
            None => None,
            Some("true") => Some(true),
            Some("false") => Some(false),
            Some(_) => {
                self.fail(name, "must be true or false");
                None
            }
        }
    }

    fn limit(&mut self) -> u32 {
        match self.values.get("limit").map(|v| v.parse::<u32>()) {
            None => EVENTS_LIMIT_DEFAULT,
            Some(Ok(n)) if (1..=EVENTS_LIMIT_MAX).contains(&n) => n,
            Some(_) => {
                self.fail("limit", "must be an integer from 1 to 200");
                EVENTS_LIMIT_DEFAULT
            }
        }
    }

    fn finish(self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::InvalidParameters(self.errors))
        }
    }
}

/// A decoded entry.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventOut {
    /// Position in the log (the Merkle leaf index).
    pub seq: u64,
    /// The entry as stored (AUDIT-SPEC §2), decoded from its exact bytes.
    #[schema(value_type = Object)]
    pub entry: Value,
    /// Personal values behind the entry's `pii` commitments, by JSON pointer (absent once erased).
    #[schema(value_type = Object)]
    pub openings: Map<String, Value>,
}

impl From<EventView> for EventOut {
    fn from(v: EventView) -> Self {
        Self {
            seq: v.seq,
            entry: v.entry,
            openings: v.openings,
        }
    }
}

fn list_out(page: Page<EventView>) -> ListOut<EventOut> {
    ListOut {
        data: page.data.into_iter().map(EventOut::from).collect(),
        next_cursor: page.next_cursor,
    }
}

/// Target of an application event.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetIn {
    #[serde(rename = "type")]
    #[schema(example = "invoice")]
    pub kind: String,
    #[schema(example = "inv_2026_0042")]
    pub id: String,
}

/// An application-defined event (AUD-9).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppEventIn {
    /// `<resource>.<verb>`, lowercase; Palisade's own resources (workspace, member, auth, …)
    /// are reserved.
    #[schema(example = "invoice.approve")]
    pub action: String,
    pub target: TargetIn,
    /// `success` (default), `denied` or `error`.
    pub result: Option<String>,
    /// Non-personal details: objects, arrays, strings, integers, booleans; no floats.
    #[schema(value_type = Option<Object>)]
    pub data: Option<Value>,
    /// Personal values by JSON pointer (e.g. `{"/customer_email": "…"}`): only salted
    /// commitments enter the log.
    #[schema(value_type = Option<Object>)]
    pub personal: Option<Map<String, Value>>,
}

/// A signed checkpoint (AUDIT-SPEC §4).
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckpointOut {
    #[schema(example = "palisade.example.com/ws/ws_06f1x9k2m3n4p5q6r7s8t9v0wx")]
    pub origin: String,
    pub tree_size: u64,
    /// Root hash, base64 (standard, padded).
    pub root: String,
    /// The C2SP tlog-checkpoint body: the JWS payload.
    pub body: String,
    /// Compact JWS, EdDSA, `typ` `tlog-checkpoint+jws`.
    pub jws: String,
    /// The same body as a C2SP signed note.
    pub note: String,
    /// `latest` or `daily`.
    pub kind: String,
    /// UTC date of a daily checkpoint (it covers everything before 00:00 of that date).
    pub date: Option<String>,
    pub signed_at: String,
}

impl From<CheckpointView> for CheckpointOut {
    fn from(c: CheckpointView) -> Self {
        Self {
            origin: c.origin,
            tree_size: c.tree_size,
            root: c.root,
            body: c.body,
            jws: c.jws,
            note: c.note,
            kind: c.kind,
            date: c.date,
            signed_at: rfc3339(c.signed_at),
        }
    }
}

/// RFC 6962 inclusion proof.
#[derive(Debug, Serialize, ToSchema)]
pub struct InclusionProofOut {
    pub leaf_index: u64,
    pub tree_size: u64,
    /// The entry's leaf hash, base64.
    pub leaf: String,
    /// Audit path, leaf side first, base64.
    pub hashes: Vec<String>,
}

impl From<InclusionProof> for InclusionProofOut {
    fn from(p: InclusionProof) -> Self {
        Self {
            leaf_index: p.leaf_index,
            tree_size: p.tree_size,
            leaf: p.leaf,
            hashes: p.hashes,
        }
    }
}

/// RFC 6962 consistency proof.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsistencyProofOut {
    pub first: u64,
    pub second: u64,
    pub hashes: Vec<String>,
}

impl From<ConsistencyProof> for ConsistencyProofOut {
    fn from(p: ConsistencyProof) -> Self {
        Self {
            first: p.first,
            second: p.second,
            hashes: p.hashes,
        }
    }
}

/// Query the workspace's audit log, newest first (needs `audit.read`).
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/audit/events", tag = "audit", security(("bearer" = [])),
    params(
        ("workspace" = String, Path, description = "Workspace id or slug"),
        ("actor" = Option<String>, Query, description = "Actor id"),
        ("action" = Option<String>, Query, description = "e.g. `workspace.update`"),
        ("target_type" = Option<String>, Query),
        ("target_id" = Option<String>, Query),
        ("since" = Option<String>, Query, description = "RFC 3339, inclusive"),
        ("until" = Option<String>, Query, description = "RFC 3339, exclusive"),
        ("gdpr" = Option<bool>, Query, description = "Only entries with (or without) personal values"),
        ("limit" = Option<u32>, Query, description = "1 to 200, default 50"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "One page", body = ListOut<EventOut>),
        (status = 403, description = "`permission_denied`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`workspace_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed` (names the parameter)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn events(
    State(state): State<AppState>,
    Tenant(scope): Tenant,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<ListOut<EventOut>>> {
    let mut p = Params::parse(
        query,
        &[
            "actor",
            "action",
            "target_type",
            "target_id",
            "since",
            "until",
            "gdpr",
            "limit",
            "cursor",
        ],
    );
    let filter = AuditFilter {
        actor: p.text("actor"),
        action: p.text("action"),
        target_type: p.text("target_type"),
        target_id: p.text("target_id"),
        since: p.time("since"),
        until: p.time("until"),
        gdpr: p.bool("gdpr"),
    };
    let limit = p.limit();
    let cursor = p.text("cursor");
    p.finish()?;
    let page = state
        .services
        .audit_events(&scope, filter, cursor.as_deref(), limit)
        .await?;
    Ok(Json(list_out(page)))
}

/// Append an application-defined event (needs `audit.write`).
#[utoipa::path(post, path = "/api/v1/workspaces/{workspace}/audit/events", tag = "audit", security(("bearer" = [])),
    params(("workspace" = String, Path, description = "Workspace id or slug")),
    request_body = AppEventIn,
    responses(
        (status = 201, description = "Appended", body = EventOut),
        (status = 403, description = "`permission_denied`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`workspace_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn record_event(
    State(state): State<AppState>,
    Tenant(scope): Tenant,
    Meta(meta): Meta,
    JsonBody(input): JsonBody<AppEventIn>,
) -> ApiResult<(StatusCode, Json<EventOut>)> {
    let event = state
        .services
        .audit_record_event(
            &scope,
            NewAppEvent {
                action: input.action,
                target_type: input.target.kind,
                target_id: input.target.id,
                result: input.result,
                data: input.data,
                personal: input.personal.unwrap_or_default(),
            },
            &meta,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(event.into())))
}

fn ndjson(lines: &[EntryLine]) -> Vec<u8> {
    let mut out = Vec::with_capacity(lines.len() * 600);
    for line in lines {
        out.extend_from_slice(line.to_json().to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

/// Entries `[start, end)` as NDJSON: exact bytes (base64url) with their openings.
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/audit/entries", tag = "audit", security(("bearer" = [])),
    params(
        ("workspace" = String, Path, description = "Workspace id or slug"),
        ("start" = Option<u64>, Query, description = "First seq, default 0"),
        ("end" = Option<u64>, Query, description = "One past the last seq, default the log's size; at most 10,000 a request"),
    ),
    responses(
        (status = 200, description = "`{seq, entry, pii: [{pointer, salt, value}], redacted: [{pointer, by}]}` a line", content_type = "application/x-ndjson", body = String),
        (status = 403, description = "`permission_denied`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`workspace_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn entries(
    State(state): State<AppState>,
    Tenant(scope): Tenant,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let mut p = Params::parse(query, &["start", "end"]);
    let start = p.u64("start").unwrap_or(0);
    let end = p.u64("end");
    p.finish()?;
    let lines = state.services.audit_entries(&scope, start, end).await?;
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        ndjson(&lines),
    )
        .into_response())
}

/// The latest signed checkpoint.
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/audit/checkpoint", tag = "audit", security(("bearer" = [])),
    params(("workspace" = String, Path, description = "Workspace id or slug")),
    responses(
        (status = 200, description = "The checkpoint", body = CheckpointOut),
        (status = 403, description = "`permission_denied`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`workspace_not_found`, or `checkpoint_not_found` before the first is signed", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn checkpoint(
    State(state): State<AppState>,
    Tenant(scope): Tenant,
) -> ApiResult<Json<CheckpointOut>> {
    Ok(Json(state.services.audit_checkpoint(&scope).await?.into()))
}

/// The daily checkpoint of a UTC date.
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/audit/checkpoints/{date}", tag = "audit", security(("bearer" = [])),
    params(
        ("workspace" = String, Path, description = "Workspace id or slug"),
        ("date" = String, Path, description = "YYYY-MM-DD"),
    ),
    responses(
        (status = 200, description = "The checkpoint", body = CheckpointOut),
        (status = 403, description = "`permission_denied`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`workspace_not_found` or `checkpoint_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn checkpoint_day(
    State(state): State<AppState>,
    Tenant(scope): Tenant,
    Path(path): Path<(String, String)>,
) -> ApiResult<Json<CheckpointOut>> {
    let date = path.1;
    Ok(Json(
        state
            .services
            .audit_checkpoint_day(&scope, &date)
            .await?
            .into(),
    ))
}

/// RFC 6962 inclusion proof of entry `seq` in the tree of `tree_size` entries.
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/audit/proof/inclusion", tag = "audit", security(("bearer" = [])),
    params(
        ("workspace" = String, Path, description = "Workspace id or slug"),
        ("seq" = u64, Query),
        ("tree_size" = u64, Query, description = "Usually a signed checkpoint's size"),
    ),
    responses(
        (status = 200, description = "The proof", body = InclusionProofOut),
        (status = 403, description = "`permission_denied`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`workspace_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed` (names the parameter)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn inclusion(
    State(state): State<AppState>,
    Tenant(scope): Tenant,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<InclusionProofOut>> {
    let mut p = Params::parse(query, &["seq", "tree_size"]);
    let seq = p.required_u64("seq");
    let size = p.required_u64("tree_size");
    p.finish()?;
    Ok(Json(
        state
            .services
            .audit_inclusion_proof(&scope, seq, size)
            .await?
            .into(),
    ))
}

/// RFC 6962 consistency proof between the trees of `first` and `second` entries.
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/audit/proof/consistency", tag = "audit", security(("bearer" = [])),
    params(
        ("workspace" = String, Path, description = "Workspace id or slug"),
        ("first" = u64, Query),
        ("second" = u64, Query),
    ),
    responses(
        (status = 200, description = "The proof", body = ConsistencyProofOut),
        (status = 403, description = "`permission_denied`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`workspace_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed` (names the parameter)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn consistency(
    State(state): State<AppState>,
    Tenant(scope): Tenant,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<ConsistencyProofOut>> {
    let mut p = Params::parse(query, &["first", "second"]);
    let first = p.required_u64("first");
    let second = p.required_u64("second");
    p.finish()?;
    Ok(Json(
        state
            .services
            .audit_consistency_proof(&scope, first, second)
            .await?
            .into(),
    ))
}

/// The workspace's audit keys (JWKS) plus `audit_log: {origin, daily, min_index}`.
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/audit/jwks.json", tag = "audit", security(("bearer" = [])),
    params(("workspace" = String, Path, description = "Workspace id or slug")),
    responses(
        (status = 200, description = "The JWKS", body = Object),
        (status = 403, description = "`permission_denied`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`workspace_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn audit_jwks(
    State(state): State<AppState>,
    Tenant(scope): Tenant,
) -> ApiResult<Json<palisade_audit::verify::Jwks>> {
    Ok(Json(state.services.audit_jwks(&scope).await?))
}

fn append(
    tar: &mut tar::Builder<Vec<u8>>,
    path: &str,
    data: &[u8],
    mtime: u64,
) -> std::io::Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(mtime);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, path, data)
}

/// The export tar: `entries.ndjson`, `checkpoint.json`, `checkpoints/<date>.json`, `jwks.json`,
/// `prune.json` — what `palisade audit verify --export` and any offline verifier need.
pub fn export_tar(export: &AuditExport, now: time::OffsetDateTime) -> std::io::Result<Vec<u8>> {
    let mtime = u64::try_from(now.unix_timestamp()).unwrap_or(0);
    let mut tar = tar::Builder::new(Vec::new());
    append(&mut tar, "entries.ndjson", &ndjson(&export.entries), mtime)?;
    if let Some(c) = &export.checkpoint {
        append(
            &mut tar,
            "checkpoint.json",
            &json(&CheckpointOut::from(c.clone()))?,
            mtime,
        )?;
    }
    for c in &export.daily {
        let name = format!(
            "checkpoints/{}.json",
            c.date.as_deref().unwrap_or("unknown")
        );
        append(
            &mut tar,
            &name,
            &json(&CheckpointOut::from(c.clone()))?,
            mtime,
        )?;
    }
    append(&mut tar, "jwks.json", &json(&export.jwks)?, mtime)?;
    append(
        &mut tar,
        "prune.json",
        br#"{"min_index":0,"compact_range":[]}"#,
        mtime,
    )?;
    tar.into_inner()
}

fn json<T: Serialize>(value: &T) -> std::io::Result<Vec<u8>> {
    serde_json::to_vec_pretty(value).map_err(std::io::Error::other)
}

/// Everything needed to verify the log offline, as a tar.
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/audit/export", tag = "audit", security(("bearer" = [])),
    params(("workspace" = String, Path, description = "Workspace id or slug")),
    responses(
        (status = 200, description = "entries.ndjson, checkpoint.json, checkpoints/*.json, jwks.json, prune.json", content_type = "application/x-tar", body = Vec<u8>),
        (status = 403, description = "`permission_denied`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`workspace_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn export(State(state): State<AppState>, Tenant(scope): Tenant) -> ApiResult<Response> {
    let export = state.services.audit_export(&scope).await?;
    let tar = export_tar(&export, state.services.now())
        .map_err(|e| ApiError::Domain(palisade_core::Error::internal(e)))?;
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-tar"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"audit-{}.tar\"",
        export.log_id
    )) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok((headers, tar).into_response())
}

/// Your own account's security events (sign-ins, failures, refresh-token reuse, sign-outs),
/// newest first, from the instance audit log.
#[utoipa::path(get, path = "/api/v1/me/security-events", tag = "auth", security(("bearer" = [])),
    params(
        ("limit" = Option<u32>, Query, description = "1 to 200, default 50"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "One page", body = ListOut<EventOut>),
        (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed` (names the parameter)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn security_events(
    State(state): State<AppState>,
    Auth(principal): Auth,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<ListOut<EventOut>>> {
    let mut p = Params::parse(query, &["limit", "cursor"]);
    let limit = p.limit();
    let cursor = p.text("cursor");
    p.finish()?;
    let page = state
        .services
        .security_events(&principal, cursor.as_deref(), limit)
        .await?;
    Ok(Json(list_out(page)))
}
