//! Record list queries (DAT-2, DAT-4): the `filter[field][op]`, `sort` and `fields` parameters
//! of a record list, checked against the collection's schema and the caller's field grants and
//! turned into a typed [`RecordQuery`] that the store runs as SQL, plus the opaque keyset cursor
//! that continues a sorted list. Pure: no I/O.
//!
//! The order is total and the same on both backends: each sort key ascending puts missing
//! values last (descending: first), ties fall to the record id, text compares by code point,
//! decimals numerically and exactly, datetimes as instants.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::model::{Collection, FieldType, Record, RecordStatus};
use super::values::{TAG_MAX, TEXT_MAX, normalize};
use crate::error::{Error, FieldError, Result};
use crate::ids::RecordId;

/// Most sort keys in one `sort`, filters in one request, and values in one `in`.
pub const SORT_KEYS_MAX: usize = 3;
pub const FILTERS_MAX: usize = 20;
pub const IN_VALUES_MAX: usize = 100;

/// A filter's comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterOp {
    Eq,
    Ne,
    Lt,
    Lte,
    Gt,
    Gte,
    In,
    Contains,
}

impl FilterOp {
    pub const ALL: [FilterOp; 8] = [
        FilterOp::Eq,
        FilterOp::Ne,
        FilterOp::Lt,
        FilterOp::Lte,
        FilterOp::Gt,
        FilterOp::Gte,
        FilterOp::In,
        FilterOp::Contains,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FilterOp::Eq => "eq",
            FilterOp::Ne => "ne",
            FilterOp::Lt => "lt",
            FilterOp::Lte => "lte",
            FilterOp::Gt => "gt",
            FilterOp::Gte => "gte",
            FilterOp::In => "in",
            FilterOp::Contains => "contains",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|op| op.as_str() == s)
    }
}

const EQUALITY: &[FilterOp] = &[FilterOp::Eq, FilterOp::Ne, FilterOp::In];
const ORDERED: &[FilterOp] = &[
    FilterOp::Eq,
    FilterOp::Ne,
    FilterOp::Lt,
    FilterOp::Lte,
    FilterOp::Gt,
    FilterOp::Gte,
    FilterOp::In,
];
const TEXT_OPS: &[FilterOp] = &FilterOp::ALL;
const BOOLEAN_OPS: &[FilterOp] = &[FilterOp::Eq, FilterOp::Ne];
const TAGS_OPS: &[FilterOp] = &[FilterOp::Contains];
const INSTANT_OPS: &[FilterOp] = &[
    FilterOp::Eq,
    FilterOp::Ne,
    FilterOp::Lt,
    FilterOp::Lte,
    FilterOp::Gt,
    FilterOp::Gte,
];

/// How the store reads and compares a key's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// By code point (also dates, enums, relations, ids).
    Text,
    Integer,
    /// A decimal string, compared numerically.
    Decimal,
    Boolean,
    /// An RFC 3339 UTC string (`…Z`), compared as an instant.
    Datetime,
    /// A list of strings; only `contains`.
    Tags,
}

/// A record column that lists can filter and sort on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Id,
    Status,
    CreatedAt,
    UpdatedAt,
    PublishedAt,
    CreatedBy,
    UpdatedBy,
}

impl Column {
    const ALL: [Column; 7] = [
        Column::Id,
        Column::Status,
        Column::CreatedAt,
        Column::UpdatedAt,
        Column::PublishedAt,
        Column::CreatedBy,
        Column::UpdatedBy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Column::Id => "id",
            Column::Status => "status",
            Column::CreatedAt => "created_at",
            Column::UpdatedAt => "updated_at",
            Column::PublishedAt => "published_at",
            Column::CreatedBy => "created_by",
            Column::UpdatedBy => "updated_by",
        }
    }

    fn named(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == name)
    }

    fn kind(self) -> KeyKind {
        match self {
            Column::CreatedAt | Column::UpdatedAt | Column::PublishedAt => KeyKind::Datetime,
            _ => KeyKind::Text,
        }
    }

    fn ops(self) -> &'static [FilterOp] {
        match self.kind() {
            KeyKind::Datetime => INSTANT_OPS,
            _ => EQUALITY,
        }
    }

    /// This column of `record`, as a key value.
    fn value(self, record: &Record) -> Option<KeyValue> {
        let text = |s: &str| Some(KeyValue::Text(s.to_owned()));
        let instant = |t: OffsetDateTime| utc_text(t).map(KeyValue::Text);
        match self {
            Column::Id => text(record.id.as_str()),
            Column::Status => text(record.status.as_str()),
            Column::CreatedAt => instant(record.created_at),
            Column::UpdatedAt => instant(record.updated_at),
            Column::PublishedAt => record.published_at.and_then(instant),
            Column::CreatedBy => text(&record.created_by),
            Column::UpdatedBy => text(&record.updated_by),
        }
    }
}

