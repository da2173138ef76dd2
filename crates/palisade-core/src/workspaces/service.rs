//! Workspace use cases: create, list mine, the membership check, read, update, and the
//! instance administrator's changes to plan, region and modules.

use secrecy::SecretString;
use serde_json::{Value, json};
use tracing::instrument;

use super::model::{
    AdminWorkspacePatch, AuthPolicy, Branding, BrandingPatch, DEFAULT_CURRENCY, DEFAULT_REGION,
    DEFAULT_TIMEZONE, Invitation, Member, MemberAccess, Membership, Module, NewWorkspace, Page,
    Patch, Plan, Workspace, WorkspacePatch, is_currency, is_timezone,
};
use crate::acl::{Grants, Permission, Role, RoleGrants, authorize};
use crate::app::Services;
use crate::audit::{Actor, AuditEvent, AuditLog, Target};
use crate::crypto::random;
use crate::error::{ConflictKind, Error, Resource, Result, StoreError};
use crate::ids::{MemberId, WorkspaceId};
use crate::principal::{Principal, RequestMeta};
use crate::store::Access;
use crate::tenancy::{SystemScope, TenantScope};
use crate::validate::Checks;

pub const LIST_LIMIT_DEFAULT: u32 = 50;
pub const LIST_LIMIT_MAX: u32 = 200;

/// `^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$`: 3 to 63 characters. Ids contain `_`, slugs cannot, so
/// a path segment is never ambiguous.
pub fn is_slug(s: &str) -> bool {
    let b = s.as_bytes();
    (3..=63).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b.first() != Some(&b'-')
        && b.last() != Some(&b'-')
}

fn slugify(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let mut slug: String = out.chars().take(48).collect();
    while slug.ends_with('-') {
        slug.pop();
    }
    if slug.len() < 3 {
        format!("workspace-{slug}").trim_end_matches('-').to_owned()
    } else {
        slug
    }
}

fn is_color(s: &str) -> bool {
    s.len() == 7 && s.starts_with('#') && s[1..].chars().all(|c| c.is_ascii_hexdigit())
}

/// An event in the scope's workspace log, by the scope's principal.
pub(crate) fn ws_event(scope: &TenantScope, action: &'static str, target: Target) -> AuditEvent {
    AuditEvent::new(
        AuditLog::Workspace(scope.workspace_id().clone()),
        action,
        Actor::of(scope.principal()),
        target,
    )
}

/// Writes the workspace row and, in the same transaction, records the change for every node's
/// API key cache (cached keys carry the workspace's slug, plan and state): the one way services
/// update a workspace.
pub(super) async fn write_workspace(
    tx: &mut Box<dyn crate::store::TenantTx>,
    workspace: &Workspace,
) -> std::result::Result<(), StoreError> {
    tx.workspace_update(workspace).await?;
    tx.api_keys_changed(workspace.updated_at).await
}

/// A page from `limit + 1` rows: the extra row only says there is a next page.
pub(crate) fn page_of<T>(mut rows: Vec<T>, limit: u32, cursor: impl Fn(&T) -> String) -> Page<T> {
    let next_cursor = if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().map(cursor)
    } else {
        None
    };
    Page {
        data: rows,
        next_cursor,
    }
}

/// Collection and field names (DAT-1): `^[a-z][a-z0-9_]{0,62}$`.
pub fn is_name(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=63).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
}

pub(super) fn workspace_target(id: &WorkspaceId) -> Target {
    Target {
        kind: "workspace".into(),
        id: id.to_string(),
    }
}

fn branding_json(b: &Branding) -> Value {
    serde_json::to_value(b).unwrap_or(Value::Null)
}

fn check_branding(checks: &mut Checks, patch: &BrandingPatch) {
    if let Patch::Value(v) = &patch.display_name {
        checks.text("/branding/display_name", v, 1, 200);
    }
    if let Patch::Value(v) = &patch.logo_url {
        let ok = v.len() <= 2048
            && url::Url::parse(v).is_ok_and(|u| u.scheme() == "https" && u.host().is_some());
        if !ok {
            checks.fail(
                "/branding/logo_url",
                "must be an https URL of at most 2048 characters",
            );
        }
    }
    for (pointer, value) in [
        ("/branding/primary_color", &patch.primary_color),
        ("/branding/accent_color", &patch.accent_color),
    ] {
        if let Patch::Value(v) = value
            && !is_color(v)
        {
            checks.fail(pointer, "must be a colour like #1a2b3c");
        }
    }
}

