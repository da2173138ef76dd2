//! Workspace, branding, plan, modules, members.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::acl::{FieldGrant, PermissionSet, Role, TeamGrant};
use crate::ids::{CustomRoleId, InvitationId, MemberId, TeamId, UserId, WorkspaceId};
use crate::principal::SignInMethod;

pub const DEFAULT_TIMEZONE: &str = "Europe/Brussels";
pub const DEFAULT_CURRENCY: &str = "EUR";
pub const DEFAULT_REGION: &str = "eu";

const TIMEZONES: &str = include_str!("timezones.txt");
const CURRENCIES: &str = include_str!("currencies.txt");

/// IANA time zone names known to the bundled tz database (zones and links).
pub fn is_timezone(name: &str) -> bool {
    TIMEZONES.lines().any(|l| l == name)
}

/// ISO 4217 alphabetic codes.
pub fn is_currency(code: &str) -> bool {
    CURRENCIES.lines().any(|l| l == code)
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Branding {
    pub display_name: Option<String>,
    pub logo_url: Option<String>,
    pub primary_color: Option<String>,
    pub accent_color: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Plan {
    Starter,
    Pro,
    Business,
}

impl Plan {
    pub fn as_str(self) -> &'static str {
        match self {
            Plan::Starter => "starter",
            Plan::Pro => "pro",
            Plan::Business => "business",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Plan::Starter, Plan::Pro, Plan::Business]
            .into_iter()
            .find(|p| p.as_str() == text)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Module {
    AdvancedRbac,
    Sso,
    DoraPack,
    EuFailover,
    Einvoicing,
}

impl Module {
    pub const ALL: [Module; 5] = [
        Module::AdvancedRbac,
        Module::Sso,
        Module::DoraPack,
        Module::EuFailover,
        Module::Einvoicing,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Module::AdvancedRbac => "advanced_rbac",
            Module::Sso => "sso",
            Module::DoraPack => "dora_pack",
            Module::EuFailover => "eu_failover",
            Module::Einvoicing => "einvoicing",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Module::ALL.into_iter().find(|m| m.as_str() == text)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workspace {
    pub id: WorkspaceId,
    pub slug: String,
    pub name: String,
    pub branding: Branding,
    pub region: String,
    pub timezone: String,
    pub currency: String,
    pub plan: Plan,
    pub modules: Vec<Module>,
    pub parent_id: Option<WorkspaceId>,
    pub auth_policy: AuthPolicy,
    /// Set by the parent's owners (TEN-3): only the owners' read of the workspace still works.
    pub suspended_at: Option<OffsetDateTime>,
    /// Deleted by the parent's owners: gone for everyone; rows stay for the retention job.
    pub deleted_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

impl Workspace {
    pub fn has_module(&self, module: Module) -> bool {
        self.modules.contains(&module)
    }
}

/// A workspace's auth policy (TEN-4), checked when the workspace is resolved for a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthPolicy {
    /// How members may have signed in; a session started otherwise is refused here.
    pub sign_in_methods: Vec<SignInMethod>,
    /// Sessions older than this (since sign-in, refreshes do not count) are refused here.
    pub session_max_secs: Option<u32>,
    /// Applied when a member sets a password (the strictest of their workspaces counts).
    pub password_min_length: Option<u32>,
    /// Stored now; enforced once TOTP and passkeys exist.
    pub mfa_required: bool,
}

impl Default for AuthPolicy {
    fn default() -> Self {
        Self {
            sign_in_methods: SignInMethod::ALL.to_vec(),
            session_max_secs: None,
            password_min_length: None,
            mfa_required: false,
        }
    }
}

#[derive(Debug, Default)]
pub struct AuthPolicyPatch {
    pub sign_in_methods: Patch<Vec<String>>,
    pub session_max_secs: Patch<u32>,
    pub password_min_length: Patch<u32>,
    pub mfa_required: Patch<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: MemberId,
    pub workspace_id: WorkspaceId,
    pub user_id: UserId,
    pub role: Role,
    pub custom_role_id: Option<CustomRoleId>,
    /// A deactivated member keeps their row (and history) but cannot act here.
    pub active: bool,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// A member with the account facts other members see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    pub member: Member,
    pub email: String,
    pub name: String,
}

/// A workspace seen through the caller's membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub workspace: Workspace,
    pub member_id: MemberId,
    pub role: Role,
    pub active: bool,
}

/// Everything the membership check needs to resolve a member's grants, read in one go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberAccess {
    pub membership: Membership,
    pub custom_role: Option<CustomRole>,
    pub team_grants: Vec<TeamGrant>,
}

/// A custom role (ACL-3): permissions within `base_role`, plus field grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomRole {
    pub id: CustomRoleId,
    pub workspace_id: WorkspaceId,
    pub name: String,
    pub description: Option<String>,
    /// The enum role whose baseline bounds this role's permissions.
    pub base_role: Role,
    pub permissions: PermissionSet,
    pub fields: Vec<FieldGrant>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Default)]
pub struct CustomRoleInput {
    pub name: Patch<String>,
    pub description: Patch<String>,
    pub base_role: Patch<String>,
    pub permissions: Patch<Vec<String>>,
    pub fields: Patch<Vec<FieldGrant>>,
}

/// A team (ACL-4) and the grants its members receive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Team {
    pub id: TeamId,
    pub workspace_id: WorkspaceId,
    pub name: String,
    pub description: Option<String>,
    pub grants: Vec<TeamGrant>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// A team grant as the caller sends it.
#[derive(Debug, Clone)]
pub struct TeamGrantInput {
    pub collection: Option<String>,
    pub permissions: Vec<String>,
}

#[derive(Debug, Default)]
pub struct TeamInput {
    pub name: Patch<String>,
    pub description: Patch<String>,
    pub grants: Patch<Vec<TeamGrantInput>>,
}

/// An invitation (ACL-7). Only the SHA-256 of its token is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invitation {
    pub id: InvitationId,
    pub workspace_id: WorkspaceId,
    /// Normalized; shown to members with `members.read`, audited only as a commitment.
    pub email: String,
    pub role: Role,
    pub custom_role_id: Option<CustomRoleId>,
    pub token_hash: [u8; 32],
    pub invited_by: UserId,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub accepted_at: Option<OffsetDateTime>,
    pub accepted_by: Option<UserId>,
    pub revoked_at: Option<OffsetDateTime>,
}

