//! Custom roles (ACL-3), behind module `advanced_rbac`: permissions within an enum role's
//! baseline plus per-(collection, field) grants. Stored as given; resolution intersects them
//! with each holder's enum role again, so a role can never lift anyone above their baseline.

use serde_json::{Value, json};
use tracing::instrument;

use super::model::{CustomRole, CustomRoleInput, Module, Page, Patch};
use super::service::{LIST_LIMIT_MAX, is_name, page_of, ws_event};
use super::teams::check_permissions;
use crate::acl::{FieldGrant, Permission, Role, authorize};
use crate::app::Services;
use crate::audit::Target;
use crate::error::{ConflictKind, Error, Resource, Result, StoreError};
use crate::ids::CustomRoleId;
use crate::principal::RequestMeta;
use crate::store::{Access, TenantTx};
use crate::tenancy::TenantScope;
use crate::validate::Checks;

fn role_target(id: &CustomRoleId) -> Target {
    Target {
        kind: "custom_role".into(),
        id: id.to_string(),
    }
}

fn fields_json(fields: &[FieldGrant]) -> Value {
    serde_json::to_value(fields).unwrap_or(Value::Null)
}

/// The module gate: every custom-role endpoint answers 403 `module_disabled` without it.
async fn require_module(tx: &mut Box<dyn TenantTx>) -> Result<()> {
    let workspace = tx
        .workspace_get()
        .await?
        .ok_or(Error::NotFound(Resource::Workspace))?;
    if workspace.has_module(Module::AdvancedRbac) {
        Ok(())
    } else {
        Err(Error::ModuleDisabled(Module::AdvancedRbac.as_str()))
    }
}

/// Validates and applies a custom-role merge patch.
fn apply_role_input(
    scope: &TenantScope,
    role: &mut CustomRole,
    input: CustomRoleInput,
) -> Result<()> {
    let mut checks = Checks::new();
    for (pointer, null) in [
        ("/name", matches!(input.name, Patch::Null)),
        ("/base_role", matches!(input.base_role, Patch::Null)),
        ("/permissions", matches!(input.permissions, Patch::Null)),
    ] {
        if null {
            checks.fail(pointer, "must not be null");
        }
    }
    if let Patch::Value(name) = &input.name {
        checks.text("/name", name, 1, 100);
    }
    if let Patch::Value(d) = &input.description {
        checks.text("/description", d, 1, 500);
    }
    let base = match &input.base_role {
        Patch::Value(text) => Role::parse(text).or_else(|| {
            checks.fail("/base_role", "must be one of owner, admin, member, billing");
            None
        }),
        _ => Some(role.base_role),
    };
    let baseline = base.unwrap_or(role.base_role).permissions();
    let why = format!(
        "is beyond the {} role's baseline",
        base.unwrap_or(role.base_role).as_str()
    );
    let permissions = match &input.permissions {
        Patch::Value(keys) => {
            if keys.len() > 64 {
                checks.fail("/permissions", "must hold at most 64 permissions");
            }
            check_permissions(
                &mut checks,
                scope,
                "/permissions",
                keys,
                Some((baseline, &why)),
            )
        }
        _ => {
            // A narrower base role must still cover the stored permissions.
            for p in role.permissions.difference(baseline).iter() {
                checks.fail(
                    "/base_role",
                    format!("does not hold {}, which the role grants", p.key()),
                );
            }
            role.permissions
        }
    };
    let fields = match &input.fields {
        Patch::Value(f) => f.clone(),
        Patch::Null => Vec::new(),
        Patch::Absent => role.fields.clone(),
    };
    if fields.len() > 500 {
        checks.fail("/fields", "must hold at most 500 grants");
    }
    for (i, f) in fields.iter().enumerate() {
        if !is_name(&f.collection) {
            checks.fail(
                &format!("/fields/{i}/collection"),
                "must be a collection name",
            );
        }
        if f.field != "*" && !is_name(&f.field) {
            checks.fail(&format!("/fields/{i}/field"), "must be a field name or *");
        }
        if f.read && !permissions.contains(Permission::RecordsRead) {
            checks.fail(
                &format!("/fields/{i}/read"),
                "needs records.read in permissions",
            );
        }
        if f.write && !permissions.contains(Permission::RecordsWrite) {
            checks.fail(
                &format!("/fields/{i}/write"),
                "needs records.write in permissions",
            );
        }
    }
    checks.finish()?;
    if let Patch::Value(name) = input.name {
        role.name = name;
    }
    match input.description {
        Patch::Absent => {}
        Patch::Null => role.description = None,
        Patch::Value(d) => role.description = Some(d),
    }
    if let Some(base) = base {
        role.base_role = base;
    }
    role.permissions = permissions;
    role.fields = fields;
    Ok(())
}

