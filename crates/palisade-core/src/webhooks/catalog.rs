//! The event catalog (WHK-1): every event type an endpoint may subscribe to, who may receive it
//! and the JSON Schema of its `data`. Every delivery's body is
//! `{"type", "timestamp", "workspace_id", "data"}`.

use serde_json::{Value, json};

use crate::acl::{Grants, Permission};

/// What an event is about, which decides who may receive it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Needs `records.read` on the record's collection (`records.read_draft` for a draft); the
    /// payload shows only the fields the endpoint may read.
    Record,
    /// Needs `records.read` on the collection or `collections.manage`; unreadable fields are
    /// left out of the schema unless the endpoint may manage collections.
    Collection,
    Member,
    ApiKey,
    /// Needs `audit.read`.
    Checkpoint,
}

#[derive(Debug)]
pub struct EventType {
    pub name: &'static str,
    pub description: &'static str,
    pub family: Family,
}

pub const EVENT_TYPES: &[EventType] = &[
    EventType {
        name: "record.created",
        description: "A record was created.",
        family: Family::Record,
    },
    EventType {
        name: "record.updated",
        description: "A record's fields, status or tags changed.",
        family: Family::Record,
    },
    EventType {
        name: "record.deleted",
        description: "A record was deleted.",
        family: Family::Record,
    },
    EventType {
        name: "collection.created",
        description: "A collection was defined.",
        family: Family::Collection,
    },
    EventType {
        name: "collection.updated",
        description: "A collection's schema changed.",
        family: Family::Collection,
    },
    EventType {
        name: "collection.deleted",
        description: "A collection was deleted with its records.",
        family: Family::Collection,
    },
    EventType {
        name: "member.added",
        description: "Someone joined the workspace.",
        family: Family::Member,
    },
    EventType {
        name: "member.updated",
        description: "A member's role or active state changed.",
        family: Family::Member,
    },
    EventType {
        name: "member.removed",
        description: "A member was removed or left.",
        family: Family::Member,
    },
    EventType {
        name: "api_key.created",
        description: "An API key was created (never its secret).",
        family: Family::ApiKey,
    },
    EventType {
        name: "api_key.rotated",
        description: "An API key's secret was replaced.",
        family: Family::ApiKey,
    },
    EventType {
        name: "api_key.revoked",
        description: "An API key was revoked.",
        family: Family::ApiKey,
    },
    EventType {
        name: "audit.checkpoint.signed",
        description: "The workspace's audit log has a new signed checkpoint (latest or daily): keep it as an independent witness of the log's state (AUDIT-SPEC).",
        family: Family::Checkpoint,
    },
];

pub fn find(name: &str) -> Option<&'static EventType> {
    EVENT_TYPES.iter().find(|t| t.name == name)
}

/// The record's own attributes in a record payload; every other member is a field.
pub const RECORD_ATTRIBUTES: &[&str] = &[
    "id",
    "collection",
    "status",
    "version",
    "created_at",
    "updated_at",
    "published_at",
    "created_by",
    "updated_by",
];

impl Family {
    /// Whether an endpoint with `grants` may receive an event of this family about
    /// `collection` (`draft`: a draft record).
    pub fn may_receive(self, grants: &Grants, collection: Option<&str>, draft: bool) -> bool {
        match self {
            Family::Record => collection.is_some_and(|c| {
                let on = grants.on_collection(c);
                on.contains(Permission::RecordsRead)
                    && (!draft || on.contains(Permission::RecordsReadDraft))
            }),
            Family::Collection => {
                grants.permissions().contains(Permission::CollectionsManage)
                    || collection
                        .is_some_and(|c| grants.on_collection(c).contains(Permission::RecordsRead))
            }
            Family::Member | Family::ApiKey | Family::Checkpoint => self
                .needs()
                .is_some_and(|p| grants.permissions().contains(p)),
        }
    }

    /// The permission a workspace-wide family needs (record and collection events depend on
    /// the collection).
    pub fn needs(self) -> Option<Permission> {
        match self {
            Family::Record | Family::Collection => None,
            Family::Member => Some(Permission::MembersRead),
            Family::ApiKey => Some(Permission::ApiKeysManage),
            Family::Checkpoint => Some(Permission::AuditRead),
        }
    }

    /// `data` as an endpoint with `grants` may see it: unreadable fields left out.
    pub fn filter(self, grants: &Grants, collection: Option<&str>, data: &mut Value) {
        let Some(collection) = collection else {
            return;
        };
        match self {
            Family::Record => {
                if let Some(map) = data.as_object_mut() {
                    map.retain(|k, _| {
                        RECORD_ATTRIBUTES.contains(&k.as_str()) || grants.field(collection, k).read
                    });
                }
            }
            Family::Collection => {
                if grants.permissions().contains(Permission::CollectionsManage) {
                    return;
                }
                if let Some(fields) = data.get_mut("fields").and_then(Value::as_array_mut) {
                    fields.retain(|f| {
                        f.get("name")
                            .and_then(Value::as_str)
                            .is_some_and(|name| grants.field(collection, name).read)
                    });
                }
            }
            Family::Member | Family::ApiKey | Family::Checkpoint => {}
        }
    }

