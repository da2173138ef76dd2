//! Teams (ACL-4): named groups of members whose grants add to their members' access, workspace
//! wide or per collection, never beyond each member's enum role.

use serde_json::{Value, json};
use tracing::instrument;

use super::model::{MemberView, Page, Patch, Team, TeamGrantInput, TeamInput};
use super::service::{LIST_LIMIT_MAX, is_name, page_of, ws_event};
use crate::acl::{COLLECTION_PERMISSIONS, Permission, PermissionSet, TeamGrant, authorize};
use crate::app::Services;
use crate::audit::Target;
use crate::error::{ConflictKind, Error, Resource, Result, StoreError};
use crate::ids::{MemberId, TeamId};
use crate::principal::RequestMeta;
use crate::store::Access;
use crate::tenancy::TenantScope;
use crate::validate::Checks;

fn team_target(id: &TeamId) -> Target {
    Target {
        kind: "team".into(),
        id: id.to_string(),
    }
}

fn grants_json(grants: &[TeamGrant]) -> Value {
    serde_json::to_value(grants).unwrap_or(Value::Null)
}

/// Permission keys at `pointer/i`: each known, and held by the caller (nobody hands out what
/// they lack). `allowed` narrows further when given.
pub(super) fn check_permissions(
    checks: &mut Checks,
    scope: &TenantScope,
    pointer: &str,
    keys: &[String],
    allowed: Option<(PermissionSet, &str)>,
) -> PermissionSet {
    let mut set = PermissionSet::EMPTY;
    for (i, key) in keys.iter().enumerate() {
        let at = format!("{pointer}/{i}");
        let Some(p) = Permission::parse(key) else {
            checks.fail(&at, "is not a permission (see GET /api/v1/permissions)");
            continue;
        };
        if let Some((allowed, why)) = allowed
            && !allowed.contains(p)
        {
            checks.fail(&at, why.to_owned());
        } else if !scope.permissions().contains(p) {
            checks.fail(&at, "is not a permission you hold, so you cannot grant it");
        }
        set.insert(p);
    }
    set
}

fn check_grants(
    checks: &mut Checks,
    scope: &TenantScope,
    grants: &[TeamGrantInput],
) -> Vec<TeamGrant> {
    if grants.len() > 100 {
        checks.fail("/grants", "must hold at most 100 grants");
    }
    let collection_only: PermissionSet = COLLECTION_PERMISSIONS.into_iter().collect();
    grants
        .iter()
        .enumerate()
        .map(|(i, g)| {
            if let Some(c) = &g.collection
                && !is_name(c)
            {
                checks.fail(
                    &format!("/grants/{i}/collection"),
                    "must be a collection name: a lowercase letter, then letters, digits or '_'",
                );
            }
            let allowed = g.collection.as_ref().map(|_| {
                (
                    collection_only,
                    "is not a collection permission (records.read, records.read_draft, records.write)",
                )
            });
            let permissions = check_permissions(
                checks,
                scope,
                &format!("/grants/{i}/permissions"),
                &g.permissions,
                allowed,
            );
            TeamGrant {
                collection: g.collection.clone(),
                permissions,
            }
        })
        .collect()
}

impl Services {
    /// Creates a team (needs `members.manage`; grants also `roles.manage`).
    #[instrument(skip_all, fields(workspace = %scope.workspace_id()))]
    pub async fn create_team(
        &self,
        scope: &TenantScope,
        input: TeamInput,
        meta: &RequestMeta,
    ) -> Result<Team> {
        authorize(scope, Permission::MembersManage)?;
        let now = self.now();
        let mut team = Team {
            id: TeamId::generate(),
            workspace_id: scope.workspace_id().clone(),
            name: String::new(),
            description: None,
            grants: Vec::new(),
            created_at: now,
            updated_at: now,
        };
        if matches!(input.name, Patch::Absent) {
            return Err(Error::field("/name", "is required"));
        }
        apply_team_input(scope, &mut team, input)?;
        let mut tx = self.store.tenant(scope, Access::Write).await?;
        match tx.team_insert(&team).await {
            Err(StoreError::Conflict(_)) => return Err(Error::Conflict(ConflictKind::NameTaken)),
            other => other?,
        }
        let mut event = ws_event(scope, "team.create", team_target(&team.id));
        event.diff_field("/name", Value::Null, json!(team.name));
        event.diff_field("/grants", Value::Null, grants_json(&team.grants));
        tx.audit_append(&event.seal(meta, now)?).await?;
        tx.commit().await?;
        Ok(team)
    }

