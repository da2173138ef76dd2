//! Records (DAT-2 … DAT-5): create, read, change (JSON merge patch with optimistic
//! concurrency), delete, publish and list, with drafts, field-level permissions, unique values,
//! encrypted values, and one audit entry per change plus one per tag and relation change.

use std::collections::BTreeSet;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};
use tracing::instrument;
use zeroize::Zeroizing;

use super::model::{Collection, Field, FieldType, Record, RecordStatus};
use super::query::{self, ListRequest};
use super::values::normalize;
use crate::acl::{Permission, authorize_collection};
use crate::app::Services;
use crate::audit::{Actor, AuditEvent, Target};
use crate::crypto::envelope::EnvelopeError;
use crate::error::{Error, FieldError, Resource, Result};
use crate::ids::RecordId;
use crate::keys::{OwnerKeys, SecretSite};
use crate::principal::RequestMeta;
use crate::store::{Access, TenantTx};
use crate::tenancy::TenantScope;
use crate::webhooks::outbox::Change;
use crate::workspaces::model::Page;
use crate::workspaces::service::{LIST_LIMIT_MAX, ws_event};

/// A record as its caller may see it: unreadable fields left out, encrypted ones opened.
#[derive(Debug, Clone)]
pub struct RecordView {
    pub record: Record,
    pub collection: String,
}

/// A new record's fields and status (`published` unless said otherwise).
#[derive(Debug, Clone, Default)]
pub struct NewRecord {
    pub status: Option<String>,
    pub data: Map<String, Value>,
}

/// An entry of the workspace's log about record `id` of `schema` (its collection named).
fn record_event(
    scope: &TenantScope,
    action: &'static str,
    schema: &Collection,
    id: &RecordId,
) -> AuditEvent {
    let target = Target {
        kind: "record".into(),
        id: id.to_string(),
    };
    let mut event = ws_event(scope, action, target);
    event
        .extra
        .insert("collection".into(), json!(schema.name.clone()));
    event
}

/// A record event for webhooks (WHK-2): the record's attributes and all its field values in
/// clear (the outbox seals them; each endpoint sees only the fields it may read).
fn record_change(
    event_type: &'static str,
    schema: &Collection,
    record: &Record,
    values: &Map<String, Value>,
) -> Change {
    let ts = crate::audit::format_ts;
    let mut data = json!({
        "id": record.id,
        "collection": schema.name,
        "status": record.status.as_str(),
        "version": record.version,
        "created_at": ts(record.created_at),
        "updated_at": ts(record.updated_at),
        "published_at": record.published_at.map(ts),
        "created_by": record.created_by,
        "updated_by": record.updated_by,
    });
    if let Some(map) = data.as_object_mut() {
        map.extend(values.clone());
    }
    Change::new(event_type, data)
        .about(&schema.name)
        .draft(record.status == RecordStatus::Draft)
}

/// An encrypted field's stored form: its ciphertext, URL-safe base64 in a JSON string.
pub(crate) fn sealed_bytes(stored: &Value) -> Result<Vec<u8>> {
    stored
        .as_str()
        .and_then(|s| URL_SAFE_NO_PAD.decode(s).ok())
        .ok_or_else(|| Error::internal(EnvelopeError::Malformed))
}

fn pointer(field: &str) -> String {
    format!("/{field}")
}

/// The key a unique value is claimed under: its stored form, with a decimal's trailing zeros
/// dropped so `1.50` and `1.5` are one value.
pub(super) fn unique_key(field: &Field, value: &Value) -> String {
    match (field.kind, value) {
        (FieldType::Decimal, Value::String(s)) if s.contains('.') => {
            s.trim_end_matches('0').trim_end_matches('.').to_owned()
        }
        (_, Value::String(s)) => s.clone(),
        (_, other) => other.to_string(),
    }
}

impl Services {
    fn field_site<'a>(record: &'a Record, field: &'a str) -> SecretSite<'a> {
        SecretSite {
            table: "records",
            row: record.id.as_str(),
            field,
        }
    }

    pub(super) fn seal_value(
        keys: &OwnerKeys,
        record: &Record,
        field: &str,
        value: &Value,
    ) -> Result<Value> {
        let plaintext = Zeroizing::new(serde_json::to_vec(value).map_err(Error::internal)?);
        let sealed = keys.seal(Self::field_site(record, field), &plaintext)?;
        Ok(Value::String(URL_SAFE_NO_PAD.encode(sealed)))
    }