    /// The JSON Schema of this family's `data`.
    pub fn schema(self) -> Value {
        let time = json!({"type": "string", "format": "date-time"});
        let nullable_time = json!({"type": ["string", "null"], "format": "date-time"});
        match self {
            Family::Record => json!({
                "type": "object",
                "description": "The record as the endpoint's creator may read it: its attributes, and each readable field as a member (encrypted fields opened). `record.deleted` carries only `id`, `collection` and `version`.",
                "required": ["id", "collection"],
                "properties": {
                    "id": {"type": "string"},
                    "collection": {"type": "string"},
                    "status": {"enum": ["draft", "published"]},
                    "version": {"type": "integer"},
                    "created_at": time,
                    "updated_at": time,
                    "published_at": nullable_time,
                    "created_by": {"type": "string"},
                    "updated_by": {"type": "string"},
                },
                "additionalProperties": true,
            }),
            Family::Collection => json!({
                "type": "object",
                "required": ["id", "name"],
                "properties": {
                    "id": {"type": "string"},
                    "name": {"type": "string"},
                    "version": {"type": "integer"},
                    "fields": {"type": "array", "items": {
                        "type": "object",
                        "required": ["name", "type"],
                        "properties": {
                            "name": {"type": "string"},
                            "type": {"type": "string"},
                            "required": {"type": "boolean"},
                            "unique": {"type": "boolean"},
                            "pii": {"type": "boolean"},
                            "encrypted": {"type": "boolean"},
                            "options": {"type": "object"},
                        },
                    }},
                    "created_at": time,
                    "updated_at": time,
                },
            }),
            Family::Member => json!({
                "type": "object",
                "description": "No email or name: payloads carry ids, not personal data.",
                "required": ["id", "user_id"],
                "properties": {
                    "id": {"type": "string"},
                    "user_id": {"type": "string"},
                    "role": {"enum": ["owner", "admin", "member", "billing"]},
                    "custom_role": {"type": ["string", "null"]},
                    "active": {"type": "boolean"},
                },
            }),
            Family::ApiKey => json!({
                "type": "object",
                "description": "Never the key's secret.",
                "required": ["id"],
                "properties": {
                    "id": {"type": "string"},
                    "name": {"type": "string"},
                    "prefix": {"type": "string"},
                    "scopes": {"type": "array", "items": {"type": "string"}},
                    "expires_at": nullable_time,
                },
            }),
            Family::Checkpoint => json!({
                "type": "object",
                "description": "A signed checkpoint of the workspace's audit log, as GET /audit/checkpoint returns it.",
                "required": ["origin", "kind", "tree_size", "root", "jws", "note"],
                "properties": {
                    "origin": {"type": "string"},
                    "kind": {"enum": ["latest", "daily"]},
                    "date": {"type": ["string", "null"], "description": "The UTC day of a daily checkpoint."},
                    "tree_size": {"type": "integer"},
                    "root": {"type": "string", "description": "Base64 Merkle root."},
                    "signed_at": time,
                    "jws": {"type": "string", "description": "The checkpoint as a JWS (EdDSA), verifiable with the log's JWKS."},
                    "note": {"type": "string", "description": "The checkpoint as a signed note (C2SP tlog-checkpoint)."},
                },
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::{FieldGrant, Role, RoleGrants};

    #[test]
    fn names_are_unique_and_found() {
        for t in EVENT_TYPES {
            assert_eq!(find(t.name).map(|f| f.name), Some(t.name));
        }
        let mut names: Vec<_> = EVENT_TYPES.iter().map(|t| t.name).collect();
        names.dedup();
        assert_eq!(names.len(), EVENT_TYPES.len());
        assert!(find("record.nope").is_none());
    }

    #[test]
    fn payloads_follow_the_endpoints_read_grants() {
        let custom = RoleGrants {
            permissions: Role::Member.permissions(),
            fields: vec![FieldGrant {
                collection: "notes".into(),
                field: "title".into(),
                read: true,
                write: false,
            }],
        };
        let narrowed = Grants::resolve(Role::Member, Some(&custom), &[]);
        let mut data = json!({"id": "rec_1", "collection": "notes", "title": "t", "secret": "s"});
        Family::Record.filter(&narrowed, Some("notes"), &mut data);
        assert_eq!(
            data,
            json!({"id": "rec_1", "collection": "notes", "title": "t"})
        );

        let billing = Grants::resolve(Role::Billing, None, &[]);
        assert!(!Family::Record.may_receive(&billing, Some("notes"), false));
        assert!(!Family::Member.may_receive(&billing, None, false));
        let owner = Grants::resolve(Role::Owner, None, &[]);
        assert!(Family::Record.may_receive(&owner, Some("notes"), true));
        assert!(Family::ApiKey.may_receive(&owner, None, false));
    }
}