/// Where a key's value lives: a field of the record's data, or a column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A field name (`^[a-z][a-z0-9_]*$`, checked at schema time).
    Field(String),
    Column(Column),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub source: KeySource,
    pub kind: KeyKind,
}

/// A value to compare a key with, in the key's stored form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyValue {
    Text(String),
    Integer(i64),
    Boolean(bool),
}

impl KeyValue {
    fn to_json(&self) -> Value {
        match self {
            KeyValue::Text(s) => Value::String(s.clone()),
            KeyValue::Integer(n) => Value::from(*n),
            KeyValue::Boolean(b) => Value::Bool(*b),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub key: Key,
    pub op: FilterOp,
    /// One value; several for `in`.
    pub values: Vec<KeyValue>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortKey {
    pub key: Key,
    pub descending: bool,
}

/// Where the previous page ended: its last record's sort-key values (`None`: missing) and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct After {
    pub values: Vec<Option<KeyValue>>,
    pub id: RecordId,
}

/// One page of a collection's records, as the store runs it: `filters` ANDed, ordered by
/// `sort` then id ascending, starting after `after`, at most `limit` rows, drafts only when
/// `drafts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordQuery {
    pub filters: Vec<Filter>,
    pub sort: Vec<SortKey>,
    pub after: Option<After>,
    pub limit: u32,
    pub drafts: bool,
}

/// A `filter[field][op]=value` parameter as received (`op` absent for `filter[field]=…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFilter {
    /// The parameter's name, echoed in errors.
    pub parameter: String,
    pub field: String,
    pub op: Option<String>,
    pub value: String,
}

/// A record list request's parameters, as received.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListRequest {
    pub limit: u32,
    pub cursor: Option<String>,
    pub sort: Option<String>,
    pub fields: Option<String>,
    pub filters: Vec<RawFilter>,
}

/// A request resolved against a schema: the query, the `sort` text its cursors are bound to,
/// and the projection (`None`: every readable field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedList {
    pub query: RecordQuery,
    pub sort_text: String,
    pub projection: Option<BTreeSet<String>>,
}

/// Problems found while resolving: 422s and 403s, reported together by kind.
#[derive(Default)]
struct Problems {
    invalid: Vec<FieldError>,
    unreadable: Vec<FieldError>,
}

impl Problems {
    fn invalid(&mut self, parameter: &str, message: impl Into<String>) {
        self.invalid.push(FieldError::new(parameter, message));
    }

    fn into_result(self) -> Result<()> {
        if !self.invalid.is_empty() {
            Err(Error::Validation(self.invalid))
        } else if !self.unreadable.is_empty() {
            Err(Error::FieldsNotReadable(self.unreadable))
        } else {
            Ok(())
        }
    }
}

/// What a name used in `filter`, `sort` or `fields` refers to.
enum Target<'a> {
    Column(Column),
    Field(&'a super::model::Field),
}

/// Resolves `name` for `parameter`, recording why it cannot be used (unknown, unreadable, or
/// encrypted when `compared`).
fn target<'a>(
    schema: &'a Collection,
    readable: &impl Fn(&str) -> bool,
    name: &str,
    parameter: &str,
    compared: bool,
    problems: &mut Problems,
) -> Option<Target<'a>> {
    if let Some(column) = Column::named(name) {
        return Some(Target::Column(column));
    }
    let Some(field) = schema.field(name) else {
        problems.invalid(
            parameter,
            format!("the collection has no field named {name}"),
        );
        return None;
    };
    if !readable(name) {
        problems.unreadable.push(FieldError::new(
            parameter,
            format!("you may not read the field {name}"),
        ));
        return None;
    }
    if compared && field.encrypted {
        problems.invalid(
            parameter,
            format!("{name} is encrypted: encrypted fields cannot be filtered or sorted"),
        );
        return None;
    }
    Some(Target::Field(field))
}

