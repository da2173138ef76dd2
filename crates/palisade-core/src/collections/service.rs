//! Collection schemas (DAT-1): create, list, read, change and delete a workspace's collections.
//! Schema changes lock the workspace row, so two changes never interleave (a relation cannot
//! be added to a collection being deleted), and each is one audit entry with before and after.

use std::collections::{BTreeMap, HashSet};

use serde_json::{Value, json};
use tracing::instrument;

use super::model::{
    Collection, CollectionPatch, ENUM_VALUES_MAX, FIELDS_MAX, Field, FieldChange, FieldInput,
    FieldOptions, FieldOptionsInput, FieldType, NewCollection, RESERVED_FIELD_NAMES,
};
use crate::acl::{Permission, authorize};
use crate::app::Services;
use crate::audit::Target;
use crate::error::{ConflictKind, Error, Resource, Result, StoreError};
use crate::ids::CollectionId;
use crate::principal::RequestMeta;
use crate::store::Access;
use crate::tenancy::TenantScope;
use crate::validate::Checks;
use crate::webhooks::outbox::Change;
use crate::workspaces::members::lock_workspace;
use crate::workspaces::model::Page;
use crate::workspaces::service::{LIST_LIMIT_MAX, is_name, page_of, ws_event};

/// Most collections a workspace may define.
pub const COLLECTIONS_MAX: usize = 1_000;

/// A collection as a caller sees it: only the fields they may read (unless they manage
/// collections), and the names of relation targets.
#[derive(Debug, Clone)]
pub struct CollectionView {
    pub collection: Collection,
    pub relation_names: BTreeMap<CollectionId, String>,
}

/// A collection event for webhooks: its schema (each endpoint sees the fields it may read).
fn collection_change(event_type: &'static str, c: &Collection) -> Change {
    let ts = crate::audit::format_ts;
    let data = json!({
        "id": c.id,
        "name": c.name,
        "version": c.version,
        "fields": c.fields,
        "created_at": ts(c.created_at),
        "updated_at": ts(c.updated_at),
    });
    Change::new(event_type, data).about(&c.name)
}

fn collection_target(id: &CollectionId) -> Target {
    Target {
        kind: "collection".into(),
        id: id.to_string(),
    }
}

/// An enum's values longer than this (as JSON) are audited as their digest.
const AUDIT_VALUES_INLINE: usize = 1_024;
/// Field lists (before and after together) longer than this are audited as digests, so an
/// entry stays well under the format's 65,535 bytes whatever the schema.
const AUDIT_FIELDS_INLINE: usize = 40_000;

/// `{count, sha256}` of a list's stored JSON: what an audit entry holds for a list too large to
/// inline. Whoever has the list can check it.
fn digest<T: serde::Serialize>(items: &[T]) -> Value {
    let bytes = serde_json::to_vec(items).unwrap_or_default();
    let hex = crate::crypto::hex(&crate::crypto::sha256(&bytes));
    json!({"count": items.len(), "sha256": hex})
}

/// The fields as audited: their stored JSON (relation targets by id), long enum value lists
/// as digests.
fn fields_json(fields: &[Field]) -> Value {
    let audited: Vec<Value> = fields
        .iter()
        .map(|f| {
            let mut v = serde_json::to_value(f).unwrap_or(Value::Null);
            if let Some(values) = &f.options.values
                && serde_json::to_vec(values).map_or(0, |b| b.len()) > AUDIT_VALUES_INLINE
            {
                v["options"]["values"] = digest(values);
            }
            v
        })
        .collect();
    Value::Array(audited)
}

