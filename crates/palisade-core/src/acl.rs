//! Roles, the permission catalog and the one authorization entry point (ACL-1, ACL-2, ACL-6).
//! Enum roles map to fixed permission sets: the baseline that nothing may exceed.

use crate::error::{Error, Result};
use crate::tenancy::TenantScope;

/// A member's enum role in a workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Owner,
    Admin,
    Member,
    Billing,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Owner, Role::Admin, Role::Member, Role::Billing];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
            Role::Billing => "billing",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == text)
    }

    /// The fixed permission set of this role (ACL-1): the baseline nothing may exceed.
    pub fn grants(self, permission: Permission) -> bool {
        use Permission as P;
        match self {
            Role::Owner => true,
            Role::Admin => !matches!(
                permission,
                P::WorkspaceDelete | P::BillingManage | P::OwnersManage | P::ChildrenManage
            ),
            Role::Member => matches!(
                permission,
                P::WorkspaceRead
                    | P::MembersRead
                    | P::RecordsRead
                    | P::RecordsReadDraft
                    | P::RecordsWrite
                    | P::QuotasConsume
            ),
            Role::Billing => matches!(
                permission,
                P::WorkspaceRead | P::BillingRead | P::BillingManage
            ),
        }
    }

    /// The baseline as a set.
    pub fn permissions(self) -> PermissionSet {
        Permission::ALL
            .iter()
            .copied()
            .filter(|p| self.grants(*p))
            .collect()
    }
}

macro_rules! permissions {
    ($($variant:ident => $key:literal, $meaning:literal;)*) => {
        /// Every permission key, with its meaning (ACL-2). Keys are stable.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Permission { $($variant),* }

        impl Permission {
            pub const ALL: &'static [Permission] = &[$(Permission::$variant),*];

            pub fn parse(key: &str) -> Option<Permission> {
                match key { $($key => Some(Permission::$variant),)* _ => None }
            }

            pub fn key(self) -> &'static str {
                match self { $(Permission::$variant => $key),* }
            }

            pub fn meaning(self) -> &'static str {
                match self { $(Permission::$variant => $meaning),* }
            }
        }
    };
}

permissions! {
    WorkspaceRead => "workspace.read", "See the workspace's settings.";
    WorkspaceUpdate => "workspace.update", "Change the workspace's name, slug, branding, timezone and currency.";
    WorkspaceDelete => "workspace.delete", "Delete the workspace.";
    AuthPolicyManage => "auth_policy.manage", "Change the workspace's auth policy: sign-in methods, session lifetime, password rules, MFA.";
    ChildrenManage => "children.manage", "Create, list, suspend, resume and delete child workspaces (never their data).";
    MembersRead => "members.read", "List members, invitations, teams and custom roles.";
    MembersManage => "members.manage", "Invite, change, deactivate and remove members; manage teams.";
    OwnersManage => "owners.manage", "Make members owners, and change or remove owners.";
    RolesManage => "roles.manage", "Define custom roles (module advanced_rbac).";
    ApiKeysManage => "api_keys.manage", "Create, rotate and revoke API keys.";
    WebhooksManage => "webhooks.manage", "Manage webhook endpoints and deliveries.";
    AuditRead => "audit.read", "Read and export the audit log.";
    AuditWrite => "audit.write", "Append application events to the audit log.";
    RecordsRead => "records.read", "Read published records.";
    RecordsReadDraft => "records.read_draft", "Read draft records too.";
    RecordsWrite => "records.write", "Create, change and delete records.";
    CollectionsManage => "collections.manage", "Define and change collections.";
    QuotasConsume => "quotas.consume", "Spend the workspace's quotas (ai, upload, webhook_ingest) before costly work.";
    BillingRead => "billing.read", "See plan and billing details.";
    BillingManage => "billing.manage", "Change billing details.";
}

/// A set of permissions (there are fewer than 64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PermissionSet(u64);

impl PermissionSet {
    pub const EMPTY: PermissionSet = PermissionSet(0);

    fn bit(p: Permission) -> u64 {
        let index = Permission::ALL.iter().position(|q| *q == p).unwrap_or(63);
        1u64 << index
    }

    pub fn contains(self, p: Permission) -> bool {
        self.0 & Self::bit(p) != 0
    }

    pub fn insert(&mut self, p: Permission) {
        self.0 |= Self::bit(p);
    }

    pub fn union(self, other: PermissionSet) -> PermissionSet {
        PermissionSet(self.0 | other.0)
    }

    pub fn intersection(self, other: PermissionSet) -> PermissionSet {
        PermissionSet(self.0 & other.0)
    }