fn apply<T>(slot: &mut Option<T>, patch: Patch<T>) {
    match patch {
        Patch::Absent => {}
        Patch::Null => *slot = None,
        Patch::Value(v) => *slot = Some(v),
    }
}

/// A new workspace's name and optional slug.
pub(super) fn check_new_workspace(checks: &mut Checks, name: &str, slug: Option<&str>) {
    checks.text("/name", name, 1, 200);
    if let Some(slug) = slug
        && !is_slug(slug)
    {
        checks.fail(
            "/slug",
            "must be 3 to 63 lowercase letters, digits or '-', not starting or ending with '-'",
        );
    }
}

/// A child workspace being created (TEN-3): under `parent`, owned by the caller or, with
/// `owner_email`, by whoever accepts the owner invitation.
pub(super) struct ChildOf<'a> {
    pub parent: &'a Workspace,
    pub owner_email: Option<String>,
}

/// A required field: `null` is refused, absent leaves it alone.
fn required<T>(checks: &mut Checks, pointer: &str, patch: &Patch<T>) {
    if matches!(patch, Patch::Null) {
        checks.fail(pointer, "must not be null");
    }
}

/// The workspace's auth policy against how and when the caller signed in (TEN-4).
pub(super) fn check_auth_policy(
    policy: &AuthPolicy,
    principal: &Principal,
    now: time::OffsetDateTime,
) -> Result<()> {
    let Principal::User {
        method,
        signed_in_at,
        ..
    } = principal
    else {
        // A key is not a session: sign-in methods and session lifetimes do not apply.
        return Ok(());
    };
    if !policy.sign_in_methods.contains(method) {
        return Err(Error::ReauthenticationRequired("sign_in_method"));
    }
    if let Some(max) = policy.session_max_secs
        && now - *signed_in_at > time::Duration::seconds(i64::from(max))
    {
        return Err(Error::ReauthenticationRequired("session_lifetime"));
    }
    Ok(())
}

impl Services {
    /// Creates a workspace; the creator becomes its owner (TEN-1).
    #[instrument(skip_all)]
    pub async fn create_workspace(
        &self,
        principal: &Principal,
        input: NewWorkspace,
        meta: &RequestMeta,
    ) -> Result<Workspace> {
        let mut checks = Checks::new();
        check_new_workspace(&mut checks, &input.name, input.slug.as_deref());
        checks.finish()?;
        let (workspace, _) = self
            .new_workspace(principal, &input.name, input.slug, None, meta)
            .await?;
        Ok(workspace)
    }

    /// Inserts a workspace with a free slug: a derived slug that is taken gets a random
    /// suffix; an explicit one is a conflict.
    pub(super) async fn new_workspace(
        &self,
        principal: &Principal,
        name: &str,
        slug: Option<String>,
        child: Option<&ChildOf<'_>>,
        meta: &RequestMeta,
    ) -> Result<(Workspace, Option<(Invitation, SecretString)>)> {
        let explicit = slug.is_some();
        let base = slug.unwrap_or_else(|| slugify(name));
        let mut attempt = 0;
        loop {
            let slug = if attempt == 0 {
                base.clone()
            } else {
                format!(
                    "{}-{}",
                    base.chars().take(56).collect::<String>(),
                    random::suffix(6)?
                )
            };
            match self
                .insert_workspace(principal, name, slug, child, meta)
                .await
            {
                Err(Error::Conflict(ConflictKind::SlugTaken)) if !explicit && attempt < 3 => {
                    attempt += 1
                }
                result => return result,
            }
        }
    }