/// Adds the `/fields` change to `event`: the field lists, or their digests when together they
/// would make the entry too large.
fn diff_fields(
    event: &mut crate::audit::AuditEvent,
    before: Option<&[Field]>,
    after: Option<&[Field]>,
) {
    let (b, a) = (before.map(fields_json), after.map(fields_json));
    let size = |v: &Option<Value>| v.as_ref().map_or(0, |v| v.to_string().len());
    let (b, a) = if size(&b) + size(&a) > AUDIT_FIELDS_INLINE {
        (before.map(digest), after.map(digest))
    } else {
        (b, a)
    };
    event.diff_field(
        "/fields",
        b.unwrap_or(Value::Null),
        a.unwrap_or(Value::Null),
    );
}

/// What a new field must satisfy, wherever it is declared (`at` is its pointer).
struct FieldRules<'a> {
    /// Collections of the workspace by name, this one included (relations may point to it).
    by_name: &'a BTreeMap<String, CollectionId>,
}

impl FieldRules<'_> {
    fn check_name(checks: &mut Checks, at: &str, name: &str) {
        if !is_name(name) {
            checks.fail(
                at,
                "must be 1 to 63 characters: a lowercase letter, then lowercase letters, digits or '_'",
            );
        } else if RESERVED_FIELD_NAMES.contains(&name) {
            checks.fail(at, "is reserved for a record's own attributes");
        }
    }

    fn options(
        &self,
        checks: &mut Checks,
        at: &str,
        kind: FieldType,
        input: &FieldOptionsInput,
    ) -> FieldOptions {
        let mut options = FieldOptions::default();
        match (kind, &input.values) {
            (FieldType::Enum, None) => checks.fail(
                &format!("{at}/options/values"),
                "is required for an enum: the allowed values",
            ),
            (FieldType::Enum, Some(values)) => {
                if values.is_empty() || values.len() > ENUM_VALUES_MAX {
                    checks.fail(
                        &format!("{at}/options/values"),
                        format!("must list 1 to {ENUM_VALUES_MAX} values"),
                    );
                }
                let mut seen = HashSet::new();
                for (j, v) in values.iter().enumerate() {
                    checks.text(&format!("{at}/options/values/{j}"), v, 1, 200);
                    if !seen.insert(v) {
                        checks.fail(&format!("{at}/options/values/{j}"), "is listed twice");
                    }
                }
                options.values = Some(values.clone());
            }
            (_, Some(_)) => checks.fail(&format!("{at}/options/values"), "is only for enum fields"),
            (_, None) => {}
        }
        match (kind, &input.collection) {
            (FieldType::Relation, None) => checks.fail(
                &format!("{at}/options/collection"),
                "is required for a relation: the collection it points to",
            ),
            (FieldType::Relation, Some(name)) => match self.by_name.get(name) {
                Some(id) => options.collection = Some(id.clone()),
                None => checks.fail(
                    &format!("{at}/options/collection"),
                    "is not a collection of this workspace",
                ),
            },
            (_, Some(_)) => checks.fail(
                &format!("{at}/options/collection"),
                "is only for relation fields",
            ),
            (_, None) => {}
        }
        options
    }

    fn flags(checks: &mut Checks, at: &str, kind: FieldType, unique: bool, encrypted: bool) {
        if unique && !kind.can_be_unique() {
            checks.fail(
                &format!("{at}/unique"),
                format!("a {} field cannot be unique", kind.as_str()),
            );
        } else if unique && encrypted {
            checks.fail(
                &format!("{at}/unique"),
                "an encrypted field cannot be unique (its stored values are not comparable)",
            );
        }
        if encrypted && !kind.can_be_encrypted() {
            checks.fail(
                &format!("{at}/encrypted"),
                format!("a {} field cannot be encrypted", kind.as_str()),
            );
        }
    }

    fn field(&self, checks: &mut Checks, at: &str, input: &FieldInput) -> Option<Field> {
        Self::check_name(checks, &format!("{at}/name"), &input.name);
        let Some(kind) = FieldType::parse(&input.kind) else {
            let all: Vec<&str> = FieldType::ALL.iter().map(|t| t.as_str()).collect();
            checks.fail(
                &format!("{at}/type"),
                format!("must be one of {}", all.join(", ")),
            );
            return None;
        };
        let options = self.options(checks, at, kind, &input.options);
        Self::flags(checks, at, kind, input.unique, input.encrypted);
        Some(Field {
            name: input.name.clone(),
            kind,
            required: input.required,
            unique: input.unique,
            pii: input.pii,
            encrypted: input.encrypted,
            options,
        })
    }
}

