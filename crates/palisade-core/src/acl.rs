//! Roles, the permission catalog and the one authorization entry point (ACL-1, ACL-2, ACL-6).
//! Enum roles map to fixed permission sets: the baseline that nothing may exceed.

use crate::error::{Error, Result};
use crate::tenancy::TenantScope;

/// A member's enum role in a workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
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

    /// The fixed permission set of this role.
    pub fn grants(self, permission: Permission) -> bool {
        use Permission as P;
        match self {
            Role::Owner => true,
            Role::Admin => !matches!(permission, P::WorkspaceDelete | P::BillingManage),
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
}

macro_rules! permissions {
    ($($variant:ident => $key:literal, $meaning:literal;)*) => {
        /// Every permission key, with its meaning (ACL-2). Keys are stable.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Permission { $($variant),* }

        impl Permission {
            pub const ALL: &'static [Permission] = &[$(Permission::$variant),*];

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
    MembersRead => "members.read", "List members and teams.";
    MembersManage => "members.manage", "Invite, change and remove members and teams.";
    RolesManage => "roles.manage", "Define custom roles.";
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

/// The one authorization decision for actions: does this scope hold `permission`?
pub fn authorize(scope: &TenantScope, permission: Permission) -> Result<()> {
    if scope.holds(permission) {
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

    #[test]
    fn permission_keys_are_unique_and_dotted() {
        let mut keys: Vec<_> = Permission::ALL.iter().map(|p| p.key()).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), Permission::ALL.len());
        assert!(keys.iter().all(|k| k.contains('.')));
    }
}