    async fn insert_workspace(
        &self,
        principal: &Principal,
        name: &str,
        slug: String,
        child: Option<&ChildOf<'_>>,
        meta: &RequestMeta,
    ) -> Result<(Workspace, Option<(Invitation, SecretString)>)> {
        let now = self.now();
        let parent = child.map(|c| c.parent);
        let workspace = Workspace {
            id: WorkspaceId::generate(),
            slug,
            name: name.to_owned(),
            branding: Branding::default(),
            // A child lives where its parent does, on its parent's plan.
            region: parent.map_or_else(
                || {
                    self.settings
                        .regions
                        .first()
                        .map_or(DEFAULT_REGION, String::as_str)
                        .to_owned()
                },
                |p| p.region.clone(),
            ),
            timezone: DEFAULT_TIMEZONE.to_owned(),
            currency: DEFAULT_CURRENCY.to_owned(),
            plan: parent.map_or(Plan::Starter, |p| p.plan),
            modules: Vec::new(),
            parent_id: parent.map(|p| p.id.clone()),
            auth_policy: AuthPolicy::default(),
            suspended_at: None,
            deleted_at: None,
            created_at: now,
            updated_at: now,
        };
        let owner_email = child.and_then(|c| c.owner_email.as_deref());
        let scope = match owner_email {
            Some(_) => TenantScope::for_parent_owner(workspace.id.clone(), principal.clone()),
            None => TenantScope::for_creator(workspace.id.clone(), principal.clone()),
        };
        // The workspace's first data key is written before (SQLite has one writer).
        let keys = self
            .vault
            .owner_in_region(&*self.store, workspace.id.as_str(), &workspace.region, now)
            .await?;
        let mut tx = self.store.tenant(&scope, Access::Write).await?;
        match tx.workspace_insert(&workspace).await {
            Err(StoreError::Conflict(_)) => return Err(Error::Conflict(ConflictKind::SlugTaken)),
            other => other?,
        }
        let key = self.new_audit_key(&keys, now)?;
        tx.audit_log_create(&self.audit_origin(workspace.id.as_str()), &key, now)
            .await?;
        let mut event = ws_event(&scope, "workspace.create", workspace_target(&workspace.id));
        event.diff_field("/name", Value::Null, json!(workspace.name));
        event.diff_field("/slug", Value::Null, json!(workspace.slug));
        if let Some(parent) = parent {
            event.diff_field("/parent_id", Value::Null, json!(parent.id.as_str()));
        }
        tx.audit_append(&event.seal(meta, now)?).await?;
        let invitation = match owner_email {
            Some(email) => Some(
                self.new_invitation(&mut tx, &scope, email, Role::Owner, None, meta, now)
                    .await?,
            ),
            None => {
                let member = Member {
                    id: MemberId::generate(),
                    workspace_id: workspace.id.clone(),
                    user_id: principal.user_id()?.clone(),
                    role: Role::Owner,
                    custom_role_id: None,
                    active: true,
                    created_at: now,
                    updated_at: now,
                };
                tx.member_insert(&member).await?;
                let mut owner = ws_event(
                    &scope,
                    "member.create",
                    Target {
                        kind: "member".into(),
                        id: member.id.to_string(),
                    },
                );
                owner.diff_field("/role", Value::Null, json!(Role::Owner.as_str()));
                tx.audit_append(&owner.seal(meta, now)?).await?;
                None
            }
        };
        tx.commit().await?;
        Ok((workspace, invitation))
    }

    /// The caller's workspaces, oldest first, `limit` at a time after `after`.
    pub async fn list_workspaces(
        &self,
        principal: &Principal,
        after: Option<WorkspaceId>,
        limit: u32,
    ) -> Result<Page<Membership>> {
        let limit = limit.clamp(1, LIST_LIMIT_MAX);
        let mut tx = self
            .store
            .accounts(Some(principal.user_id()?), Access::Read)
            .await?;
        let mut rows = tx
            .memberships(principal.user_id()?, after.as_ref(), limit + 1)
            .await?;
        let next_cursor = if rows.len() > limit as usize {
            rows.truncate(limit as usize);
            rows.last().map(|m| m.workspace.id.to_string())
        } else {
            None
        };
        Ok(Page {
            data: rows,
            next_cursor,
        })
    }

