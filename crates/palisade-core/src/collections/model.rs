//! Collections (DAT-1): a workspace's typed schemas for records.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::ids::{CollectionId, WorkspaceId};

/// Most fields a collection may have.
pub const FIELDS_MAX: usize = 200;
/// Most values an `enum` field may list.
pub const ENUM_VALUES_MAX: usize = 500;

/// Names every record has; no field may take them.
pub const RESERVED_FIELD_NAMES: [&str; 9] = [
    "id",
    "collection",
    "status",
    "version",
    "created_at",
    "updated_at",
    "created_by",
    "updated_by",
    "published_at",
];

/// A field's type. Values on the wire: `decimal` is a string (exact), `date` is `YYYY-MM-DD`,
/// `datetime` is RFC 3339 (normalised to UTC), `tags` a list of strings, `relation` a record
/// id of `options.collection`, `file` is reserved for attachments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    Text,
    Integer,
    Decimal,
    Boolean,
    Date,
    Datetime,
    Enum,
    Json,
    Relation,
    Tags,
    File,
}

impl FieldType {
    pub const ALL: [FieldType; 11] = [
        FieldType::Text,
        FieldType::Integer,
        FieldType::Decimal,
        FieldType::Boolean,
        FieldType::Date,
        FieldType::Datetime,
        FieldType::Enum,
        FieldType::Json,
        FieldType::Relation,
        FieldType::Tags,
        FieldType::File,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::Text => "text",
            FieldType::Integer => "integer",
            FieldType::Decimal => "decimal",
            FieldType::Boolean => "boolean",
            FieldType::Date => "date",
            FieldType::Datetime => "datetime",
            FieldType::Enum => "enum",
            FieldType::Json => "json",
            FieldType::Relation => "relation",
            FieldType::Tags => "tags",
            FieldType::File => "file",
        }
    }

    pub fn parse(text: &str) -> Option<FieldType> {
        FieldType::ALL.into_iter().find(|t| t.as_str() == text)
    }

    /// Whether values of this type can be compared for `unique` (one value, exact equality).
    pub fn can_be_unique(self) -> bool {
        matches!(
            self,
            FieldType::Text
                | FieldType::Integer
                | FieldType::Decimal
                | FieldType::Date
                | FieldType::Datetime
                | FieldType::Enum
        )
    }

    /// Whether values of this type can be stored encrypted: scalars and JSON, not the links
    /// (relations, tags, files) that lists and audit entries must read.
    pub fn can_be_encrypted(self) -> bool {
        !matches!(
            self,
            FieldType::Relation | FieldType::Tags | FieldType::File | FieldType::Boolean
        )
    }
}

/// Type-specific settings: `values` for `enum`, `collection` for `relation` (the target
/// collection's id; its name on the wire).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collection: Option<CollectionId>,
}

/// One field of a collection, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Field {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: FieldType,
    pub required: bool,
    pub unique: bool,
    /// Personal data: values enter audit entries only as commitments (AUDIT-SPEC §5).
    pub pii: bool,
    /// Stored AES-256-GCM-encrypted under the workspace's data key; never filterable.
    pub encrypted: bool,
    #[serde(default)]
    pub options: FieldOptions,
}

/// A workspace's collection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collection {
    pub id: CollectionId,
    pub workspace_id: WorkspaceId,
    pub name: String,
    pub fields: Vec<Field>,
    /// Grows by one with every schema change.
    pub version: i64,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

impl Collection {
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// The collections this one's relation fields point to.
    pub fn relation_targets(&self) -> impl Iterator<Item = &CollectionId> {
        self.fields
            .iter()
            .filter_map(|f| f.options.collection.as_ref())
    }
}

/// Options as the caller sends them: a relation names its target collection by name.
#[derive(Debug, Clone, Default)]
pub struct FieldOptionsInput {
    pub values: Option<Vec<String>>,
    pub collection: Option<String>,
}

/// A field as the caller sends it.
#[derive(Debug, Clone)]
pub struct FieldInput {
    pub name: String,
    pub kind: String,
    pub required: bool,
    pub unique: bool,
    pub pii: bool,
    pub encrypted: bool,
    pub options: FieldOptionsInput,
}

/// A new collection.
#[derive(Debug, Clone)]
pub struct NewCollection {
    pub name: String,
    pub fields: Vec<FieldInput>,
}

/// A change to one existing field: a new name, flags, or options. Its type and `encrypted`
/// stay as created.
#[derive(Debug, Clone, Default)]
pub struct FieldChange {
    pub name: String,
    pub rename_to: Option<String>,
    pub required: Option<bool>,
    pub unique: Option<bool>,
    pub pii: Option<bool>,
    pub options: Option<FieldOptionsInput>,
}

/// `PATCH …/collections/{collection}`: applied in order — renames and flag changes, removals,
/// then additions — all or nothing.
#[derive(Debug, Clone, Default)]
pub struct CollectionPatch {
    pub name: Option<String>,
    pub add_fields: Vec<FieldInput>,
    pub update_fields: Vec<FieldChange>,
    pub remove_fields: Vec<String>,
}

/// Whether a record is visible to readers without `records.read_draft` (DAT-3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordStatus {
    Draft,
    Published,
}

impl RecordStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordStatus::Draft => "draft",
            RecordStatus::Published => "published",
        }
    }

    pub fn parse(text: &str) -> Option<RecordStatus> {
        [RecordStatus::Draft, RecordStatus::Published]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// A record as stored: `data` holds each field's stored form (encrypted fields as sealed,
/// base64url text); absent fields have no value.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub id: crate::ids::RecordId,
    pub workspace_id: WorkspaceId,
    pub collection_id: CollectionId,
    pub status: RecordStatus,
    pub data: serde_json::Map<String, serde_json::Value>,
    /// Starts at 1 and grows by one with every change; the ETag.
    pub version: i64,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub published_at: Option<OffsetDateTime>,
    /// Actor ids (a user or an API key).
    pub created_by: String,
    pub updated_by: String,
}
