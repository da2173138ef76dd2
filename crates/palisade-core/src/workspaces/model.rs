//! Workspace, branding, plan, modules, members.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::acl::Role;
use crate::ids::{MemberId, UserId, WorkspaceId};

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
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: MemberId,
    pub workspace_id: WorkspaceId,
    pub user_id: UserId,
    pub role: Role,
    pub created_at: OffsetDateTime,
}

/// A workspace seen through the caller's membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub workspace: Workspace,
    pub member_id: MemberId,
    pub role: Role,
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