impl Services {
    /// Defines a custom role (needs `roles.manage` and module `advanced_rbac`). Permissions
    /// beyond the base role's baseline, or beyond the caller's own, are refused by name.
    #[instrument(skip_all, fields(workspace = %scope.workspace_id()))]
    pub async fn create_custom_role(
        &self,
        scope: &TenantScope,
        input: CustomRoleInput,
        meta: &RequestMeta,
    ) -> Result<CustomRole> {
        authorize(scope, Permission::RolesManage)?;
        let mut tx = self.store.tenant(scope, Access::Write).await?;
        require_module(&mut tx).await?;
        let mut missing = Checks::new();
        for (pointer, absent) in [
            ("/name", matches!(input.name, Patch::Absent)),
            ("/base_role", matches!(input.base_role, Patch::Absent)),
            ("/permissions", matches!(input.permissions, Patch::Absent)),
        ] {
            if absent {
                missing.fail(pointer, "is required");
            }
        }
        missing.finish()?;
        let now = self.now();
        let mut role = CustomRole {
            id: CustomRoleId::generate(),
            workspace_id: scope.workspace_id().clone(),
            name: String::new(),
            description: None,
            base_role: Role::Member,
            permissions: Default::default(),
            fields: Vec::new(),
            created_at: now,
            updated_at: now,
        };
        apply_role_input(scope, &mut role, input)?;
        match tx.custom_role_insert(&role).await {
            Err(StoreError::Conflict(_)) => return Err(Error::Conflict(ConflictKind::NameTaken)),
            other => other?,
        }
        let mut event = ws_event(scope, "custom_role.create", role_target(&role.id));
        event.diff_field("/name", Value::Null, json!(role.name));
        event.diff_field("/base_role", Value::Null, json!(role.base_role.as_str()));
        event.diff_field("/permissions", Value::Null, json!(role.permissions));
        event.diff_field("/fields", Value::Null, fields_json(&role.fields));
        tx.audit_append(&event.seal(meta, now)?).await?;
        tx.commit().await?;
        Ok(role)
    }

    pub async fn list_custom_roles(
        &self,
        scope: &TenantScope,
        after: Option<CustomRoleId>,
        limit: u32,
    ) -> Result<Page<CustomRole>> {
        authorize(scope, Permission::MembersRead)?;
        let limit = limit.clamp(1, LIST_LIMIT_MAX);
        let mut tx = self.store.tenant(scope, Access::Read).await?;
        require_module(&mut tx).await?;
        let rows = tx.custom_roles_list(after.as_ref(), limit + 1).await?;
        Ok(page_of(rows, limit, |r| r.id.to_string()))
    }

    pub async fn get_custom_role(&self, scope: &TenantScope, id: &str) -> Result<CustomRole> {
        authorize(scope, Permission::MembersRead)?;
        let mut tx = self.store.tenant(scope, Access::Read).await?;
        require_module(&mut tx).await?;
        let id = CustomRoleId::parse(id).ok_or(Error::NotFound(Resource::CustomRole))?;
        tx.custom_role_get(&id)
            .await?
            .ok_or(Error::NotFound(Resource::CustomRole))
    }

    #[instrument(skip_all, fields(workspace = %scope.workspace_id()))]
    pub async fn update_custom_role(
        &self,
        scope: &TenantScope,
        id: &str,
        input: CustomRoleInput,
        meta: &RequestMeta,
    ) -> Result<CustomRole> {
        authorize(scope, Permission::RolesManage)?;
        let mut tx = self.store.tenant(scope, Access::Write).await?;
        require_module(&mut tx).await?;
        let id = CustomRoleId::parse(id).ok_or(Error::NotFound(Resource::CustomRole))?;
        let before = tx
            .custom_role_get(&id)
            .await?
            .ok_or(Error::NotFound(Resource::CustomRole))?;
        let mut after = before.clone();
        apply_role_input(scope, &mut after, input)?;
        if after == before {
            return Ok(before);
        }
        let now = self.now();
        after.updated_at = now;
        match tx.custom_role_update(&after).await {
            Err(StoreError::Conflict(_)) => return Err(Error::Conflict(ConflictKind::NameTaken)),
            other => other?,
        }
        let mut event = ws_event(scope, "custom_role.update", role_target(&id));
        event.diff_field("/name", json!(before.name), json!(after.name));
        event.diff_field(
            "/description",
            json!(before.description),
            json!(after.description),
        );
        event.diff_field(
            "/base_role",
            json!(before.base_role.as_str()),
            json!(after.base_role.as_str()),
        );
        event.diff_field(
            "/permissions",
            json!(before.permissions),
            json!(after.permissions),
        );
        event.diff_field(
            "/fields",
            fields_json(&before.fields),
            fields_json(&after.fields),
        );
        tx.audit_append(&event.seal(meta, now)?).await?;
        tx.commit().await?;
        Ok(after)
    }

    /// Deletes a custom role no member or open invitation holds (409 `role_in_use`).
    #[instrument(skip_all, fields(workspace = %scope.workspace_id()))]
    pub async fn delete_custom_role(
        &self,
        scope: &TenantScope,
        id: &str,
        meta: &RequestMeta,
    ) -> Result<()> {
        authorize(scope, Permission::RolesManage)?;
        let mut tx = self.store.tenant(scope, Access::Write).await?;
        require_module(&mut tx).await?;
        let id = CustomRoleId::parse(id).ok_or(Error::NotFound(Resource::CustomRole))?;
        let role = tx
            .custom_role_get(&id)
            .await?
            .ok_or(Error::NotFound(Resource::CustomRole))?;
        if tx.members_with_custom_role(&id).await? > 0
            || tx.invitations_with_custom_role(&id).await? > 0
        {
            return Err(Error::Conflict(ConflictKind::RoleInUse));
        }
        let now = self.now();
        tx.custom_role_delete(&id).await?;
        let mut event = ws_event(scope, "custom_role.delete", role_target(&id));
        event.diff_field("/name", json!(role.name), Value::Null);
        event.diff_field("/permissions", json!(role.permissions), Value::Null);
        tx.audit_append(&event.seal(meta, now)?).await?;
        tx.commit().await?;
        Ok(())
    }
}