    pub(super) fn open_value(
        keys: &OwnerKeys,
        record: &Record,
        field: &str,
        stored: &Value,
    ) -> Result<Value> {
        let sealed = sealed_bytes(stored)?;
        let plaintext = keys
            .open(Self::field_site(record, field), &sealed)
            .map_err(Error::internal)?;
        serde_json::from_slice(&plaintext).map_err(Error::internal)
    }

    /// A list cursor's site: it opens only for the same workspace (the owner) and collection.
    fn cursor_site(schema: &Collection) -> SecretSite<'_> {
        SecretSite {
            table: "record_cursors",
            row: schema.id.as_str(),
            field: "",
        }
    }

    /// A list position sealed into an opaque cursor: sort values may be personal, and cursors
    /// travel in URLs (and so in proxies' logs).
    fn seal_cursor(keys: &OwnerKeys, schema: &Collection, position: &[u8]) -> Result<String> {
        let sealed = keys.seal(Self::cursor_site(schema), position)?;
        Ok(URL_SAFE_NO_PAD.encode(sealed))
    }

    /// The position in a cursor this node (or one sharing its data keys) sealed for `schema`.
    fn open_cursor(keys: &OwnerKeys, schema: &Collection, cursor: &str) -> Option<Vec<u8>> {
        let sealed = URL_SAFE_NO_PAD.decode(cursor).ok()?;
        keys.open(Self::cursor_site(schema), &sealed)
            .ok()
            .map(|p| p.to_vec())
    }

    /// What `scope` may see of `record`: readable fields only, encrypted ones opened.
    fn record_view(
        &self,
        keys: &OwnerKeys,
        scope: &TenantScope,
        collection: &Collection,
        mut record: Record,
    ) -> Result<RecordView> {
        let mut stored = std::mem::take(&mut record.data);
        let mut data = Map::new();
        for field in &collection.fields {
            if !readable(scope, &collection.name, &field.name) {
                continue;
            }
            let Some(value) = stored.remove(&field.name) else {
                continue;
            };
            let value = if field.encrypted {
                Self::open_value(keys, &record, &field.name, &value)?
            } else {
                value
            };
            data.insert(field.name.clone(), value);
        }
        record.data = data;
        Ok(RecordView {
            record,
            collection: collection.name.clone(),
        })
    }

    async fn collection_named(tx: &mut Box<dyn TenantTx>, name: &str) -> Result<Collection> {
        tx.collection_by_name(name)
            .await?
            .ok_or(Error::NotFound(Resource::Collection))
    }

    /// The collection for a record write: its row share-locked until commit, so no schema
    /// change interleaves with the write (the change takes it exclusively).
    async fn collection_for_write(tx: &mut Box<dyn TenantTx>, name: &str) -> Result<Collection> {
        tx.collection_lock(name, false)
            .await?
            .ok_or(Error::NotFound(Resource::Collection))
    }

    /// Creates a record (needs `records.write` on the collection and write access to every
    /// field sent).
    #[instrument(skip_all, fields(workspace = %scope.workspace_id()))]
    pub async fn create_record(
        &self,
        scope: &TenantScope,
        collection: &str,
        input: NewRecord,
        meta: &RequestMeta,
    ) -> Result<RecordView> {
        authorize_collection(scope, collection, Permission::RecordsWrite)?;
        let keys = self.owner_keys(scope.workspace_id().as_str()).await?;
        let now = self.now();
        let status = match input.status.as_deref() {
            None => RecordStatus::Published,
            Some(s) => RecordStatus::parse(s)
                .ok_or_else(|| Error::field("/status", "must be draft or published"))?,
        };
        let mut tx = self.store.tenant(scope, Access::Write).await?;
        let schema = Self::collection_for_write(&mut tx, collection).await?;
        check_writable(scope, &schema, input.data.keys())?;
        let actor = Actor::of(scope.principal()).id;
        let mut record = Record {
            id: RecordId::generate(),
            workspace_id: scope.workspace_id().clone(),
            collection_id: schema.id.clone(),
            status,
            data: Map::new(),
            version: 1,
            created_at: now,
            updated_at: now,
            published_at: (status == RecordStatus::Published).then_some(now),
            created_by: actor.clone(),
            updated_by: actor,
        };
        let values = validate(&schema, &Map::new(), &input.data, true)?;
        self.check_relations(&mut tx, &schema, &values).await?;
        self.claim_uniques(&mut tx, &schema, &record, &Map::new(), &values)
            .await?;
        record.data = self.stored_data(&keys, &record, &schema, &values)?;
        tx.record_insert(&record).await?;
        let mut events = Vec::new();
        let mut event = record_event(scope, "record.create", &schema, &record.id);
        event.diff_field("/status", Value::Null, json!(status.as_str()));
        let event = audit_values(event, &schema, &Map::new(), &values);
        events.push(event);
        events.extend(link_events(
            scope,
            &schema,
            &record.id,
            &Map::new(),
            &values,
        ));
        append_events(&mut tx, events, meta, now).await?;
        let change = record_change("record.created", &schema, &record, &values);
        self.emit(&mut *tx, &keys, scope.workspace_id(), change, now)
            .await?;
        tx.commit().await?;
        Ok(written_view(scope, &schema, record, values))
    }

    /// One record; a draft only with `records.read_draft` (else 404, as if absent).
    pub async fn get_record(
        &self,
        scope: &TenantScope,
        collection: &str,
        id: &str,
    ) -> Result<RecordView> {
        authorize_collection(scope, collection, Permission::RecordsRead)?;
        let keys = self.owner_keys(scope.workspace_id().as_str()).await?;
        let mut tx = self.store.tenant(scope, Access::Read).await?;
        // One statement for both (a missing collection is still told apart).
        let (schema, record) = match RecordId::parse(id) {
            Some(id) => tx
                .record_in_collection(collection, &id)
                .await?
                .ok_or(Error::NotFound(Resource::Collection))?,
            None => (Self::collection_named(&mut tx, collection).await?, None),
        };
        let record = visible(scope, &schema, record)?;
        self.record_view(&keys, scope, &schema, record)
    }

    /// One page of a collection's records, filtered, sorted and projected as `request` asks
    /// (see [`super::query`]); drafts only with `records.read_draft`, unreadable fields never
    /// filtered, sorted, selected or shown.
    pub async fn list_records(
        &self,
        scope: &TenantScope,
        collection: &str,
        request: &ListRequest,
    ) -> Result<Page<RecordView>> {
        authorize_collection(scope, collection, Permission::RecordsRead)?;
        let keys = self.owner_keys(scope.workspace_id().as_str()).await?;
        let drafts = scope.holds_on(collection, Permission::RecordsReadDraft);
        let mut tx = self.store.tenant(scope, Access::Read).await?;
        let schema = Self::collection_named(&mut tx, collection).await?;
        let resolved = query::resolve(
            &schema,
            |field| readable(scope, &schema.name, field),
            |cursor| Self::open_cursor(&keys, &schema, cursor),
            drafts,
            request,
        )?;
        let limit = request.limit.clamp(1, LIST_LIMIT_MAX);
        let mut db_query = resolved.query;
        db_query.limit = limit + 1;
        let mut rows = tx.records_query(&schema.id, &db_query).await?;
        let next_cursor = if rows.len() > limit as usize {
            rows.truncate(limit as usize);
            rows.last()
                .map(|last| {
                    let position = query::encode_cursor(&db_query.sort, &resolved.sort_text, last);
                    Self::seal_cursor(&keys, &schema, &position)
                })
                .transpose()?
        } else {
            None
        };
        let data = rows
            .into_iter()
            .map(|r| {
                let mut view = self.record_view(&keys, scope, &schema, r)?;
                if let Some(fields) = &resolved.projection {
                    view.record.data.retain(|k, _| fields.contains(k));
                }
                Ok(view)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Page { data, next_cursor })
    }

    /// Applies a JSON merge patch (`null` removes a value) if `if_match` (a version) is
    /// current; 412 otherwise, with nothing written.
    #[instrument(skip_all, fields(workspace = %scope.workspace_id()))]
    pub async fn update_record(
        &self,
        scope: &TenantScope,
        collection: &str,
        id: &str,
        patch: Map<String, Value>,
        if_match: Option<i64>,
        meta: &RequestMeta,
    ) -> Result<RecordView> {
        let make_patch = |_: &Collection, _: &Map<String, Value>| Ok(patch.clone());
        match if_match {
            Some(_) => {
                self.patch_record(scope, collection, id, if_match, meta, make_patch)
                    .await
            }
            // Without If-Match the caller asked for no version: a concurrent write that wins
            // the version check is not its problem, and the patch applies on top of it.
            None => {
                self.patch_latest(scope, collection, id, meta, make_patch)
                    .await
            }
        }
    }

    /// [`patch_record`](Self::patch_record) with no expected version, made again on the newer
    /// values when a concurrent change wins the version check in between (possible on
    /// PostgreSQL, whose writers do not serialize on the workspace).
    async fn patch_latest(
        &self,
        scope: &TenantScope,
        collection: &str,
        id: &str,
        meta: &RequestMeta,
        make_patch: impl Fn(&Collection, &Map<String, Value>) -> Result<Map<String, Value>>,
    ) -> Result<RecordView> {
        let mut attempts = 0;
        loop {
            match self
                .patch_record(scope, collection, id, None, meta, &make_patch)
                .await
            {
                Err(Error::PreconditionFailed) if attempts < 20 => attempts += 1,
                other => return other,
            }
        }
    }

    /// The one write path of a record's values: `make_patch` builds the merge patch from the
    /// schema and the current values, inside the write transaction.
    async fn patch_record(
        &self,
        scope: &TenantScope,
        collection: &str,
        id: &str,
        if_match: Option<i64>,
        meta: &RequestMeta,
        make_patch: impl Fn(&Collection, &Map<String, Value>) -> Result<Map<String, Value>>,
    ) -> Result<RecordView> {
        authorize_collection(scope, collection, Permission::RecordsWrite)?;
        let keys = self.owner_keys(scope.workspace_id().as_str()).await?;
        let now = self.now();
        let mut tx = self.store.tenant(scope, Access::Write).await?;
        let schema = Self::collection_for_write(&mut tx, collection).await?;
        let before = visible_record(&mut tx, scope, &schema, id).await?;
        if if_match.is_some_and(|v| v != before.version) {
            return Err(Error::PreconditionFailed);
        }
        let old = self.open_all(&keys, &schema, &before)?;
        let patch = make_patch(&schema, &old)?;
        check_writable(scope, &schema, patch.keys())?;
        // Every member must name a field (a `null` too); values are normalized.
        let normalized = validate(&schema, &old, &patch, false)?;
        let mut merged = old.clone();
        for (k, v) in &patch {
            if v.is_null() {
                merged.remove(k);
            }
        }
        for (k, v) in normalized {
            merged.insert(k, v);
        }
        let removed: Vec<String> = patch
            .iter()
            .filter(|(_, v)| v.is_null())
            .map(|(k, _)| k.clone())
            .collect();
        check_required(&schema, &merged, &removed)?;
        if merged == old {
            return self.record_view(&keys, scope, &schema, before);
        }
        self.check_relations(&mut tx, &schema, &merged).await?;
        self.claim_uniques(&mut tx, &schema, &before, &old, &merged)
            .await?;
        let mut after = before.clone();
        after.data = self.stored_data(&keys, &after, &schema, &merged)?;
        after.version += 1;
        after.updated_at = now;
        after.updated_by = Actor::of(scope.principal()).id;
        if !tx.record_update(&after, before.version).await? {
            return Err(Error::PreconditionFailed);
        }
        let mut event = record_event(scope, "record.update", &schema, &after.id);
        event.diff_field("/version", json!(before.version), json!(after.version));
        let mut events = vec![audit_values(event, &schema, &old, &merged)];
        events.extend(link_events(scope, &schema, &after.id, &old, &merged));
        append_events(&mut tx, events, meta, now).await?;
        let change = record_change("record.updated", &schema, &after, &merged);
        self.emit(&mut *tx, &keys, scope.workspace_id(), change, now)
            .await?;
        tx.commit().await?;
        Ok(written_view(scope, &schema, after, merged))
    }

    /// Deletes a record (with `if_match`, only at that version).
    #[instrument(skip_all, fields(workspace = %scope.workspace_id()))]
    pub async fn delete_record(
        &self,
        scope: &TenantScope,
        collection: &str,
        id: &str,
        if_match: Option<i64>,
        meta: &RequestMeta,
    ) -> Result<()> {
        authorize_collection(scope, collection, Permission::RecordsWrite)?;
        let keys = self.owner_keys(scope.workspace_id().as_str()).await?;
        let now = self.now();
        let mut tx = self.store.tenant(scope, Access::Write).await?;
        let schema = Self::collection_for_write(&mut tx, collection).await?;
        let before = visible_record(&mut tx, scope, &schema, id).await?;
        if if_match.is_some_and(|v| v != before.version) {
            return Err(Error::PreconditionFailed);
        }
        let old = self.open_all(&keys, &schema, &before)?;
        if !tx.record_delete(&before.id).await? {
            return Err(Error::NotFound(Resource::Record));
        }
        let mut event = record_event(scope, "record.delete", &schema, &before.id);
        event.diff_field("/status", json!(before.status.as_str()), Value::Null);
        let event = audit_values(event, &schema, &old, &Map::new());
        tx.audit_append(&event.seal(meta, now)?).await?;
        let change = Change::new(
            "record.deleted",
            json!({"id": before.id, "collection": schema.name, "version": before.version}),
        )
        .about(&schema.name)
        .draft(before.status == RecordStatus::Draft);
        self.emit(&mut *tx, &keys, scope.workspace_id(), change, now)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Publishes or unpublishes a record (DAT-3; needs `records.write`).
    #[instrument(skip_all, fields(workspace = %scope.workspace_id()))]
    pub async fn set_record_status(
        &self,
        scope: &TenantScope,
        collection: &str,
        id: &str,
        status: RecordStatus,
        meta: &RequestMeta,
    ) -> Result<RecordView> {
        authorize_collection(scope, collection, Permission::RecordsWrite)?;
        let keys = self.owner_keys(scope.workspace_id().as_str()).await?;
        let now = self.now();
        let mut tx = self.store.tenant(scope, Access::Write).await?;
        let schema = Self::collection_for_write(&mut tx, collection).await?;
        let before = visible_record(&mut tx, scope, &schema, id).await?;
        if before.status == status {
            return self.record_view(&keys, scope, &schema, before);
        }
        let mut after = before.clone();
        after.status = status;
        after.version += 1;
        after.updated_at = now;
        after.updated_by = Actor::of(scope.principal()).id;
        if status == RecordStatus::Published {
            after.published_at = Some(now);
        }
        if !tx.record_update(&after, before.version).await? {
            return Err(Error::PreconditionFailed);
        }
        let action = match status {
            RecordStatus::Published => "record.publish",
            RecordStatus::Draft => "record.unpublish",
        };
        let mut event = record_event(scope, action, &schema, &after.id);
        event.diff_field(
            "/status",
            json!(before.status.as_str()),
            json!(after.status.as_str()),
        );
        event.diff_field("/version", json!(before.version), json!(after.version));
        tx.audit_append(&event.seal(meta, now)?).await?;
        let values = self.open_all(&keys, &schema, &after)?;
        let change = record_change("record.updated", &schema, &after, &values);
        self.emit(&mut *tx, &keys, scope.workspace_id(), change, now)
            .await?;
        tx.commit().await?;
        self.record_view(&keys, scope, &schema, after)
    }

    /// Adds and removes tags of one `tags` field (DAT-5): each tag added or removed is its own
    /// audit entry.
    #[instrument(skip_all, fields(workspace = %scope.workspace_id()))]
    #[allow(clippy::too_many_arguments)]
    pub async fn change_tags(
        &self,
        scope: &TenantScope,
        collection: &str,
        id: &str,
        field: Option<&str>,
        add: Vec<String>,
        remove: Vec<String>,
        meta: &RequestMeta,
    ) -> Result<RecordView> {
        let make_patch = |schema: &Collection, old: &Map<String, Value>| {
            let tag_fields: Vec<&Field> = schema
                .fields
                .iter()
                .filter(|f| f.kind == FieldType::Tags)
                .collect();
            let name = match (field, tag_fields.as_slice()) {
                (Some(f), _) if tag_fields.iter().any(|t| t.name == f) => f.to_owned(),
                (Some(_), _) => {
                    return Err(Error::field(
                        "/field",
                        "is not a tags field of this collection",
                    ));
                }
                (None, [only]) => only.name.clone(),
                (None, _) => {
                    return Err(Error::field(
                        "/field",
                        "is required: name the tags field to change",
                    ));
                }
            };
            let mut tags: Vec<Value> = old
                .get(&name)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            tags.retain(|t| !remove.iter().any(|r| t.as_str() == Some(r)));
            tags.extend(add.iter().cloned().map(Value::String));
            let mut patch = Map::new();
            patch.insert(name, Value::Array(tags));
            Ok(patch)
        };
        // Computed from the values read in the write transaction, so a change made again
        // after a lost race applies to the newer tags.
        self.patch_latest(scope, collection, id, meta, make_patch)
            .await
    }

    /// Every stored value in the clear (encrypted ones opened), for diffs and merges.
    fn open_all(
        &self,
        keys: &OwnerKeys,
        schema: &Collection,
        record: &Record,
    ) -> Result<Map<String, Value>> {
        let mut out = Map::new();
        for (k, v) in &record.data {
            let encrypted = schema.field(k).is_some_and(|f| f.encrypted);
            let value = if encrypted {
                Self::open_value(keys, record, k, v)?
            } else {
                v.clone()
            };
            out.insert(k.clone(), value);
        }
        Ok(out)
    }

    /// The values as stored: encrypted fields sealed, bound to the record and field.
    fn stored_data(
        &self,
        keys: &OwnerKeys,
        record: &Record,
        schema: &Collection,
        values: &Map<String, Value>,
    ) -> Result<Map<String, Value>> {
        let mut out = Map::new();
        for (k, v) in values {
            let stored = if schema.field(k).is_some_and(|f| f.encrypted) {
                Self::seal_value(keys, record, k, v)?
            } else {
                v.clone()
            };
            out.insert(k.clone(), stored);
        }
        Ok(out)
    }

    /// Each relation value names a record of the field's target collection in this workspace.
    async fn check_relations(
        &self,
        tx: &mut Box<dyn TenantTx>,
        schema: &Collection,
        values: &Map<String, Value>,
    ) -> Result<()> {
        let mut errors = Vec::new();
        for field in schema
            .fields
            .iter()
            .filter(|f| f.kind == FieldType::Relation)
        {
            let Some(target) = values.get(&field.name).and_then(Value::as_str) else {
                continue;
            };
            let Some(id) = RecordId::parse(target) else {
                continue;
            };
            let found = tx.record_get(&id).await?;
            let ok =
                found.is_some_and(|r| Some(&r.collection_id) == field.options.collection.as_ref());
            if !ok {
                errors.push(FieldError::new(
                    pointer(&field.name),
                    "is not a record of the collection this relation points to",
                ));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Error::Validation(errors))
        }
    }

    /// Claims the new values of unique fields and releases the old ones (DAT-1 `unique`).
    async fn claim_uniques(
        &self,
        tx: &mut Box<dyn TenantTx>,
        schema: &Collection,
        record: &Record,
        old: &Map<String, Value>,
        new: &Map<String, Value>,
    ) -> Result<()> {
        let mut errors = Vec::new();
        for field in schema.fields.iter().filter(|f| f.unique) {
            let before = old.get(&field.name).map(|v| unique_key(field, v));
            let after = new.get(&field.name).map(|v| unique_key(field, v));
            if before == after {
                continue;
            }
            if let Some(value) = &after
                && !tx
                    .record_unique_claim(&schema.id, &field.name, value, &record.id)
                    .await?
            {
                errors.push(FieldError::new(
                    pointer(&field.name),
                    "is already the value of another record (the field is unique)",
                ));
            }
            if let Some(value) = &before {
                tx.record_unique_release(&schema.id, &field.name, value, &record.id)
                    .await?;
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Error::Validation(errors))
        }
    }
}

/// Whether `scope` may read `field` of the collection named `collection` (DAT-4): records and
/// schemas alike.
pub(super) fn readable(scope: &TenantScope, collection: &str, field: &str) -> bool {
    scope
        .grants()
        .is_some_and(|g| g.field(collection, field).read)
}

/// Refuses a write that touches fields the caller may not write, naming every one (DAT-4).
fn check_writable<'a>(
    scope: &TenantScope,
    schema: &Collection,
    fields: impl Iterator<Item = &'a String>,
) -> Result<()> {
    let refused: Vec<FieldError> = fields
        .filter(|f| schema.field(f).is_some())
        .filter(|f| {
            !scope
                .grants()
                .is_some_and(|g| g.field(&schema.name, f).write)
        })
        .map(|f| FieldError::new(pointer(f), "you may not write this field"))
        .collect();
    if refused.is_empty() {
        Ok(())
    } else {
        Err(Error::FieldsNotWritable(refused))
    }
}

