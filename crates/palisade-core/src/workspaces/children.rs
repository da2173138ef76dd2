//! Child workspaces (TEN-3) and the workspace auth policy (TEN-4).
//!
//! A parent's owners run a child's lifecycle (create, list, suspend, resume, delete) and see
//! its metadata; nothing else. The change and its entry in the child's own log commit together;
//! the parent's log then records the operation in a second transaction.

use serde_json::{Value, json};
use time::OffsetDateTime;
use tracing::instrument;

use super::members::lock_workspace;
use super::model::{AuthPolicy, AuthPolicyPatch, NewChild, Page, Patch, Workspace};
use super::service::{
    ChildOf, LIST_LIMIT_MAX, check_auth_policy, check_new_workspace, page_of, workspace_target,
    write_workspace, ws_event,
};
use crate::acl::{Permission, authorize};
use crate::app::Services;
use crate::error::{ConflictKind, Error, Resource, Result};
use crate::ids::WorkspaceId;
use crate::principal::{RequestMeta, SignInMethod};
use crate::store::Access;
use crate::tenancy::TenantScope;
use crate::validate::{Checks, normalize_email};
use crate::webhooks::service::disable_endpoint;

/// What a parent's owner does to a child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    Suspend,
    Resume,
    Delete,
}

impl Lifecycle {
    fn actions(self) -> (&'static str, &'static str) {
        match self {
            Lifecycle::Suspend => ("workspace.suspend", "workspace.child_suspend"),
            Lifecycle::Resume => ("workspace.resume", "workspace.child_resume"),
            Lifecycle::Delete => ("workspace.delete", "workspace.child_delete"),
        }
    }
}

/// Session lifetimes a policy may cap to: five minutes to a year.
const SESSION_MAX_RANGE: std::ops::RangeInclusive<u32> = 300..=31_536_000;

impl Services {
    /// Creates a child workspace (needs `children.manage`). Without `owner_email` the caller
    /// owns it; with it, an owner invitation goes out and the caller does not join.
    #[instrument(skip_all, fields(workspace = %scope.workspace_id()))]
    pub async fn create_child(
        &self,
        scope: &TenantScope,
        input: NewChild,
        meta: &RequestMeta,
    ) -> Result<Workspace> {
        authorize(scope, Permission::ChildrenManage)?;
        let owner_email = input.owner_email.as_deref().map(normalize_email);
        let mut checks = Checks::new();
        check_new_workspace(&mut checks, &input.name, input.slug.as_deref());
        if let Some(email) = &owner_email {
            checks.email("/owner_email", email);
        }
        checks.finish()?;
        let parent = self.get_workspace(scope).await?;
        let inviter = self.on_behalf_of(scope.principal()).await?;
        let child_of = ChildOf {
            parent: &parent,
            owner_email,
        };
        let (child, invitation) = self
            .new_workspace(
                scope.principal(),
                &input.name,
                input.slug,
                Some(&child_of),
                meta,
            )
            .await?;
        let now = self.now();
        let mut tx = self.store.tenant(scope, Access::Write).await?;
        let mut event = ws_event(scope, "workspace.child_create", workspace_target(&child.id));
        event.diff_field("/name", Value::Null, json!(child.name));
        event.diff_field("/slug", Value::Null, json!(child.slug));
        event
            .extra
            .insert("owner_invited".into(), json!(invitation.is_some()));
        tx.audit_append(&event.seal(meta, now)?).await?;
        tx.commit().await?;
        if let Some((invitation, token)) = invitation {
            self.outbox
                .send(self.invitation_mail(&child, &inviter.name, &invitation, &token));
        }
        Ok(child)
    }