/// The key of a field, or `None` for the types lists cannot compare (json, file).
fn field_key(field: &super::model::Field) -> Option<(Key, &'static [FilterOp])> {
    let (kind, ops) = match field.kind {
        FieldType::Text => (KeyKind::Text, TEXT_OPS),
        FieldType::Integer => (KeyKind::Integer, ORDERED),
        FieldType::Decimal => (KeyKind::Decimal, ORDERED),
        FieldType::Date => (KeyKind::Text, ORDERED),
        FieldType::Datetime => (KeyKind::Datetime, ORDERED),
        FieldType::Boolean => (KeyKind::Boolean, BOOLEAN_OPS),
        FieldType::Enum | FieldType::Relation => (KeyKind::Text, EQUALITY),
        FieldType::Tags => (KeyKind::Tags, TAGS_OPS),
        FieldType::Json | FieldType::File => return None,
    };
    let key = Key {
        source: KeySource::Field(field.name.clone()),
        kind,
    };
    Some((key, ops))
}

fn column_key(column: Column) -> Key {
    Key {
        source: KeySource::Column(column),
        kind: column.kind(),
    }
}

/// One filter value in the key's stored form, or why it is refused.
fn filter_value(target: &Target<'_>, op: FilterOp, raw: &str) -> Result<KeyValue, String> {
    match target {
        Target::Column(column) => column_value(*column, raw),
        Target::Field(field) => match field.kind {
            FieldType::Text if op == FilterOp::Contains => {
                if raw.chars().count() > TEXT_MAX {
                    Err(format!("must be at most {TEXT_MAX} characters"))
                } else {
                    Ok(KeyValue::Text(raw.to_owned()))
                }
            }
            FieldType::Tags => {
                let len = raw.chars().count();
                if len == 0 || len > TAG_MAX || raw.chars().any(char::is_control) {
                    Err(format!(
                        "must be a tag of 1 to {TAG_MAX} characters, without control characters"
                    ))
                } else {
                    Ok(KeyValue::Text(raw.to_owned()))
                }
            }
            FieldType::Integer => raw
                .parse::<i64>()
                .map(KeyValue::Integer)
                .map_err(|_| "must be a whole number".to_owned()),
            FieldType::Boolean => match raw {
                "true" => Ok(KeyValue::Boolean(true)),
                "false" => Ok(KeyValue::Boolean(false)),
                _ => Err("must be true or false".to_owned()),
            },
            _ => match normalize(field, &Value::String(raw.to_owned()))? {
                Value::String(s) => Ok(KeyValue::Text(s)),
                _ => Err("cannot be compared".to_owned()),
            },
        },
    }
}

fn column_value(column: Column, raw: &str) -> Result<KeyValue, String> {
    match column {
        Column::Id => RecordId::parse(raw)
            .map(|id| KeyValue::Text(id.to_string()))
            .ok_or_else(|| "must be a record id (rec_…)".to_owned()),
        Column::Status => RecordStatus::parse(raw)
            .map(|s| KeyValue::Text(s.as_str().to_owned()))
            .ok_or_else(|| "must be draft or published".to_owned()),
        Column::CreatedAt | Column::UpdatedAt | Column::PublishedAt => {
            instant(raw).map(KeyValue::Text).ok_or_else(|| {
                "must be an RFC 3339 date-time with an offset, such as 2026-11-22T09:30:00Z"
                    .to_owned()
            })
        }
        Column::CreatedBy | Column::UpdatedBy => {
            if raw.is_empty() || raw.len() > 64 || !raw.bytes().all(|b| b.is_ascii_graphic()) {
                Err("must be a user or API key id".to_owned())
            } else {
                Ok(KeyValue::Text(raw.to_owned()))
            }
        }
    }
}

/// An RFC 3339 instant in the one UTC form records store.
fn instant(raw: &str) -> Option<String> {
    OffsetDateTime::parse(raw, &Rfc3339).ok().and_then(utc_text)
}