impl Invitation {
    pub fn status(&self, now: OffsetDateTime) -> &'static str {
        if self.accepted_at.is_some() {
            "accepted"
        } else if self.revoked_at.is_some() {
            "revoked"
        } else if self.expires_at <= now {
            "expired"
        } else {
            "pending"
        }
    }
}

/// A member change (merge patch).
#[derive(Debug, Default)]
pub struct MemberPatch {
    pub role: Patch<String>,
    pub custom_role: Patch<String>,
    pub active: Patch<bool>,
}

/// A child workspace (TEN-3).
#[derive(Debug, Default)]
pub struct NewChild {
    pub name: String,
    pub slug: Option<String>,
    pub owner_email: Option<String>,
}

/// A JSON merge-patch field: absent (unchanged), `null` (cleared) or a value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Patch<T> {
    #[default]
    Absent,
    Null,
    Value(T),
}

#[derive(Debug, Default)]
pub struct NewWorkspace {
    pub name: String,
    pub slug: Option<String>,
}

#[derive(Debug, Default)]
pub struct BrandingPatch {
    pub display_name: Patch<String>,
    pub logo_url: Patch<String>,
    pub primary_color: Patch<String>,
    pub accent_color: Patch<String>,
}

/// What members with `workspace.update` may change.
#[derive(Debug, Default)]
pub struct WorkspacePatch {
    pub name: Patch<String>,
    pub slug: Patch<String>,
    pub timezone: Patch<String>,
    pub currency: Patch<String>,
    pub branding: Patch<BrandingPatch>,
}

/// What only an instance administrator may change.
#[derive(Debug, Default)]
pub struct AdminWorkspacePatch {
    pub plan: Patch<String>,
    pub region: Patch<String>,
    pub modules: Patch<Vec<String>>,
}

/// One page of a list, with the cursor of the next page when there is one.
#[derive(Debug)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub next_cursor: Option<String>,
}