/// Normalizes `input` against the schema: unknown fields and bad values refused by pointer;
/// on create (`whole`), required fields must have a value.
fn validate(
    schema: &Collection,
    existing: &Map<String, Value>,
    input: &Map<String, Value>,
    whole: bool,
) -> Result<Map<String, Value>> {
    let mut errors = Vec::new();
    let mut out = Map::new();
    for (k, v) in input {
        let Some(field) = schema.field(k) else {
            errors.push(FieldError::new(
                pointer(k),
                "is not a field of this collection",
            ));
            continue;
        };
        if v.is_null() {
            continue;
        }
        match normalize(field, v) {
            Ok(n) => {
                out.insert(k.clone(), n);
            }
            Err(message) => errors.push(FieldError::new(pointer(k), message)),
        }
    }
    if whole {
        for field in schema.fields.iter().filter(|f| f.required) {
            let present = out.contains_key(&field.name) || existing.contains_key(&field.name);
            let pointed = errors.iter().any(|e| e.pointer == pointer(&field.name));
            if !present && !pointed {
                errors.push(FieldError::new(pointer(&field.name), "is required"));
            }
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(Error::Validation(errors))
    }
}

/// A merge patch may not remove a required field's value.
fn check_required(
    schema: &Collection,
    merged: &Map<String, Value>,
    removed: &[String],
) -> Result<()> {
    let errors: Vec<FieldError> = removed
        .iter()
        .filter(|k| schema.field(k).is_some_and(|f| f.required) && !merged.contains_key(*k))
        .map(|k| FieldError::new(pointer(k), "is required"))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Error::Validation(errors))
    }
}