/// Refuses a second field of the same name (`at` points at the later one).
fn no_duplicate(checks: &mut Checks, seen: &mut HashSet<String>, at: &str, name: &str) {
    if !seen.insert(name.to_owned()) {
        checks.fail(at, "is the name of another field of this collection");
    }
}

impl Services {
    /// Defines a collection (needs `collections.manage`).
    #[instrument(skip_all, fields(workspace = %scope.workspace_id()))]
    pub async fn create_collection(
        &self,
        scope: &TenantScope,
        input: NewCollection,
        meta: &RequestMeta,
    ) -> Result<CollectionView> {
        authorize(scope, Permission::CollectionsManage)?;
        let keys = self.owner_keys(scope.workspace_id().as_str()).await?;
        let now = self.now();
        let id = CollectionId::generate();
        let mut tx = self.store.tenant(scope, Access::Write).await?;
        lock_workspace(&mut tx).await?;
        let all = tx.collections_all().await?;
        let mut checks = Checks::new();
        if !is_name(&input.name) {
            checks.fail(
                "/name",
                "must be 1 to 63 characters: a lowercase letter, then lowercase letters, digits or '_'",
            );
        }
        if all.len() >= COLLECTIONS_MAX {
            checks.fail(
                "/name",
                format!("this workspace has {COLLECTIONS_MAX} collections, the most it may have"),
            );
        }
        if input.fields.len() > FIELDS_MAX {
            checks.fail("/fields", format!("must hold at most {FIELDS_MAX} fields"));
        }
        let mut by_name: BTreeMap<String, CollectionId> =
            all.iter().map(|c| (c.name.clone(), c.id.clone())).collect();
        by_name.insert(input.name.clone(), id.clone());
        let rules = FieldRules { by_name: &by_name };
        let mut seen = HashSet::new();
        let mut fields = Vec::with_capacity(input.fields.len());
        for (i, f) in input.fields.iter().enumerate() {
            let at = format!("/fields/{i}");
            no_duplicate(&mut checks, &mut seen, &format!("{at}/name"), &f.name);
            fields.extend(rules.field(&mut checks, &at, f));
        }
        checks.finish()?;
        let collection = Collection {
            id,
            workspace_id: scope.workspace_id().clone(),
            name: input.name,
            fields,
            version: 1,
            created_at: now,
            updated_at: now,
        };
        match tx.collection_insert(&collection).await {
            Err(StoreError::Conflict(_)) => return Err(Error::Conflict(ConflictKind::NameTaken)),
            other => other?,
        }
        let mut event = ws_event(
            scope,
            "collection.create",
            collection_target(&collection.id),
        );
        event.diff_field("/name", Value::Null, json!(collection.name));
        diff_fields(&mut event, None, Some(&collection.fields));
        tx.audit_append(&event.seal(meta, now)?).await?;
        let change = collection_change("collection.created", &collection);
        self.emit(&mut *tx, &keys, scope.workspace_id(), change, now)
            .await?;
        tx.commit().await?;
        let relation_names = by_name.into_iter().map(|(n, id)| (id, n)).collect();
        Ok(self.view_of(scope, collection, relation_names))
    }

    /// The workspace's collections, by id (needs `records.read` or `collections.manage`).
    pub async fn list_collections(
        &self,
        scope: &TenantScope,
        after: Option<CollectionId>,
        limit: u32,
    ) -> Result<Page<CollectionView>> {
        authorize_schema_read(scope)?;
        let limit = limit.clamp(1, LIST_LIMIT_MAX);
        let mut tx = self.store.tenant(scope, Access::Read).await?;
        let rows = tx.collections_list(after.as_ref(), limit + 1).await?;
        let names = relation_names(&tx.collections_all().await?);
        let page = page_of(rows, limit, |c| c.id.to_string());
        Ok(Page {
            data: page
                .data
                .into_iter()
                .map(|c| self.view_of(scope, c, names.clone()))
                .collect(),
            next_cursor: page.next_cursor,
        })
    }