    /// The membership check (TEN-2): the only way to a `TenantScope`. `key` is an id or a
    /// slug; a workspace the caller is not a member of does not exist for them. The request is
    /// then charged to the workspace's `api` budgets (RTL-2).
    #[instrument(skip_all)]
    pub async fn tenant_scope(
        &self,
        principal: &Principal,
        key: &str,
        meta: &RequestMeta,
    ) -> Result<TenantScope> {
        // The read transaction ends before the limiter runs: a lease may need a connection of
        // its own, and requests waiting for it must not hold the pool.
        let access = {
            let mut tx = self
                .store
                .accounts(Some(principal.user_id()?), Access::Read)
                .await?;
            tx.member_access(principal.user_id()?, key)
                .await?
                .ok_or(Error::NotFound(Resource::Workspace))?
        };
        let MemberAccess {
            membership,
            custom_role,
            team_grants,
        } = access;
        if !membership.active {
            return Err(Error::MembershipInactive);
        }
        let workspace = membership.workspace;
        check_auth_policy(&workspace.auth_policy, principal, self.now())?;
        // A custom role only narrows, so it keeps applying even if the module is turned off
        // later: dropping it would widen the member's access.
        let custom = custom_role.map(|r| RoleGrants {
            permissions: r.permissions,
            fields: r.fields,
        });
        let grants = Grants::resolve(membership.role, custom.as_ref(), &team_grants);
        let scope = TenantScope::for_member(
            workspace.id,
            principal.clone(),
            grants,
            workspace.suspended_at.is_some(),
        );
        self.limit_workspace_request(&scope, workspace.plan, meta)
            .await?;
        Ok(scope)
    }

    pub async fn get_workspace(&self, scope: &TenantScope) -> Result<Workspace> {
        authorize(scope, Permission::WorkspaceRead)?;
        let mut tx = self.store.tenant(scope, Access::Read).await?;
        tx.workspace_get()
            .await?
            .ok_or(Error::NotFound(Resource::Workspace))
    }

    /// Changes name, slug, branding, timezone or currency (merge-patch semantics).
    #[instrument(skip_all, fields(workspace = %scope.workspace_id()))]
    pub async fn update_workspace(
        &self,
        scope: &TenantScope,
        patch: WorkspacePatch,
        meta: &RequestMeta,
    ) -> Result<Workspace> {
        authorize(scope, Permission::WorkspaceUpdate)?;
        let mut checks = Checks::new();
        required(&mut checks, "/name", &patch.name);
        required(&mut checks, "/slug", &patch.slug);
        required(&mut checks, "/timezone", &patch.timezone);
        required(&mut checks, "/currency", &patch.currency);
        if let Patch::Value(v) = &patch.name {
            checks.text("/name", v, 1, 200);
        }
        if let Patch::Value(v) = &patch.slug
            && !is_slug(v)
        {
            checks.fail(
                "/slug",
                "must be 3 to 63 lowercase letters, digits or '-', not starting or ending with '-'",
            );
        }
        if let Patch::Value(v) = &patch.timezone
            && !is_timezone(v)
        {
            checks.fail(
                "/timezone",
                "must be an IANA time zone name such as Europe/Brussels",
            );
        }
        if let Patch::Value(v) = &patch.currency
            && !is_currency(v)
        {
            checks.fail("/currency", "must be an ISO 4217 currency code such as EUR");
        }
        if let Patch::Value(b) = &patch.branding {
            check_branding(&mut checks, b);
        }
        checks.finish()?;

        let now = self.now();
        let mut tx = self.store.tenant(scope, Access::Write).await?;
        let before = tx
            .workspace_get()
            .await?
            .ok_or(Error::NotFound(Resource::Workspace))?;
        let mut after = before.clone();
        if let Patch::Value(v) = patch.name {
            after.name = v;
        }
        if let Patch::Value(v) = patch.slug {
            after.slug = v;
        }
        if let Patch::Value(v) = patch.timezone {
            after.timezone = v;
        }
        if let Patch::Value(v) = patch.currency {
            after.currency = v;
        }
        match patch.branding {
            Patch::Absent => {}
            Patch::Null => after.branding = Branding::default(),
            Patch::Value(b) => {
                apply(&mut after.branding.display_name, b.display_name);
                apply(&mut after.branding.logo_url, b.logo_url);
                apply(&mut after.branding.primary_color, b.primary_color);
                apply(&mut after.branding.accent_color, b.accent_color);
            }
        }
        if after == before {
            return Ok(before);
        }
        after.updated_at = now;
        match write_workspace(&mut tx, &after).await {
            Err(StoreError::Conflict(_)) => return Err(Error::Conflict(ConflictKind::SlugTaken)),
            other => other?,
        }
        let mut event = AuditEvent::new(
            AuditLog::Workspace(after.id.clone()),
            "workspace.update",
            Actor::of(scope.principal()),
            workspace_target(&after.id),
        );
        event.diff_field("/name", json!(before.name), json!(after.name));
        event.diff_field("/slug", json!(before.slug), json!(after.slug));
        event.diff_field("/timezone", json!(before.timezone), json!(after.timezone));
        event.diff_field("/currency", json!(before.currency), json!(after.currency));
        event.diff_field(
            "/branding",
            branding_json(&before.branding),
            branding_json(&after.branding),
        );
        tx.audit_append(&event.seal(meta, now)?).await?;
        tx.commit().await?;
        self.invalidate_keys_locally(&after.id);
        Ok(after)
    }