/// A record the caller may see: a draft needs `records.read_draft` on the collection.
/// Seals `events` and appends them as consecutive entries in one batch (one head update).
async fn append_events(
    tx: &mut Box<dyn TenantTx>,
    events: Vec<AuditEvent>,
    meta: &RequestMeta,
    now: time::OffsetDateTime,
) -> Result<()> {
    let sealed = events
        .into_iter()
        .map(|e| e.seal(meta, now))
        .collect::<Result<Vec<_>>>()?;
    tx.audit_append_all(&sealed).await?;
    Ok(())
}

async fn visible_record(
    tx: &mut Box<dyn TenantTx>,
    scope: &TenantScope,
    schema: &Collection,
    id: &str,
) -> Result<Record> {
    let id = RecordId::parse(id).ok_or(Error::NotFound(Resource::Record))?;
    let record = tx
        .record_get(&id)
        .await?
        .filter(|r| r.collection_id == schema.id);
    visible(scope, schema, record)
}

/// The record if there is one and the caller may see it (a draft needs `records.read_draft`);
/// 404 otherwise, the same for both.
fn visible(scope: &TenantScope, schema: &Collection, record: Option<Record>) -> Result<Record> {
    record
        .filter(|r| {
            r.status != RecordStatus::Draft
                || scope.holds_on(&schema.name, Permission::RecordsReadDraft)
        })
        .ok_or(Error::NotFound(Resource::Record))
}