    /// The members of `self` that `other` lacks.
    pub fn difference(self, other: PermissionSet) -> PermissionSet {
        PermissionSet(self.0 & !other.0)
    }

    pub fn is_subset(self, other: PermissionSet) -> bool {
        self.difference(other).is_empty()
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// In catalog order.
    pub fn iter(self) -> impl Iterator<Item = Permission> {
        Permission::ALL
            .iter()
            .copied()
            .filter(move |p| self.contains(*p))
    }

    pub fn keys(self) -> Vec<&'static str> {
        self.iter().map(Permission::key).collect()
    }
}

impl FromIterator<Permission> for PermissionSet {
    fn from_iter<I: IntoIterator<Item = Permission>>(iter: I) -> Self {
        let mut set = PermissionSet::EMPTY;
        for p in iter {
            set.insert(p);
        }
        set
    }
}

/// Stored and sent as a list of keys, in catalog order.
impl serde::Serialize for PermissionSet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_seq(self.keys())
    }
}

impl<'de> serde::Deserialize<'de> for PermissionSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let keys = Vec::<String>::deserialize(d)?;
        keys.iter()
            .map(|k| {
                Permission::parse(k)
                    .ok_or_else(|| serde::de::Error::custom(format!("unknown permission {k}")))
            })
            .collect()
    }
}

/// The permissions that make sense for one collection (team grants scoped to a collection).
pub const COLLECTION_PERMISSIONS: [Permission; 3] = [
    Permission::RecordsRead,
    Permission::RecordsReadDraft,
    Permission::RecordsWrite,
];

/// Read and write on the fields of one collection, from a custom role (ACL-3). `field` is a
/// field name or `*` for every field of the collection.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FieldGrant {
    pub collection: String,
    pub field: String,
    pub read: bool,
    pub write: bool,
}

/// Permissions a team gives its members (ACL-4): workspace-wide when `collection` is absent,
/// else on that collection only.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TeamGrant {
    pub collection: Option<String>,
    pub permissions: PermissionSet,
}

/// What a custom role contributes when resolving (ACL-3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleGrants {
    pub permissions: PermissionSet,
    pub fields: Vec<FieldGrant>,
}

/// Whether a field may be read and written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldAccess {
    pub read: bool,
    pub write: bool,
}

/// A member's resolved access, computed once per request at the membership check: the enum
/// role is the ceiling, a custom role narrows it, teams add back within it. An API key stores
/// its creator's grants narrowed to its scopes (serialized, as JSON).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Grants {
    role: Role,
    workspace: PermissionSet,
    collections: std::collections::BTreeMap<String, PermissionSet>,
    /// The custom role's field grants by collection; a collection absent here is governed by
    /// the collection-level permissions alone.
    fields: std::collections::BTreeMap<String, Vec<FieldGrant>>,
}

impl Grants {
    /// Whether a team grant or a field grant names `collection`.
    pub fn names_collection(&self, collection: &str) -> bool {
        self.collections.contains_key(collection) || self.fields.contains_key(collection)
    }

    /// Whether a field grant names `field` of `collection`.
    pub fn names_field(&self, collection: &str, field: &str) -> bool {
        self.fields
            .get(collection)
            .is_some_and(|grants| grants.iter().any(|g| g.field == field))
    }