    pub async fn list_teams(
        &self,
        scope: &TenantScope,
        after: Option<TeamId>,
        limit: u32,
    ) -> Result<Page<Team>> {
        authorize(scope, Permission::MembersRead)?;
        let limit = limit.clamp(1, LIST_LIMIT_MAX);
        let mut tx = self.store.tenant(scope, Access::Read).await?;
        let rows = tx.teams_list(after.as_ref(), limit + 1).await?;
        Ok(page_of(rows, limit, |t| t.id.to_string()))
    }

    pub async fn get_team(&self, scope: &TenantScope, id: &str) -> Result<Team> {
        authorize(scope, Permission::MembersRead)?;
        let id = TeamId::parse(id).ok_or(Error::NotFound(Resource::Team))?;
        let mut tx = self.store.tenant(scope, Access::Read).await?;
        tx.team_get(&id)
            .await?
            .ok_or(Error::NotFound(Resource::Team))
    }

    /// Renames a team or changes its grants (merge patch).
    #[instrument(skip_all, fields(workspace = %scope.workspace_id()))]
    pub async fn update_team(
        &self,
        scope: &TenantScope,
        id: &str,
        input: TeamInput,
        meta: &RequestMeta,
    ) -> Result<Team> {
        authorize(scope, Permission::MembersManage)?;
        let id = TeamId::parse(id).ok_or(Error::NotFound(Resource::Team))?;
        let now = self.now();
        let mut tx = self.store.tenant(scope, Access::Write).await?;
        let before = tx
            .team_get(&id)
            .await?
            .ok_or(Error::NotFound(Resource::Team))?;
        let mut after = before.clone();
        apply_team_input(scope, &mut after, input)?;
        if after == before {
            return Ok(before);
        }
        after.updated_at = now;
        match tx.team_update(&after).await {
            Err(StoreError::Conflict(_)) => return Err(Error::Conflict(ConflictKind::NameTaken)),
            other => other?,
        }
        let mut event = ws_event(scope, "team.update", team_target(&id));
        event.diff_field("/name", json!(before.name), json!(after.name));
        event.diff_field(
            "/description",
            json!(before.description),
            json!(after.description),
        );
        event.diff_field(
            "/grants",
            grants_json(&before.grants),
            grants_json(&after.grants),
        );
        tx.audit_append(&event.seal(meta, now)?).await?;
        tx.commit().await?;
        Ok(after)
    }