/// What a write answers: the record with its plain `values` (as validated, before sealing),
/// unreadable fields left out.
fn written_view(
    scope: &TenantScope,
    schema: &Collection,
    record: Record,
    values: Map<String, Value>,
) -> RecordView {
    let mut data = values;
    data.retain(|k, _| readable(scope, &schema.name, k));
    RecordView {
        record: Record { data, ..record },
        collection: schema.name.clone(),
    }
}

/// Adds the changed values to `event`: plain fields in the diff (JSON values as their text);
/// encrypted fields only as the fact that they changed; `pii` fields only as commitments
/// (AUDIT-SPEC §5, which sets the entry's `gdpr` flag).
fn audit_values(
    mut event: AuditEvent,
    schema: &Collection,
    before: &Map<String, Value>,
    after: &Map<String, Value>,
) -> AuditEvent {
    let names: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    let mut personal_fields = Vec::new();
    for name in names {
        let (b, a) = (before.get(name), after.get(name));
        if b == a {
            continue;
        }
        let Some(field) = schema.field(name) else {
            continue;
        };
        let at = format!("/data/{name}");
        // JSON values may hold fractions, which canonical entries do not carry: they are
        // audited as their JSON text.
        let audited = |v: Option<&Value>| -> Option<Value> {
            v.map(|v| match field.kind {
                FieldType::Json => Value::String(v.to_string()),
                _ => v.clone(),
            })
        };
        let (b, a) = (audited(b), audited(a));
        let (b, a) = (b.as_ref(), a.as_ref());
        if field.encrypted {
            // Never the value, not even as a commitment (openings are stored in clear).
            let mark = |v: Option<&Value>| v.map_or(Value::Null, |_| json!("(encrypted)"));
            event.diff.insert(at, [mark(b), mark(a)]);
        } else if field.pii {
            personal_fields.push(json!(name));
            if let Some(b) = b {
                event = event.personal(&format!("{at}/before"), b.clone());
            }
            if let Some(a) = a {
                event = event.personal(&format!("{at}/after"), a.clone());
            }
        } else {
            event.diff_field(
                &at,
                b.cloned().unwrap_or(Value::Null),
                a.cloned().unwrap_or(Value::Null),
            );
        }
    }
    if !personal_fields.is_empty() {
        event
            .extra
            .insert("personal_fields".into(), Value::Array(personal_fields));
    }
    event
}