    /// Plan, region and modules: changeable only by instance administrators (config `admins`).
    #[instrument(skip_all)]
    pub async fn admin_update_workspace(
        &self,
        principal: &Principal,
        key: &str,
        patch: AdminWorkspacePatch,
        meta: &RequestMeta,
    ) -> Result<Workspace> {
        let user = self.me(principal).await?;
        if !self.settings.admins.iter().any(|a| a == &user.email) {
            return Err(Error::InstanceAdminRequired);
        }
        let mut checks = Checks::new();
        required(&mut checks, "/plan", &patch.plan);
        required(&mut checks, "/region", &patch.region);
        required(&mut checks, "/modules", &patch.modules);
        let plan = match &patch.plan {
            Patch::Value(v) => Plan::parse(v).or_else(|| {
                checks.fail("/plan", "must be one of starter, pro, business");
                None
            }),
            _ => None,
        };
        if let Patch::Value(v) = &patch.region
            && !self.settings.regions.iter().any(|r| r == v)
        {
            checks.fail(
                "/region",
                format!(
                    "must be a configured region: {}",
                    self.settings.regions.join(", ")
                ),
            );
        }
        let mut modules = Vec::new();
        if let Patch::Value(list) = &patch.modules {
            for (i, m) in list.iter().enumerate() {
                match Module::parse(m) {
                    Some(m) => modules.push(m),
                    None => checks.fail(&format!("/modules/{i}"), "unknown module"),
                }
            }
        }
        modules.sort_unstable();
        modules.dedup();
        checks.finish()?;

        let id = {
            let mut tx = self
                .store
                .system(
                    &SystemScope::new("instance admin resolves a workspace"),
                    Access::Read,
                )
                .await?;
            tx.workspace_resolve(key)
                .await?
                .ok_or(Error::NotFound(Resource::Workspace))?
        };
        let scope = TenantScope::for_instance_admin(id, principal.clone());
        let now = self.now();
        let mut tx = self.store.tenant(&scope, Access::Write).await?;
        let before = tx
            .workspace_get()
            .await?
            .ok_or(Error::NotFound(Resource::Workspace))?;
        let mut after = before.clone();
        if let Some(plan) = plan {
            after.plan = plan;
        }
        if let Patch::Value(region) = patch.region {
            after.region = region;
        }
        if matches!(patch.modules, Patch::Value(_)) {
            after.modules = modules;
        }
        if after == before {
            return Ok(before);
        }
        after.updated_at = now;
        write_workspace(&mut tx, &after).await?;
        let mut event = AuditEvent::new(
            AuditLog::Workspace(after.id.clone()),
            "workspace.admin_update",
            Actor::of(principal),
            workspace_target(&after.id),
        );
        event.diff_field("/plan", json!(before.plan), json!(after.plan));
        event.diff_field("/region", json!(before.region), json!(after.region));
        event.diff_field("/modules", json!(before.modules), json!(after.modules));
        tx.audit_append(&event.seal(meta, now)?).await?;
        tx.commit().await?;
        self.invalidate_keys_locally(&after.id);
        Ok(after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert!(is_slug("acme"));
        assert!(is_slug("acme-corp-2"));
        for bad in [
            "ab",
            "-acme",
            "acme-",
            "Acme",
            "ac_me",
            "ws_0000",
            &"a".repeat(64),
        ] {
            assert!(!is_slug(bad), "{bad}");
        }
        assert_eq!(slugify("Acme Corp!"), "acme-corp");
        assert_eq!(slugify("ÆØ"), "workspace");
        assert!(is_slug(&slugify("x")));
    }

    #[test]
    fn timezone_and_currency_lists() {
        assert!(is_timezone("Europe/Brussels"));
        assert!(is_timezone("UTC"));
        assert!(!is_timezone("Europe/Atlantis"));
        assert!(is_currency("EUR"));
        assert!(!is_currency("EURO"));
    }
}