    /// The one place roles, custom roles and team grants combine.
    pub fn resolve(role: Role, custom: Option<&RoleGrants>, teams: &[TeamGrant]) -> Grants {
        let ceiling = role.permissions();
        let mut workspace = custom.map_or(ceiling, |c| c.permissions.intersection(ceiling));
        let mut collections = std::collections::BTreeMap::<String, PermissionSet>::new();
        for grant in teams {
            let given = grant.permissions.intersection(ceiling);
            match &grant.collection {
                None => workspace = workspace.union(given),
                Some(c) => {
                    let slot = collections.entry(c.clone()).or_default();
                    *slot = slot.union(given);
                }
            }
        }
        let mut fields = std::collections::BTreeMap::<String, Vec<FieldGrant>>::new();
        for grant in custom.map(|c| c.fields.as_slice()).unwrap_or_default() {
            fields
                .entry(grant.collection.clone())
                .or_default()
                .push(grant.clone());
        }
        Grants {
            role,
            workspace,
            collections,
            fields,
        }
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// These grants with nothing outside `allowed`, workspace-wide and per collection (an API
    /// key's scopes). Field grants stay: they only ever narrow.
    pub fn restrict(&self, allowed: PermissionSet) -> Grants {
        Grants {
            role: self.role,
            workspace: self.workspace.intersection(allowed),
            collections: self
                .collections
                .iter()
                .map(|(c, p)| (c.clone(), p.intersection(allowed)))
                .filter(|(_, p)| !p.is_empty())
                .collect(),
            fields: self.fields.clone(),
        }
    }

    /// Workspace-wide permissions.
    pub fn permissions(&self) -> PermissionSet {
        self.workspace
    }

    /// Permissions on one collection: the workspace's plus the teams' grants for it.
    pub fn on_collection(&self, collection: &str) -> PermissionSet {
        self.collections
            .get(collection)
            .map_or(self.workspace, |c| c.union(self.workspace))
    }

    /// Read and write on one field (DAT-4). A team's collection grant opens every field; a
    /// custom role's field grants narrow the workspace-wide permissions for their collection.
    pub fn field(&self, collection: &str, field: &str) -> FieldAccess {
        let team = self
            .collections
            .get(collection)
            .copied()
            .unwrap_or_default();
        let (mut read, mut write) = (
            self.workspace.contains(Permission::RecordsRead),
            self.workspace.contains(Permission::RecordsWrite),
        );
        if let Some(grants) = self.fields.get(collection) {
            let matching = grants.iter().filter(|g| g.field == field || g.field == "*");
            let (r, w) = matching.fold((false, false), |(r, w), g| (r || g.read, w || g.write));
            read &= r;
            write &= w;
        }
        FieldAccess {
            read: read || team.contains(Permission::RecordsRead),
            write: write || team.contains(Permission::RecordsWrite),
        }
    }
}

/// The one authorization decision for actions (ACL-6): does this scope hold `permission`?
/// A suspended workspace refuses everything but its owners' read of the workspace itself.
pub fn authorize(scope: &TenantScope, permission: Permission) -> Result<()> {
    if scope.suspended()
        && !(permission == Permission::WorkspaceRead && scope.role() == Some(Role::Owner))
    {
        return Err(Error::WorkspaceSuspended);
    }
    if scope.holds(permission) {
        Ok(())
    } else {
        Err(Error::PermissionDenied(permission))
    }
}

/// [`authorize`] for one collection: team grants on it count too.
pub fn authorize_collection(
    scope: &TenantScope,
    collection: &str,
    permission: Permission,
) -> Result<()> {
    if scope.suspended() {
        return Err(Error::WorkspaceSuspended);
    }
    if scope.holds_on(collection, permission) {
        Ok(())
    } else {
        Err(Error::PermissionDenied(permission))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_matrix_matches_the_documented_baseline() {
        use Permission as P;
        // (role, permission, granted) rows for the permissions that separate the roles.
        let rows = [
            (Role::Owner, P::WorkspaceDelete, true),
            (Role::Owner, P::BillingManage, true),
            (Role::Admin, P::WorkspaceUpdate, true),
            (Role::Admin, P::WorkspaceDelete, false),
            (Role::Admin, P::BillingManage, false),
            (Role::Admin, P::BillingRead, true),
            (Role::Admin, P::OwnersManage, false),
            (Role::Admin, P::ChildrenManage, false),
            (Role::Admin, P::RolesManage, true),
            (Role::Admin, P::AuthPolicyManage, true),
            (Role::Member, P::MembersRead, true),
            (Role::Member, P::RolesManage, false),
            (Role::Member, P::WorkspaceRead, true),
            (Role::Member, P::WorkspaceUpdate, false),
            (Role::Member, P::MembersManage, false),
            (Role::Member, P::RecordsWrite, true),
            (Role::Member, P::QuotasConsume, true),
            (Role::Billing, P::QuotasConsume, false),
            (Role::Billing, P::BillingManage, true),
            (Role::Billing, P::RecordsRead, false),
            (Role::Billing, P::WorkspaceUpdate, false),
        ];
        for (role, permission, granted) in rows {
            assert_eq!(
                role.grants(permission),
                granted,
                "{role:?} / {}",
                permission.key()
            );
        }
        for &p in Permission::ALL {
            assert!(
                Role::Owner.grants(p),
                "owner holds every permission: {}",
                p.key()
            );
        }
    }

    fn set(ps: &[Permission]) -> PermissionSet {
        ps.iter().copied().collect()
    }

    #[test]
    fn permission_sets_round_trip_as_keys() {
        let s = set(&[Permission::RecordsWrite, Permission::WorkspaceRead]);
        let json = serde_json::to_value(s).unwrap();
        assert_eq!(json, serde_json::json!(["workspace.read", "records.write"]));
        assert_eq!(serde_json::from_value::<PermissionSet>(json).unwrap(), s);
        assert!(serde_json::from_value::<PermissionSet>(serde_json::json!(["nope"])).is_err());
        assert!(Permission::ALL.len() < 64);
    }

    #[test]
    fn a_custom_role_narrows_and_never_exceeds_the_enum_role() {
        use Permission as P;
        let custom = RoleGrants {
            permissions: set(&[P::RecordsRead, P::MembersManage, P::WorkspaceDelete]),
            fields: Vec::new(),
        };
        let g = Grants::resolve(Role::Member, Some(&custom), &[]);
        assert_eq!(g.permissions(), set(&[P::RecordsRead]));
        let g = Grants::resolve(Role::Admin, Some(&custom), &[]);
        assert_eq!(g.permissions(), set(&[P::RecordsRead, P::MembersManage]));
        let g = Grants::resolve(Role::Member, None, &[]);
        assert_eq!(g.permissions(), Role::Member.permissions());
    }

    #[test]
    fn grants_say_which_collections_and_fields_they_name() {
        use Permission as P;
        let custom = RoleGrants {
            permissions: set(&[P::RecordsRead]),
            fields: vec![FieldGrant {
                collection: "staff".into(),
                field: "salary".into(),
                read: false,
                write: false,
            }],
        };
        let teams = [TeamGrant {
            collection: Some("tasks".into()),
            permissions: set(&[P::RecordsWrite]),
        }];
        let g = Grants::resolve(Role::Member, Some(&custom), &teams);
        assert!(g.names_collection("staff") && g.names_collection("tasks"));
        assert!(!g.names_collection("other"));
        assert!(g.names_field("staff", "salary"));
        assert!(!g.names_field("staff", "title") && !g.names_field("tasks", "salary"));
        let plain = Grants::resolve(Role::Admin, None, &[]);
        assert!(!plain.names_collection("staff") && !plain.names_field("staff", "salary"));
    }

    #[test]
    fn teams_add_back_within_the_enum_role_per_collection() {
        use Permission as P;
        let viewer = RoleGrants {
            permissions: set(&[P::WorkspaceRead, P::RecordsRead]),
            fields: Vec::new(),
        };
        let teams = [
            TeamGrant {
                collection: Some("tasks".into()),
                permissions: set(&[P::RecordsWrite, P::CollectionsManage]),
            },
            TeamGrant {
                collection: None,
                permissions: set(&[P::MembersRead, P::BillingManage]),
            },
        ];
        let g = Grants::resolve(Role::Member, Some(&viewer), &teams);
        assert!(g.on_collection("tasks").contains(P::RecordsWrite));
        assert!(
            !g.on_collection("tasks").contains(P::CollectionsManage),
            "capped"
        );
        assert!(!g.on_collection("notes").contains(P::RecordsWrite));
        assert!(g.permissions().contains(P::MembersRead));
        assert!(!g.permissions().contains(P::BillingManage), "capped");
    }

    #[test]
    fn field_grants_narrow_one_collection_and_team_grants_open_it() {
        use Permission as P;
        let custom = RoleGrants {
            permissions: set(&[P::RecordsRead, P::RecordsWrite]),
            fields: vec![
                FieldGrant {
                    collection: "invoices".into(),
                    field: "amount".into(),
                    read: true,
                    write: false,
                },
                FieldGrant {
                    collection: "invoices".into(),
                    field: "note".into(),
                    read: true,
                    write: true,
                },
            ],
        };
        let g = Grants::resolve(Role::Member, Some(&custom), &[]);
        let rw = |c: &str, f: &str| {
            let a = g.field(c, f);
            (a.read, a.write)
        };
        assert_eq!(rw("invoices", "amount"), (true, false));
        assert_eq!(rw("invoices", "note"), (true, true));
        assert_eq!(rw("invoices", "iban"), (false, false));
        assert_eq!(
            rw("tasks", "title"),
            (true, true),
            "other collections unchanged"
        );
        let team = [TeamGrant {
            collection: Some("invoices".into()),
            permissions: set(&[P::RecordsWrite]),
        }];
        let g = Grants::resolve(Role::Member, Some(&custom), &team);
        assert_eq!(
            (
                g.field("invoices", "amount").read,
                g.field("invoices", "amount").write
            ),
            (true, true)
        );
        let billing = Grants::resolve(Role::Billing, Some(&custom), &team);
        assert!(
            !billing.field("invoices", "amount").read,
            "capped by billing"
        );
    }

    #[test]
    fn permission_keys_are_unique_and_dotted() {
        let mut keys: Vec<_> = Permission::ALL.iter().map(|p| p.key()).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), Permission::ALL.len());
        assert!(keys.iter().all(|k| k.contains('.')));
    }
}