/// RFC 3339 in UTC (`Z`) with no trailing zeros in the fraction: the form datetime fields are
/// stored in and the SQLite driver writes columns in, so equal instants are equal strings and
/// order as strings once the `Z` is dropped.
fn utc_text(t: OffsetDateTime) -> Option<String> {
    t.to_offset(time::UtcOffset::UTC).format(&Rfc3339).ok()
}

/// Resolves `request` against `schema`, with `readable` telling which fields the caller may
/// read. Every problem is reported at once, each naming its parameter: 422 for malformed,
/// unknown, uncomparable or encrypted, else 403 for unreadable.
pub fn resolve(
    schema: &Collection,
    readable: impl Fn(&str) -> bool,
    open_cursor: impl Fn(&str) -> Option<Vec<u8>>,
    drafts: bool,
    request: &ListRequest,
) -> Result<ResolvedList> {
    let mut problems = Problems::default();

    if request.filters.len() > FILTERS_MAX {
        problems.invalid("filter", format!("at most {FILTERS_MAX} filters"));
    }
    let mut filters = Vec::with_capacity(request.filters.len());
    for raw in &request.filters {
        let p = raw.parameter.as_str();
        let Some(op) = raw
            .op
            .as_deref()
            .map_or(Some(FilterOp::Eq), FilterOp::parse)
        else {
            problems.invalid(
                p,
                "the operator must be one of eq, ne, lt, lte, gt, gte, in, contains",
            );
            continue;
        };
        let Some(target) = target(schema, &readable, &raw.field, p, true, &mut problems) else {
            continue;
        };
        let (key, ops) = match &target {
            Target::Column(c) => (column_key(*c), c.ops()),
            Target::Field(f) => match field_key(f) {
                Some(k) => k,
                None => {
                    problems.invalid(p, format!("{} fields cannot be filtered", f.kind.as_str()));
                    continue;
                }
            },
        };
        if !ops.contains(&op) {
            let allowed: Vec<&str> = ops.iter().map(|o| o.as_str()).collect();
            problems.invalid(
                p,
                format!(
                    "{} does not support {}; use one of {}",
                    raw.field,
                    op.as_str(),
                    allowed.join(", ")
                ),
            );
            continue;
        }
        let raws: Vec<&str> = if op == FilterOp::In {
            raw.value.split(',').collect()
        } else {
            vec![raw.value.as_str()]
        };
        if raws.len() > IN_VALUES_MAX {
            problems.invalid(p, format!("at most {IN_VALUES_MAX} values"));
            continue;
        }
        let mut values = Vec::with_capacity(raws.len());
        let mut refused = false;
        for v in raws {
            match filter_value(&target, op, v) {
                Ok(value) => values.push(value),
                Err(message) => {
                    refused = true;
                    problems.invalid(p, message);
                }
            }
        }
        if !refused {
            filters.push(Filter { key, op, values });
        }
    }

    let (sort, sort_text) = resolve_sort(schema, &readable, request.sort.as_deref(), &mut problems);
    let projection = request
        .fields
        .as_deref()
        .map(|fields| resolve_projection(schema, &readable, fields, &mut problems));
    let after = match request.cursor.as_deref() {
        Some(cursor) => {
            match open_cursor(cursor).and_then(|c| decode_cursor(&c, &sort, &sort_text)) {
                Some(after) => Some(after),
                None => {
                    problems.invalid(
                    "cursor",
                    "must be a next_cursor value from a previous page of this list, with the same sort",
                );
                    None
                }
            }
        }
        None => None,
    };
    problems.into_result()?;
    Ok(ResolvedList {
        query: RecordQuery {
            filters,
            sort,
            after,
            limit: request.limit,
            drafts,
        },
        sort_text,
        projection,
    })
}

