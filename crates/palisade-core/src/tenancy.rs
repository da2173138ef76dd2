//! The two scopes every store call takes (TEN-2). A `TenantScope` exists only after a
//! membership check (or an instance-admin check) inside this crate; cross-tenant work names
//! itself with a `SystemScope`, so it is easy to find.

use crate::acl::{Grants, Permission, PermissionSet, Role};
use crate::ids::WorkspaceId;
use crate::principal::Principal;

/// Proof that `principal` may act in `workspace_id`, with the resolved grants that decide what
/// it may do.
///
/// **Architecture invariant:** the fields are private and the constructors are `pub(crate)`;
/// `palisade-api` and `palisade-store` can hold a scope but never make one.
#[derive(Debug, Clone)]
pub struct TenantScope {
    workspace_id: WorkspaceId,
    principal: Principal,
    access: Access,
    suspended: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Access {
    Member(Box<Grants>),
    /// An instance administrator changing operator-owned settings (plan, region, modules).
    InstanceAdmin,
    /// An owner of the parent workspace running the child's lifecycle (TEN-3): no access to
    /// anything inside it.
    ParentOwner,
    /// A user accepting an invitation: may write their own membership, nothing else.
    Invitee,
    /// A workspace API key: its scopes intersected with its creator's grants at creation.
    ApiKey(Box<Grants>),
}

impl TenantScope {
    pub(crate) fn for_member(
        workspace_id: WorkspaceId,
        principal: Principal,
        grants: Grants,
        suspended: bool,
    ) -> Self {
        Self {
            workspace_id,
            principal,
            access: Access::Member(Box::new(grants)),
            suspended,
        }
    }

    /// A verified API key of this workspace (KEY-1).
    pub(crate) fn for_api_key(
        workspace_id: WorkspaceId,
        principal: Principal,
        grants: Grants,
        suspended: bool,
    ) -> Self {
        Self {
            workspace_id,
            principal,
            access: Access::ApiKey(Box::new(grants)),
            suspended,
        }
    }

    /// A new workspace's creator, before any grant is stored.
    pub(crate) fn for_creator(workspace_id: WorkspaceId, principal: Principal) -> Self {
        Self::for_member(
            workspace_id,
            principal,
            Grants::resolve(Role::Owner, None, &[]),
            false,
        )
    }

    pub(crate) fn for_instance_admin(workspace_id: WorkspaceId, principal: Principal) -> Self {
        Self {
            workspace_id,
            principal,
            access: Access::InstanceAdmin,
            suspended: false,
        }
    }

    pub(crate) fn for_parent_owner(workspace_id: WorkspaceId, principal: Principal) -> Self {
        Self {
            workspace_id,
            principal,
            access: Access::ParentOwner,
            suspended: false,
        }
    }

    pub(crate) fn for_invitee(workspace_id: WorkspaceId, principal: Principal) -> Self {
        Self {
            workspace_id,
            principal,
            access: Access::Invitee,
            suspended: false,
        }
    }

    /// Only for test suites of other crates (feature `test-support`), never in the binary.
    #[cfg(feature = "test-support")]
    pub fn for_tests(workspace_id: WorkspaceId, principal: Principal, role: Role) -> Self {
        Self::for_member(
            workspace_id,
            principal,
            Grants::resolve(role, None, &[]),
            false,
        )
    }

    pub fn workspace_id(&self) -> &WorkspaceId {
        &self.workspace_id
    }

    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// The member's enum role; none for scopes that are not a membership (API keys included:
    /// a key is never an owner).
    pub fn role(&self) -> Option<Role> {
        match &self.access {
            Access::Member(g) => Some(g.role()),
            _ => None,
        }
    }

    /// The resolved grants of a member or an API key; none for other scopes.
    pub fn grants(&self) -> Option<&Grants> {
        match &self.access {
            Access::Member(g) | Access::ApiKey(g) => Some(g),
            _ => None,
        }
    }

    /// The workspace-wide permissions of a member or an API key (empty for other scopes).
    pub fn permissions(&self) -> PermissionSet {
        self.grants()
            .map_or(PermissionSet::EMPTY, Grants::permissions)
    }

    pub fn suspended(&self) -> bool {
        self.suspended
    }

    pub(crate) fn holds(&self, permission: Permission) -> bool {
        // Instance admins, parent owners and invitees have no data permissions at all: their
        // services check their own operations.
        self.permissions().contains(permission)
    }

    pub(crate) fn holds_on(&self, collection: &str, permission: Permission) -> bool {
        self.grants()
            .is_some_and(|g| g.on_collection(collection).contains(permission))
    }
}

/// Work that is not done on behalf of one tenant's member: key loading, migrations, admin
/// lookups, background jobs. Each use names why.
#[derive(Debug, Clone, Copy)]
pub struct SystemScope {
    pub purpose: &'static str,
}

impl SystemScope {
    pub const fn new(purpose: &'static str) -> Self {
        Self { purpose }
    }
}