    /// One collection by name.
    pub async fn get_collection(&self, scope: &TenantScope, name: &str) -> Result<CollectionView> {
        authorize_schema_read(scope)?;
        let mut tx = self.store.tenant(scope, Access::Read).await?;
        let collection = tx
            .collection_by_name(name)
            .await?
            .ok_or(Error::NotFound(Resource::Collection))?;
        let names = relation_names(&tx.collections_all().await?);
        Ok(self.view_of(scope, collection, names))
    }

    /// Adds fields, changes flags and options, removes fields (needs `collections.manage`), all
    /// or nothing; renames the collection or fields, with care (see `refuse_named_in_grants`). A
    /// field's type and `encrypted` flag stay as created.
    #[instrument(skip_all, fields(workspace = %scope.workspace_id()))]
    pub async fn update_collection(
        &self,
        scope: &TenantScope,
        name: &str,
        patch: CollectionPatch,
        meta: &RequestMeta,
    ) -> Result<CollectionView> {
        authorize(scope, Permission::CollectionsManage)?;
        let now = self.now();
        let keys = self.owner_keys(scope.workspace_id().as_str()).await?;
        let mut tx = self.store.tenant(scope, Access::Write).await?;
        let (all, before) = lock_for_schema_change(&mut tx, name).await?;
        let by_name: BTreeMap<String, CollectionId> =
            all.iter().map(|c| (c.name.clone(), c.id.clone())).collect();
        let rules = FieldRules { by_name: &by_name };
        let mut checks = Checks::new();
        let new_name = patch.name.clone().filter(|n| n != &before.name);
        if let Some(new_name) = &new_name {
            if !is_name(new_name) {
                checks.fail(
                    "/name",
                    "must be 1 to 63 characters: a lowercase letter, then lowercase letters, digits or '_'",
                );
            } else if by_name.contains_key(new_name) {
                checks.fail("/name", "is the name of another collection");
            }
        }
        let has_records = tx.records_count(&before.id).await? > 0;
        let mut fields = before.fields.clone();
        let mut touched = HashSet::new();
        let mut renames: Vec<Rename> = Vec::new();
        for (i, change) in patch.update_fields.iter().enumerate() {
            let at = format!("/update_fields/{i}");
            apply_change(&rules, &mut checks, &at, &mut fields, &mut touched, change);
            if let Some(to) = change.rename_to.as_ref().filter(|to| *to != &change.name)
                && fields.iter().any(|f| &f.name == to)
            {
                renames.push(Rename {
                    at: format!("{at}/rename_to"),
                    from: change.name.clone(),
                    to: to.clone(),
                });
            }
        }
        // A renamed field's old name stays taken in this change: grants may still name it.
        let mut names = HashSet::new();
        for (i, field) in fields.iter().enumerate() {
            if !names.insert(field.name.clone()) {
                let at = patch
                    .update_fields
                    .iter()
                    .position(|c| c.rename_to.as_deref() == Some(field.name.as_str()))
                    .map_or_else(
                        || format!("/fields/{i}"),
                        |j| format!("/update_fields/{j}/rename_to"),
                    );
                checks.fail(&at, "is the name of another field of this collection");
            }
        }
        for (i, field) in patch.remove_fields.iter().enumerate() {
            let at = format!("/remove_fields/{i}");
            if touched.contains(field) {
                checks.fail(&at, "is also changed in update_fields");
            } else if let Some(pos) = fields.iter().position(|f| &f.name == field) {
                fields.remove(pos);
                touched.insert(field.clone());
            } else {
                checks.fail(&at, "is not a field of this collection");
            }
        }
        let mut seen: HashSet<String> = fields.iter().map(|f| f.name.clone()).collect();
        seen.extend(renames.iter().map(|r| r.from.clone()));
        for (i, input) in patch.add_fields.iter().enumerate() {
            let at = format!("/add_fields/{i}");
            no_duplicate(&mut checks, &mut seen, &format!("{at}/name"), &input.name);
            if has_records && input.required {
                checks.fail(
                    &format!("{at}/required"),
                    "cannot be set on a new field while the collection has records (they have no value for it): add it, fill it, then make it required",
                );
            }
            fields.extend(rules.field(&mut checks, &at, input));
        }
        if fields.len() > FIELDS_MAX {
            checks.fail(
                "/add_fields",
                format!("a collection holds at most {FIELDS_MAX} fields"),
            );
        }
        if new_name.is_some() || !renames.is_empty() {
            refuse_named_in_grants(
                &mut tx,
                &mut checks,
                &before.name,
                new_name.as_deref(),
                &renames,
            )
            .await?;
        }
        checks.finish()?;
        if fields == before.fields && new_name.is_none() {
            return Ok(self.view_of(scope, before, relation_names(&all)));
        }
        // Renames first, so the other changes see every field under its new name.
        let mut renamed = before.clone();
        for r in &renames {
            if let Some(f) = renamed.fields.iter_mut().find(|f| f.name == r.from) {
                f.name = r.to.clone();
            }
        }
        if has_records && !renames.is_empty() {
            self.rename_record_fields(&mut tx, &keys, &before, &renames)
                .await?;
        }
        if has_records {
            migrate_records(&mut tx, &renamed, &fields, &patch).await?;
        }
        let mut after = before.clone();
        if let Some(name) = &new_name {
            after.name = name.clone();
        }
        after.fields = fields;
        after.version += 1;
        after.updated_at = now;
        match tx.collection_update(&after).await {
            Err(StoreError::Conflict(_)) => return Err(Error::Conflict(ConflictKind::NameTaken)),
            Ok(false) => return Err(Error::NotFound(Resource::Collection)),
            other => {
                other?;
            }
        }
        let mut event = ws_event(scope, "collection.update", collection_target(&after.id));
        if new_name.is_some() {
            event.diff_field("/name", json!(before.name), json!(after.name));
        }
        if !renames.is_empty() {
            let map: serde_json::Map<String, Value> = renames
                .iter()
                .map(|r| (r.from.clone(), json!(r.to)))
                .collect();
            event
                .extra
                .insert("renamed_fields".into(), Value::Object(map));
        }
        diff_fields(&mut event, Some(&before.fields), Some(&after.fields));
        event.diff_field("/version", json!(before.version), json!(after.version));
        tx.audit_append(&event.seal(meta, now)?).await?;
        let change = collection_change("collection.updated", &after);
        self.emit(&mut *tx, &keys, scope.workspace_id(), change, now)
            .await?;
        tx.commit().await?;
        Ok(self.view_of(scope, after, relation_names(&all)))
    }