    /// The children's metadata, in id order (needs `children.manage`).
    pub async fn list_children(
        &self,
        scope: &TenantScope,
        after: Option<WorkspaceId>,
        limit: u32,
    ) -> Result<Page<Workspace>> {
        authorize(scope, Permission::ChildrenManage)?;
        let limit = limit.clamp(1, LIST_LIMIT_MAX);
        let mut tx = self.store.tenant(scope, Access::Read).await?;
        let rows = tx.children_list(after.as_ref(), limit + 1).await?;
        Ok(page_of(rows, limit, |w| w.id.to_string()))
    }

    /// Suspends, resumes or deletes a child (by id or slug). Deleting is refused while the
    /// child has children of its own; a deleted workspace is gone for every member.
    #[instrument(skip_all, fields(workspace = %scope.workspace_id()))]
    pub async fn child_lifecycle(
        &self,
        scope: &TenantScope,
        key: &str,
        op: Lifecycle,
        meta: &RequestMeta,
    ) -> Result<Workspace> {
        authorize(scope, Permission::ChildrenManage)?;
        let child_id = {
            let mut tx = self.store.tenant(scope, Access::Read).await?;
            tx.child_get(key)
                .await?
                .ok_or(Error::NotFound(Resource::Child))?
                .id
        };
        let now = self.now();
        let child_scope = TenantScope::for_parent_owner(child_id, scope.principal().clone());
        let mut tx = self.store.tenant(&child_scope, Access::Write).await?;
        // Only a missing child is a 404; a database error stays an error.
        let before = match lock_workspace(&mut tx).await {
            Err(Error::NotFound(_)) => return Err(Error::NotFound(Resource::Child)),
            other => other?,
        };
        if before.parent_id.as_ref() != Some(scope.workspace_id()) {
            return Err(Error::NotFound(Resource::Child));
        }
        let mut after = before.clone();
        match op {
            Lifecycle::Suspend => after.suspended_at = after.suspended_at.or(Some(now)),
            Lifecycle::Resume => after.suspended_at = None,
            Lifecycle::Delete => {
                if tx.children_count().await? > 0 {
                    return Err(Error::Conflict(ConflictKind::HasChildren));
                }
                after.deleted_at = Some(now);
                // Nothing of a deleted workspace leaves any more: its endpoints are disabled
                // and their pending deliveries paused, in the deletion's transaction.
                for mut endpoint in tx.webhooks_enabled().await? {
                    disable_endpoint(&mut *tx, &mut endpoint, "workspace_deleted", now).await?;
                }
            }
        }
        if after == before {
            return Ok(before);
        }
        after.updated_at = now;
        write_workspace(&mut tx, &after).await?;
        let (own, parents) = op.actions();
        let mut event = ws_event(&child_scope, own, workspace_target(&after.id));
        let ts = |t: Option<OffsetDateTime>| {
            t.map_or(Value::Null, |t| json!(crate::audit::format_ts(t)))
        };
        event.diff_field(
            "/suspended_at",
            ts(before.suspended_at),
            ts(after.suspended_at),
        );
        event.diff_field("/deleted_at", ts(before.deleted_at), ts(after.deleted_at));
        event
            .extra
            .insert("parent".into(), json!(scope.workspace_id().as_str()));
        tx.audit_append(&event.seal(meta, now)?).await?;
        tx.commit().await?;

        let mut tx = self.store.tenant(scope, Access::Write).await?;
        let event = ws_event(scope, parents, workspace_target(&after.id));
        tx.audit_append(&event.seal(meta, now)?).await?;
        tx.commit().await?;
        self.propagate_key_change(&after.id).await;
        Ok(after)
    }

    pub async fn get_auth_policy(&self, scope: &TenantScope) -> Result<AuthPolicy> {
        Ok(self.get_workspace(scope).await?.auth_policy)
    }

