//! The two scopes every store call takes (TEN-2). A `TenantScope` exists only after a
//! membership check (or an instance-admin check) inside this crate; cross-tenant work names
//! itself with a `SystemScope`, so it is easy to find.

use crate::acl::{Permission, Role};
use crate::ids::WorkspaceId;
use crate::principal::Principal;

/// Proof that `principal` may act in `workspace_id`, with the role that decides what it may do.
///
/// **Architecture invariant:** the fields are private and the constructors are `pub(crate)`;
/// `palisade-api` and `palisade-store` can hold a scope but never make one.
#[derive(Debug, Clone)]
pub struct TenantScope {
    workspace_id: WorkspaceId,
    principal: Principal,
    access: Access,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Member(Role),
    /// An instance administrator changing operator-owned settings (plan, region, modules).
    InstanceAdmin,
}

impl TenantScope {
    pub(crate) fn for_member(workspace_id: WorkspaceId, principal: Principal, role: Role) -> Self {
        Self {
            workspace_id,
            principal,
            access: Access::Member(role),
        }
    }

    pub(crate) fn for_instance_admin(workspace_id: WorkspaceId, principal: Principal) -> Self {
        Self {
            workspace_id,
            principal,
            access: Access::InstanceAdmin,
        }
    }

    /// Only for test suites of other crates (feature `test-support`), never in the binary.
    #[cfg(feature = "test-support")]
    pub fn for_tests(workspace_id: WorkspaceId, principal: Principal, role: Role) -> Self {
        Self::for_member(workspace_id, principal, role)
    }

    pub fn workspace_id(&self) -> &WorkspaceId {
        &self.workspace_id
    }

    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    pub fn role(&self) -> Option<Role> {
        match self.access {
            Access::Member(role) => Some(role),
            Access::InstanceAdmin => None,
        }
    }

    pub(crate) fn holds(&self, permission: Permission) -> bool {
        match self.access {
            Access::Member(role) => role.grants(permission),
            // An instance admin acting on a workspace has no data permissions at all: the
            // admin service checks its own operations.
            Access::InstanceAdmin => false,
        }
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