/// `sort=field,-other`: the keys (cut after `id`, which is unique) and their canonical text.
fn resolve_sort(
    schema: &Collection,
    readable: &impl Fn(&str) -> bool,
    sort: Option<&str>,
    problems: &mut Problems,
) -> (Vec<SortKey>, String) {
    let Some(sort) = sort.filter(|s| !s.is_empty()) else {
        return (Vec::new(), String::new());
    };
    let items: Vec<&str> = sort.split(',').collect();
    if items.len() > SORT_KEYS_MAX {
        problems.invalid("sort", format!("at most {SORT_KEYS_MAX} keys"));
        return (Vec::new(), String::new());
    }
    let mut keys: Vec<SortKey> = Vec::new();
    let mut names: Vec<&str> = Vec::new();
    for item in items {
        let (descending, name) = match item.strip_prefix('-') {
            Some(name) => (true, name),
            None => (false, item),
        };
        if names.contains(&name) {
            problems.invalid("sort", format!("{name} appears twice"));
            continue;
        }
        names.push(name);
        let Some(target) = target(schema, readable, name, "sort", true, problems) else {
            continue;
        };
        let key = match target {
            Target::Column(c) => column_key(c),
            Target::Field(f) => match field_key(f) {
                Some((key, _)) if key.kind != KeyKind::Tags => key,
                _ => {
                    problems.invalid(
                        "sort",
                        format!("{} fields cannot be sorted", f.kind.as_str()),
                    );
                    continue;
                }
            },
        };
        if keys
            .iter()
            .any(|k| k.key.source == KeySource::Column(Column::Id))
        {
            continue;
        }
        keys.push(SortKey { key, descending });
    }
    let text = keys
        .iter()
        .map(|k| {
            let name = match &k.key.source {
                KeySource::Field(f) => f.as_str(),
                KeySource::Column(c) => c.as_str(),
            };
            if k.descending {
                format!("-{name}")
            } else {
                name.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(",");
    (keys, text)
}

/// `fields=a,b`: the record fields to return (meta columns are always returned).
fn resolve_projection(
    schema: &Collection,
    readable: &impl Fn(&str) -> bool,
    fields: &str,
    problems: &mut Problems,
) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for name in fields.split(',').filter(|n| !n.is_empty()) {
        if let Some(Target::Field(f)) = target(schema, readable, name, "fields", false, problems) {
            out.insert(f.name.clone());
        }
    }
    out
}

/// The position after `last`, `{s: sort, v: values, i: id}` as JSON: what a cursor carries
/// (sealed by the caller, since sort values may be personal and cursors travel in URLs).
pub fn encode_cursor(sort: &[SortKey], sort_text: &str, last: &Record) -> Vec<u8> {
    let values: Vec<Value> = sort
        .iter()
        .map(|k| key_value(&k.key, last).map_or(Value::Null, |v| v.to_json()))
        .collect();
    json!({"s": sort_text, "v": values, "i": last.id.as_str()})
        .to_string()
        .into_bytes()
}

/// A record's value for a key, as the store compares it.
fn key_value(key: &Key, record: &Record) -> Option<KeyValue> {
    match &key.source {
        KeySource::Column(c) => c.value(record),
        KeySource::Field(f) => match record.data.get(f)? {
            Value::String(s) => Some(KeyValue::Text(s.clone())),
            Value::Bool(b) => Some(KeyValue::Boolean(*b)),
            Value::Number(n) => n.as_i64().map(KeyValue::Integer),
            _ => None,
        },
    }
}

/// The position a cursor names, if it was made for this sort and each value fits its key
/// (values are bound as parameters, but a malformed decimal or instant must not reach a cast).
fn decode_cursor(bytes: &[u8], sort: &[SortKey], sort_text: &str) -> Option<After> {
    let body: Value = serde_json::from_slice(bytes).ok()?;
    if body.get("s")?.as_str()? != sort_text {
        return None;
    }
    let id = RecordId::parse(body.get("i")?.as_str()?)?;
    let raw = body.get("v")?.as_array()?;
    if raw.len() != sort.len() {
        return None;
    }
    let mut values = Vec::with_capacity(raw.len());
    for (key, value) in sort.iter().zip(raw) {
        values.push(match (key.key.kind, value) {
            (_, Value::Null) => None,
            (KeyKind::Integer, Value::Number(n)) => Some(KeyValue::Integer(n.as_i64()?)),
            (KeyKind::Boolean, Value::Bool(b)) => Some(KeyValue::Boolean(*b)),
            (KeyKind::Decimal, Value::String(s)) => {
                super::values::decimal(&Value::String(s.clone())).ok()?;
                Some(KeyValue::Text(s.clone()))
            }
            (KeyKind::Datetime, Value::String(s)) => Some(KeyValue::Text(instant(s)?)),
            (KeyKind::Text, Value::String(s)) if s.len() <= TEXT_MAX * 4 => {
                Some(KeyValue::Text(s.clone()))
            }
            _ => return None,
        });
    }
    Some(After { values, id })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::Map;

    use super::*;
    use crate::collections::model::{Field, FieldOptions};
    use crate::ids::{CollectionId, WorkspaceId};

    fn field(name: &str, kind: FieldType, encrypted: bool) -> Field {
        Field {
            name: name.into(),
            kind,
            required: false,
            unique: false,
            pii: false,
            encrypted,
            options: FieldOptions {
                values: (kind == FieldType::Enum).then(|| vec!["open".into(), "done".into()]),
                collection: None,
            },
        }
    }

    fn schema() -> Collection {
        use FieldType as T;
        Collection {
            id: CollectionId::generate(),
            workspace_id: WorkspaceId::generate(),
            name: "tasks".into(),
            fields: vec![
                field("title", T::Text, false),
                field("qty", T::Integer, false),
                field("price", T::Decimal, false),
                field("done", T::Boolean, false),
                field("due", T::Datetime, false),
                field("state", T::Enum, false),
                field("labels", T::Tags, false),
                field("meta", T::Json, false),
                field("ssn", T::Text, true),
                field("secret", T::Text, false),
            ],
            version: 1,
            created_at: OffsetDateTime::UNIX_EPOCH,
            updated_at: OffsetDateTime::UNIX_EPOCH,
        }
    }

    fn filter(field: &str, op: Option<&str>, value: &str) -> RawFilter {
        let parameter = match op {
            Some(op) => format!("filter[{field}][{op}]"),
            None => format!("filter[{field}]"),
        };
        RawFilter {
            parameter,
            field: field.into(),
            op: op.map(str::to_owned),
            value: value.into(),
        }
    }

    /// Cursors in clear base64url (the service seals them).
    fn run(request: &ListRequest) -> Result<ResolvedList> {
        let open = |c: &str| URL_SAFE_NO_PAD.decode(c).ok();
        resolve(&schema(), |f| f != "secret", open, false, request)
    }

    /// The parameters named by a refusal, and whether it was a 403.
    fn refused(request: &ListRequest) -> (Vec<String>, Vec<String>, bool) {
        match run(request) {
            Err(Error::Validation(e)) => (
                e.iter().map(|f| f.pointer.clone()).collect(),
                e.iter().map(|f| f.message.clone()).collect(),
                false,
            ),
            Err(Error::FieldsNotReadable(e)) => (
                e.iter().map(|f| f.pointer.clone()).collect(),
                e.iter().map(|f| f.message.clone()).collect(),
                true,
            ),
            other => panic!("{request:?} was not refused: {other:?}"),
        }
    }

    #[test]
    fn filters_resolve_to_typed_values_in_stored_form() {
        let request = ListRequest {
            limit: 20,
            filters: vec![
                filter("qty", Some("gte"), "-5"),
                filter("price", Some("lt"), "-0.00"),
                filter("due", Some("gt"), "2026-01-01T01:00:00.500+01:00"),
                filter("state", Some("in"), "open,done"),
                filter("done", None, "true"),
                filter("created_at", Some("lte"), "2026-01-01T00:00:00Z"),
            ],
            ..ListRequest::default()
        };
        let q = run(&request).unwrap().query;
        let values: Vec<Vec<KeyValue>> = q.filters.iter().map(|f| f.values.clone()).collect();
        assert_eq!(
            values,
            vec![
                vec![KeyValue::Integer(-5)],
                vec![KeyValue::Text("0.00".into())],
                vec![KeyValue::Text("2026-01-01T00:00:00.5Z".into())],
                vec![KeyValue::Text("open".into()), KeyValue::Text("done".into())],
                vec![KeyValue::Boolean(true)],
                vec![KeyValue::Text("2026-01-01T00:00:00Z".into())],
            ]
        );
        assert_eq!(q.filters[4].op, FilterOp::Eq);
        assert_eq!(
            q.filters[5].key.source,
            KeySource::Column(Column::CreatedAt)
        );
    }

    #[test]
    fn every_problem_is_named_by_its_parameter() {
        let request = ListRequest {
            limit: 20,
            filters: vec![
                filter("nope", Some("eq"), "x"),
                filter("qty", Some("gt"), "abc"),
                filter("done", Some("lt"), "true"),
                filter("meta", Some("eq"), "{}"),
                filter("ssn", Some("eq"), "123"),
                filter("state", Some("eq"), "Open"),
                filter("qty", Some("like"), "1"),
                filter("id", Some("eq"), "usr_x"),
            ],
            sort: Some("labels".into()),
            fields: Some("ghost".into()),
            cursor: Some("not-a-cursor".into()),
        };
        let (params, messages, forbidden) = refused(&request);
        assert!(!forbidden);
        assert_eq!(
            params,
            [
                "filter[nope][eq]",
                "filter[qty][gt]",
                "filter[done][lt]",
                "filter[meta][eq]",
                "filter[ssn][eq]",
                "filter[state][eq]",
                "filter[qty][like]",
                "filter[id][eq]",
                "sort",
                "fields",
                "cursor",
            ]
        );
        assert!(messages[4].contains("encrypted"), "{}", messages[4]);
        let (params, messages, _) = refused(&ListRequest {
            sort: Some("-ssn".into()),
            ..ListRequest::default()
        });
        assert_eq!(params, ["sort"]);
        assert!(messages[0].contains("encrypted"));
        let (params, _, _) = refused(&ListRequest {
            sort: Some("title,qty,price,due".into()),
            ..ListRequest::default()
        });
        assert_eq!(params, ["sort"]);
    }

    #[test]
    fn unreadable_fields_are_refused_with_403_for_filter_sort_and_fields() {
        for request in [
            ListRequest {
                filters: vec![filter("secret", None, "x")],
                ..ListRequest::default()
            },
            ListRequest {
                sort: Some("-secret".into()),
                ..ListRequest::default()
            },
            ListRequest {
                fields: Some("title,secret".into()),
                ..ListRequest::default()
            },
        ] {
            let (params, _, forbidden) = refused(&request);
            assert!(forbidden, "{request:?}");
            assert_eq!(params.len(), 1);
        }
        // Encrypted fields may be selected, only not compared.
        let ok = run(&ListRequest {
            fields: Some("ssn,title".into()),
            ..ListRequest::default()
        })
        .unwrap();
        assert_eq!(
            ok.projection.unwrap().into_iter().collect::<Vec<_>>(),
            ["ssn", "title"]
        );
    }

    #[test]
    fn a_cursor_continues_only_the_sort_it_was_made_for() {
        let sorted = |sort: &str| ListRequest {
            limit: 20,
            sort: Some(sort.into()),
            ..ListRequest::default()
        };
        let first = run(&sorted("-price,due")).unwrap();
        assert_eq!(first.sort_text, "-price,due");
        let mut data = Map::new();
        data.insert("price".into(), json!("12.50"));
        let record = Record {
            id: RecordId::generate(),
            workspace_id: WorkspaceId::generate(),
            collection_id: CollectionId::generate(),
            status: RecordStatus::Published,
            data,
            version: 1,
            created_at: OffsetDateTime::UNIX_EPOCH,
            updated_at: OffsetDateTime::UNIX_EPOCH,
            published_at: None,
            created_by: "usr_x".into(),
            updated_by: "usr_x".into(),
        };
        let cursor =
            URL_SAFE_NO_PAD.encode(encode_cursor(&first.query.sort, &first.sort_text, &record));
        let mut next = sorted("-price,due");
        next.cursor = Some(cursor.clone());
        let after = run(&next).unwrap().query.after.unwrap();
        assert_eq!(
            after,
            After {
                values: vec![Some(KeyValue::Text("12.50".into())), None],
                id: record.id.clone(),
            }
        );
        let mut other = sorted("price,due");
        other.cursor = Some(cursor);
        assert_eq!(refused(&other).0, ["cursor"]);
        // A forged cursor with a malformed decimal never reaches a cast.
        let forged = URL_SAFE_NO_PAD.encode(
            json!({"s": "-price,due", "v": ["1e9", null], "i": record.id.as_str()}).to_string(),
        );
        let mut forged_request = sorted("-price,due");
        forged_request.cursor = Some(forged);
        assert_eq!(refused(&forged_request).0, ["cursor"]);
    }
}