    /// Deletes a collection (needs `collections.manage`); refused while another collection's
    /// relation points to it.
    #[instrument(skip_all, fields(workspace = %scope.workspace_id()))]
    pub async fn delete_collection(
        &self,
        scope: &TenantScope,
        name: &str,
        meta: &RequestMeta,
    ) -> Result<()> {
        authorize(scope, Permission::CollectionsManage)?;
        let keys = self.owner_keys(scope.workspace_id().as_str()).await?;
        let now = self.now();
        let mut tx = self.store.tenant(scope, Access::Write).await?;
        let (all, before) = lock_for_schema_change(&mut tx, name).await?;
        let used = all
            .iter()
            .filter(|c| c.id != before.id)
            .any(|c| c.relation_targets().any(|t| t == &before.id));
        if used {
            return Err(Error::Conflict(ConflictKind::CollectionInUse));
        }
        tx.records_delete_collection(&before.id).await?;
        if !tx.collection_delete(&before.id).await? {
            return Err(Error::NotFound(Resource::Collection));
        }
        let mut event = ws_event(scope, "collection.delete", collection_target(&before.id));
        event.diff_field("/name", json!(before.name), Value::Null);
        diff_fields(&mut event, Some(&before.fields), None);
        tx.audit_append(&event.seal(meta, now)?).await?;
        let change = collection_change("collection.deleted", &before);
        self.emit(&mut *tx, &keys, scope.workspace_id(), change, now)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// What the caller may see of `collection`: every field with `collections.manage`, else
    /// the fields their grants let them read (DAT-4).
    fn view_of(
        &self,
        scope: &TenantScope,
        mut collection: Collection,
        relation_names: BTreeMap<CollectionId, String>,
    ) -> CollectionView {
        if !scope.permissions().contains(Permission::CollectionsManage) {
            let name = collection.name.clone();
            collection
                .fields
                .retain(|f| super::records::readable(scope, &name, &f.name));
        }
        CollectionView {
            collection,
            relation_names,
        }
    }
}

/// Brings a collection's records in line with its new fields, in the schema change's
/// transaction: a field turned `required` must have a value in every record, a field turned
/// `unique` (or a new unique field) claims every record's value and refuses duplicates, a
/// removed field's values and unique claims are dropped.
async fn migrate_records(
    tx: &mut Box<dyn crate::store::TenantTx>,
    before: &Collection,
    after: &[Field],
    patch: &CollectionPatch,
) -> Result<()> {
    let was = |name: &str| before.field(name);
    let required: Vec<(usize, &Field)> = patch
        .update_fields
        .iter()
        .enumerate()
        .filter_map(|(i, c)| after.iter().find(|f| f.name == c.name).map(|f| (i, f)))
        .filter(|(_, f)| f.required && !was(&f.name).is_some_and(|w| w.required))
        .collect();
    let unique: Vec<(String, &Field)> = after
        .iter()
        .filter(|f| f.unique && !was(&f.name).is_some_and(|w| w.unique))
        .map(|f| {
            let at = match patch.update_fields.iter().position(|c| c.name == f.name) {
                Some(i) => format!("/update_fields/{i}/unique"),
                None => patch
                    .add_fields
                    .iter()
                    .position(|a| a.name == f.name)
                    .map_or_else(
                        || "/add_fields".to_owned(),
                        |i| format!("/add_fields/{i}/unique"),
                    ),
            };
            (at, f)
        })
        .collect();
    let removed: Vec<&Field> = before
        .fields
        .iter()
        .filter(|f| !after.iter().any(|a| a.name == f.name))
        .collect();
    let mut missing = vec![0u64; required.len()];
    let mut duplicates: Vec<Option<String>> = vec![None; unique.len()];
    let mut cursor: Option<crate::ids::RecordId> = None;
    loop {
        let page = tx
            .records_list(&before.id, cursor.as_ref(), 500, true)
            .await?;
        let Some(last) = page.last() else { break };
        cursor = Some(last.id.clone());
        for record in &page {
            for (n, (_, field)) in required.iter().enumerate() {
                if !record.data.contains_key(&field.name) {
                    missing[n] += 1;
                }
            }
            for (n, (_, field)) in unique.iter().enumerate() {
                if let Some(v) = record.data.get(&field.name) {
                    let key = super::records::unique_key(field, v);
                    if !tx
                        .record_unique_claim(&before.id, &field.name, &key, &record.id)
                        .await?
                    {
                        duplicates[n].get_or_insert(key);
                    }
                }
            }
            if removed.iter().any(|f| record.data.contains_key(&f.name)) {
                let mut stripped = record.clone();
                for field in &removed {
                    if let Some(v) = stripped.data.remove(&field.name)
                        && field.unique
                    {
                        let key = super::records::unique_key(field, &v);
                        tx.record_unique_release(&before.id, &field.name, &key, &record.id)
                            .await?;
                    }
                }
                stripped.version += 1;
                tx.record_update(&stripped, record.version).await?;
            }
        }
    }
    let mut checks = Checks::new();
    for ((i, field), n) in required.iter().zip(missing) {
        if n > 0 {
            checks.fail(
                &format!("/update_fields/{i}/required"),
                format!("{n} record(s) have no value for {}", field.name),
            );
        }
    }
    for ((at, _), dup) in unique.iter().zip(duplicates) {
        if dup.is_some() {
            checks.fail(at, "records already repeat a value of this field");
        }
    }
    checks.finish()
}

/// Locks what a schema change needs (the workspace row, so schema changes never interleave;
/// the collection exclusively, which waits for record writes in flight and holds new ones until
/// commit), then reads every collection: (all of them, the one named `name`).
async fn lock_for_schema_change(
    tx: &mut Box<dyn crate::store::TenantTx>,
    name: &str,
) -> Result<(Vec<Collection>, Collection)> {
    lock_workspace(tx).await?;
    tx.collection_lock(name, true).await?;
    let all = tx.collections_all().await?;
    let named = all
        .iter()
        .find(|c| c.name == name)
        .cloned()
        .ok_or(Error::NotFound(Resource::Collection))?;
    Ok((all, named))
}

/// A field renamed by a schema change (`at` points at its `rename_to`).
struct Rename {
    at: String,
    from: String,
    to: String,
}

/// Refuses a rename while a custom role, a team or a live API key names the collection (for a
/// collection rename) or the field (for a field rename) by its old or new name: the grant would
/// silently stop applying, or apply to what the new name now means. Those grants must change
/// first (a key's grants are fixed: revoke it).
async fn refuse_named_in_grants(
    tx: &mut Box<dyn crate::store::TenantTx>,
    checks: &mut Checks,
    collection: &str,
    new_name: Option<&str>,
    renames: &[Rename],
) -> Result<()> {
    // Every row of a paged list, 200 at a time.
    macro_rules! all_pages {
        ($list:ident) => {{
            let mut all = Vec::new();
            let mut after = None;
            loop {
                let page = tx.$list(after.as_ref(), 200).await?;
                let Some(last) = page.last() else { break };
                after = Some(last.id.clone());
                all.extend(page);
            }
            all
        }};
    }
    let roles = all_pages!(custom_roles_list);
    let teams = all_pages!(teams_list);
    let keys: Vec<_> = all_pages!(api_keys_list)
        .into_iter()
        .filter(|k| k.revoked_at.is_none())
        .collect();
    // Who names collection `c` (or its `field`) in a grant.
    let holders = |c: &str, field: Option<&str>| {
        let mut found: Vec<String> = Vec::new();
        for role in &roles {
            if role
                .fields
                .iter()
                .any(|g| g.collection == c && field.is_none_or(|f| g.field == f))
            {
                found.push(format!("role {}", role.id));
            }
        }
        if field.is_none() {
            for team in &teams {
                if team
                    .grants
                    .iter()
                    .any(|g| g.collection.as_deref() == Some(c))
                {
                    found.push(format!("team {}", team.id));
                }
            }
        }
        for key in &keys {
            let named = match field {
                None => key.grants.names_collection(c),
                Some(f) => key.grants.names_field(c, f),
            };
            if named {
                found.push(format!("API key {}", key.id));
            }
        }
        found
    };
    if let Some(new_name) = new_name {
        let mut found = holders(collection, None);
        found.extend(holders(new_name, None));
        if !found.is_empty() {
            checks.fail(
                "/name",
                format!(
                    "grants name this collection ({}): change or remove them first (an API key's grants are fixed: revoke it)",
                    found.join(", ")
                ),
            );
        }
    }
    for r in renames {
        let mut found = holders(collection, Some(&r.from));
        found.extend(holders(collection, Some(&r.to)));
        if !found.is_empty() {
            checks.fail(
                &r.at,
                format!(
                    "grants name this field ({}): change or remove them first (an API key's grants are fixed: revoke it)",
                    found.join(", ")
                ),
            );
        }
    }
    Ok(())
}

impl Services {
    /// Moves each renamed field's values (and unique claims) to its new name in every record;
    /// encrypted values are opened and sealed again, since the field name is in their AAD.
    async fn rename_record_fields(
        &self,
        tx: &mut Box<dyn crate::store::TenantTx>,
        keys: &crate::keys::OwnerKeys,
        collection: &Collection,
        renames: &[Rename],
    ) -> Result<()> {
        for r in renames {
            if collection.field(&r.from).is_some_and(|f| f.unique) {
                tx.record_uniques_rename(&collection.id, &r.from, &r.to)
                    .await?;
            }
        }
        let mut cursor: Option<crate::ids::RecordId> = None;
        loop {
            let page = tx
                .records_list(&collection.id, cursor.as_ref(), 500, true)
                .await?;
            let Some(last) = page.last() else { break };
            cursor = Some(last.id.clone());
            for record in page {
                if !renames.iter().any(|r| record.data.contains_key(&r.from)) {
                    continue;
                }
                let mut moved = record.clone();
                for r in renames {
                    let Some(value) = moved.data.remove(&r.from) else {
                        continue;
                    };
                    let value = if collection.field(&r.from).is_some_and(|f| f.encrypted) {
                        let plain = Self::open_value(keys, &record, &r.from, &value)?;
                        Self::seal_value(keys, &record, &r.to, &plain)?
                    } else {
                        value
                    };
                    moved.data.insert(r.to.clone(), value);
                }
                moved.version += 1;
                if !tx.record_update(&moved, record.version).await? {
                    return Err(Error::internal(StoreError::Invalid(
                        "a record changed during a schema change".into(),
                    )));
                }
            }
        }
        Ok(())
    }
}

/// Reading schemas needs either permission: record readers need the schema to use records.
fn authorize_schema_read(scope: &TenantScope) -> Result<()> {
    authorize(scope, Permission::CollectionsManage)
        .or_else(|_| authorize(scope, Permission::RecordsRead))
}

fn relation_names(all: &[Collection]) -> BTreeMap<CollectionId, String> {
    all.iter().map(|c| (c.id.clone(), c.name.clone())).collect()
}

/// One `update_fields` entry: flags and options of an existing field.
fn apply_change(
    rules: &FieldRules<'_>,
    checks: &mut Checks,
    at: &str,
    fields: &mut [Field],
    touched: &mut HashSet<String>,
    change: &FieldChange,
) {
    let Some(field) = fields.iter_mut().find(|f| f.name == change.name) else {
        checks.fail(&format!("{at}/name"), "is not a field of this collection");
        return;
    };
    if !touched.insert(change.name.clone()) {
        checks.fail(&format!("{at}/name"), "is changed twice");
        return;
    }
    if let Some(to) = change.rename_to.as_ref().filter(|to| *to != &field.name) {
        let alone = change.required.is_none()
            && change.unique.is_none()
            && change.pii.is_none()
            && change.options.is_none();
        if !alone {
            checks.fail(
                &format!("{at}/rename_to"),
                "rename a field in an update of its own (no other change to it in the same entry)",
            );
            return;
        }
        let before = checks.len();
        FieldRules::check_name(checks, &format!("{at}/rename_to"), to);
        if checks.len() == before {
            field.name = to.clone();
        }
        return;
    }
    if let Some(required) = change.required {
        field.required = required;
    }
    if let Some(pii) = change.pii {
        field.pii = pii;
    }
    if let Some(unique) = change.unique {
        field.unique = unique;
    }
    FieldRules::flags(checks, at, field.kind, field.unique, field.encrypted);
    if let Some(options) = &change.options {
        field.options = rules.options(checks, at, field.kind, options);
    }
}