    #[instrument(skip_all, fields(workspace = %scope.workspace_id()))]
    pub async fn delete_team(
        &self,
        scope: &TenantScope,
        id: &str,
        meta: &RequestMeta,
    ) -> Result<()> {
        authorize(scope, Permission::MembersManage)?;
        let id = TeamId::parse(id).ok_or(Error::NotFound(Resource::Team))?;
        let now = self.now();
        let mut tx = self.store.tenant(scope, Access::Write).await?;
        let team = tx
            .team_get(&id)
            .await?
            .ok_or(Error::NotFound(Resource::Team))?;
        if !team.grants.is_empty() {
            authorize(scope, Permission::RolesManage)?;
        }
        tx.team_delete(&id).await?;
        let mut event = ws_event(scope, "team.delete", team_target(&id));
        event.diff_field("/name", json!(team.name), Value::Null);
        event.diff_field("/grants", grants_json(&team.grants), Value::Null);
        tx.audit_append(&event.seal(meta, now)?).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Adds a member to a team; adding twice changes nothing. A team with grants changes what
    /// its members may do, so that also needs `roles.manage`.
    #[instrument(skip_all, fields(workspace = %scope.workspace_id()))]
    pub async fn add_team_member(
        &self,
        scope: &TenantScope,
        team: &str,
        member: &str,
        meta: &RequestMeta,
    ) -> Result<MemberView> {
        self.team_membership(scope, team, member, true, meta).await
    }

    #[instrument(skip_all, fields(workspace = %scope.workspace_id()))]
    pub async fn remove_team_member(
        &self,
        scope: &TenantScope,
        team: &str,
        member: &str,
        meta: &RequestMeta,
    ) -> Result<()> {
        self.team_membership(scope, team, member, false, meta)
            .await
            .map(|_| ())
    }

    async fn team_membership(
        &self,
        scope: &TenantScope,
        team: &str,
        member: &str,
        add: bool,
        meta: &RequestMeta,
    ) -> Result<MemberView> {
        authorize(scope, Permission::MembersManage)?;
        let team_id = TeamId::parse(team).ok_or(Error::NotFound(Resource::Team))?;
        let member_id = MemberId::parse(member).ok_or(Error::NotFound(Resource::Member))?;
        let now = self.now();
        let mut tx = self.store.tenant(scope, Access::Write).await?;
        let team = tx
            .team_get(&team_id)
            .await?
            .ok_or(Error::NotFound(Resource::Team))?;
        if !team.grants.is_empty() {
            authorize(scope, Permission::RolesManage)?;
        }
        let view = tx
            .member_get(&member_id)
            .await?
            .ok_or(Error::NotFound(Resource::Member))?;
        let changed = if add {
            tx.team_member_add(&team_id, &view.member, now).await?
        } else {
            tx.team_member_remove(&team_id, &member_id).await?
        };
        if !add && !changed {
            return Err(Error::NotFound(Resource::Member));
        }
        if changed {
            let action = if add {
                "team.member_add"
            } else {
                "team.member_remove"
            };
            let mut event = ws_event(scope, action, team_target(&team_id));
            event
                .extra
                .insert("member".into(), json!(member_id.as_str()));
            tx.audit_append(&event.seal(meta, now)?).await?;
            tx.commit().await?;
        }
        Ok(view)
    }

    pub async fn list_team_members(
        &self,
        scope: &TenantScope,
        team: &str,
        after: Option<MemberId>,
        limit: u32,
    ) -> Result<Page<MemberView>> {
        authorize(scope, Permission::MembersRead)?;
        let team = TeamId::parse(team).ok_or(Error::NotFound(Resource::Team))?;
        let limit = limit.clamp(1, LIST_LIMIT_MAX);
        let mut tx = self.store.tenant(scope, Access::Read).await?;
        tx.team_get(&team)
            .await?
            .ok_or(Error::NotFound(Resource::Team))?;
        let rows = tx.team_members(&team, after.as_ref(), limit + 1).await?;
        Ok(page_of(rows, limit, |m| m.member.id.to_string()))
    }
}

/// Validates and applies a team merge patch.
fn apply_team_input(scope: &TenantScope, team: &mut Team, input: TeamInput) -> Result<()> {
    let mut checks = Checks::new();
    match &input.name {
        Patch::Null => checks.fail("/name", "must not be null"),
        Patch::Value(name) => checks.text("/name", name, 1, 100),
        Patch::Absent => {}
    }
    if let Patch::Value(d) = &input.description {
        checks.text("/description", d, 1, 500);
    }
    let grants = match &input.grants {
        Patch::Value(g) => Some(check_grants(&mut checks, scope, g)),
        Patch::Null => Some(Vec::new()),
        Patch::Absent => None,
    };
    checks.finish()?;
    if grants.as_ref().is_some_and(|g| *g != team.grants) {
        authorize(scope, Permission::RolesManage)?;
    }
    if let Patch::Value(name) = input.name {
        team.name = name;
    }
    match input.description {
        Patch::Absent => {}
        Patch::Null => team.description = None,
        Patch::Value(d) => team.description = Some(d),
    }
    if let Some(grants) = grants {
        team.grants = grants;
    }
    Ok(())
}