    /// Changes the auth policy (needs `auth_policy.manage`). A policy that would refuse the
    /// caller's own session is refused, naming the field, so nobody locks themselves out.
    #[instrument(skip_all, fields(workspace = %scope.workspace_id()))]
    pub async fn update_auth_policy(
        &self,
        scope: &TenantScope,
        patch: AuthPolicyPatch,
        meta: &RequestMeta,
    ) -> Result<AuthPolicy> {
        authorize(scope, Permission::AuthPolicyManage)?;
        let mut checks = Checks::new();
        for (pointer, null) in [
            (
                "/sign_in_methods",
                matches!(patch.sign_in_methods, Patch::Null),
            ),
            ("/mfa_required", matches!(patch.mfa_required, Patch::Null)),
        ] {
            if null {
                checks.fail(pointer, "must not be null");
            }
        }
        let mut methods = Vec::new();
        if let Patch::Value(list) = &patch.sign_in_methods {
            if list.is_empty() {
                checks.fail("/sign_in_methods", "must allow at least one method");
            }
            for (i, m) in list.iter().enumerate() {
                match SignInMethod::parse(m) {
                    Some(m) if !methods.contains(&m) => methods.push(m),
                    Some(_) => {}
                    None => checks.fail(
                        &format!("/sign_in_methods/{i}"),
                        "must be password or magic_link",
                    ),
                }
            }
        }
        if let Patch::Value(secs) = patch.session_max_secs
            && !SESSION_MAX_RANGE.contains(&secs)
        {
            checks.fail(
                "/session_max_secs",
                format!(
                    "must be between {} and {} seconds",
                    SESSION_MAX_RANGE.start(),
                    SESSION_MAX_RANGE.end()
                ),
            );
        }
        let floor = crate::accounts::service::PASSWORD_MIN as u32;
        let ceiling = crate::accounts::service::PASSWORD_MAX as u32;
        if let Patch::Value(len) = patch.password_min_length
            && !(floor..=ceiling).contains(&len)
        {
            checks.fail(
                "/password_min_length",
                format!("must be between {floor} and {ceiling}"),
            );
        }
        checks.finish()?;

        let now = self.now();
        let mut tx = self.store.tenant(scope, Access::Write).await?;
        let mut workspace = lock_workspace(&mut tx).await?;
        let before = workspace.auth_policy.clone();
        let mut after = before.clone();
        if matches!(patch.sign_in_methods, Patch::Value(_)) {
            after.sign_in_methods = methods;
        }
        match patch.session_max_secs {
            Patch::Absent => {}
            Patch::Null => after.session_max_secs = None,
            Patch::Value(v) => after.session_max_secs = Some(v),
        }
        match patch.password_min_length {
            Patch::Absent => {}
            Patch::Null => after.password_min_length = None,
            Patch::Value(v) => after.password_min_length = Some(v),
        }
        if let Patch::Value(v) = patch.mfa_required {
            after.mfa_required = v;
        }
        if after == before {
            return Ok(before);
        }
        if let Err(Error::ReauthenticationRequired(why)) =
            check_auth_policy(&after, scope.principal(), now)
        {
            let pointer = if why == "sign_in_method" {
                "/sign_in_methods"
            } else {
                "/session_max_secs"
            };
            return Err(Error::field(
                pointer,
                "would refuse your own session; sign in an allowed way first",
            ));
        }
        workspace.auth_policy = after.clone();
        workspace.updated_at = now;
        write_workspace(&mut tx, &workspace).await?;
        let mut event = ws_event(
            scope,
            "workspace.auth_policy_update",
            workspace_target(&workspace.id),
        );
        let json_of = |p: &AuthPolicy| serde_json::to_value(p).unwrap_or(Value::Null);
        let (b, a) = (json_of(&before), json_of(&after));
        for key in [
            "sign_in_methods",
            "session_max_secs",
            "password_min_length",
            "mfa_required",
        ] {
            event.diff_field(&format!("/{key}"), b[key].clone(), a[key].clone());
        }
        tx.audit_append(&event.seal(meta, now)?).await?;
        tx.commit().await?;
        Ok(after)
    }
}