/// One entry per tag added or removed and per relation set or cleared (DAT-5). Values of `pii`
/// or encrypted fields are never named in them.
fn link_events(
    scope: &TenantScope,
    schema: &Collection,
    record: &RecordId,
    before: &Map<String, Value>,
    after: &Map<String, Value>,
) -> Vec<AuditEvent> {
    let mut events = Vec::new();
    for field in &schema.fields {
        if field.pii || field.encrypted {
            continue;
        }
        let (b, a) = (before.get(&field.name), after.get(&field.name));
        let event = |action: &'static str, data: Value| {
            let mut e = record_event(scope, action, schema, record);
            e.extra.insert("field".into(), json!(field.name.clone()));
            e.extra.insert("data".into(), data);
            e
        };
        match field.kind {
            FieldType::Tags => {
                let list = |v: Option<&Value>| -> Vec<String> {
                    v.and_then(Value::as_array)
                        .map(|a| {
                            a.iter()
                                .filter_map(|t| t.as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default()
                };
                let (old, new) = (list(b), list(a));
                for tag in new.iter().filter(|t| !old.contains(t)) {
                    events.push(event("record.tag_added", json!({"tag": tag})));
                }
                for tag in old.iter().filter(|t| !new.contains(t)) {
                    events.push(event("record.tag_removed", json!({"tag": tag})));
                }
            }
            FieldType::Relation if b != a => match a {
                Some(to) => events.push(event(
                    "record.relation_set",
                    json!({"from": b.cloned().unwrap_or(Value::Null), "to": to}),
                )),
                None => events.push(event(
                    "record.relation_cleared",
                    json!({"from": b.cloned().unwrap_or(Value::Null)}),
                )),
            },
            _ => {}
        }
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collections::model::FieldOptions;

    #[test]
    fn decimals_that_are_equal_claim_one_unique_value() {
        let field = Field {
            name: "amount".into(),
            kind: FieldType::Decimal,
            required: false,
            unique: true,
            pii: false,
            encrypted: false,
            options: FieldOptions::default(),
        };
        assert_eq!(
            unique_key(&field, &json!("1.50")),
            unique_key(&field, &json!("1.5"))
        );
        assert_eq!(
            unique_key(&field, &json!("2.000")),
            unique_key(&field, &json!("2"))
        );
        assert_ne!(
            unique_key(&field, &json!("20")),
            unique_key(&field, &json!("2"))
        );
        assert_eq!(unique_key(&field, &json!("100")), "100");
    }
}
