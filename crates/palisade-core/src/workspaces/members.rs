//! Members (ACL-1, ACL-5) and invitations (ACL-7): list, change, deactivate, remove, leave;
//! invite, list, revoke, accept. Every change runs with the workspace row locked, so the
//! last-owner rule holds under concurrent requests on both backends.

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tracing::instrument;

use super::model::{
    CustomRole, Invitation, Member, MemberPatch, MemberView, Module, Page, Patch, Workspace,
};
use super::service::{LIST_LIMIT_MAX, page_of, ws_event};
use crate::acl::{Permission, Role, authorize};
use crate::app::Services;
use crate::audit::{Actor, AuditEvent, AuditLog, Target};
use crate::crypto::{random, sha256};
use crate::error::{ConflictKind, Error, Resource, Result, StoreError};
use crate::ids::{CustomRoleId, InvitationId, MemberId, UserId};
use crate::mail::templates::{self, Brand};
use crate::principal::{Principal, RequestMeta};
use crate::store::{Access, TenantTx};
use crate::tenancy::{SystemScope, TenantScope};
use crate::validate::{Checks, normalize_email};
use crate::webhooks::outbox::Change;

/// A member event for webhooks: ids and access, never the member's email or name.
fn member_change(event_type: &'static str, m: &Member) -> Change {
    Change::new(
        event_type,
        json!({
            "id": m.id,
            "user_id": m.user_id,
            "role": m.role.as_str(),
            "custom_role": m.custom_role_id,
            "active": m.active,
        }),
    )
}

pub(super) fn member_target(id: &MemberId) -> Target {
    Target {
        kind: "member".into(),
        id: id.to_string(),
    }
}

fn invitation_target(id: &InvitationId) -> Target {
    Target {
        kind: "invitation".into(),
        id: id.to_string(),
    }
}

fn parse_role(checks: &mut Checks, pointer: &str, text: &str) -> Option<Role> {
    let role = Role::parse(text);
    if role.is_none() {
        checks.fail(pointer, "must be one of owner, admin, member, billing");
    }
    role
}

/// Granting or touching the owner role needs `owners.manage` (owners only).
fn authorize_owner_change(scope: &TenantScope, roles: &[Role]) -> Result<()> {
    if roles.contains(&Role::Owner) {
        authorize(scope, Permission::OwnersManage)?;
    }
    Ok(())
}

/// The workspace, locked until commit: every membership change of a workspace queues here.
pub(crate) async fn lock_workspace(tx: &mut Box<dyn TenantTx>) -> Result<Workspace> {
    tx.workspace_get()
        .await?
        .filter(|w| w.deleted_at.is_none())
        .ok_or(Error::NotFound(Resource::Workspace))
}

/// Refuses a change that leaves no active owner (ACL-5). `member` is the row before the change;
/// the workspace row must be locked by this transaction.
async fn keep_an_owner(
    tx: &mut Box<dyn TenantTx>,
    member: &Member,
    after: Option<&Member>,
) -> Result<()> {
    let was_owner = member.active && member.role == Role::Owner;
    let stays_owner = after.is_some_and(|m| m.active && m.role == Role::Owner);
    if was_owner && !stays_owner && tx.owners_active().await? <= 1 {
        return Err(Error::Conflict(ConflictKind::LastOwner));
    }
    Ok(())
}

/// A custom role to assign: the module must be on, the role must exist, and it may not grant
/// what the member's enum role lacks.
async fn assignable_role(
    tx: &mut Box<dyn TenantTx>,
    workspace: &Workspace,
    pointer: &str,
    text: &str,
    role: Role,
) -> Result<CustomRole> {
    if !workspace.has_module(Module::AdvancedRbac) {
        return Err(Error::ModuleDisabled(Module::AdvancedRbac.as_str()));
    }
    let custom = match CustomRoleId::parse(text) {
        Some(id) => tx.custom_role_get(&id).await?,
        None => None,
    }
    .ok_or_else(|| Error::field(pointer, "is not a custom role of this workspace"))?;
    let beyond = custom.permissions.difference(role.permissions());
    if !beyond.is_empty() {
        return Err(Error::Validation(vec![crate::error::FieldError::new(
            pointer,
            format!(
                "grants what the {} role does not hold: {}",
                role.as_str(),
                beyond.keys().join(", ")
            ),
        )]));
    }
    Ok(custom)
}

fn member_diff(event: &mut AuditEvent, before: Option<&Member>, after: Option<&Member>) {
    let role = |m: Option<&Member>| m.map_or(Value::Null, |m| json!(m.role.as_str()));
    let custom = |m: Option<&Member>| {
        m.and_then(|m| m.custom_role_id.as_ref())
            .map_or(Value::Null, |r| json!(r.as_str()))
    };
    let active = |m: Option<&Member>| m.map_or(Value::Null, |m| json!(m.active));
    event.diff_field("/role", role(before), role(after));
    event.diff_field("/custom_role", custom(before), custom(after));
    event.diff_field("/active", active(before), active(after));
    if let Some(user) = before.or(after).map(|m| &m.user_id) {
        event.extra.insert("user".into(), json!(user.as_str()));
    }
}

impl Services {
    /// The workspace's members in id order (needs `members.read`).
    pub async fn list_members(
        &self,
        scope: &TenantScope,
        after: Option<MemberId>,
        limit: u32,
    ) -> Result<Page<MemberView>> {
        authorize(scope, Permission::MembersRead)?;
        let limit = limit.clamp(1, LIST_LIMIT_MAX);
        let mut tx = self.store.tenant(scope, Access::Read).await?;
        let rows = tx.members_list(after.as_ref(), limit + 1).await?;
        Ok(page_of(rows, limit, |m| m.member.id.to_string()))
    }

    pub async fn get_member(&self, scope: &TenantScope, id: &str) -> Result<MemberView> {
        authorize(scope, Permission::MembersRead)?;
        let id = MemberId::parse(id).ok_or(Error::NotFound(Resource::Member))?;
        let mut tx = self.store.tenant(scope, Access::Read).await?;
        tx.member_get(&id)
            .await?
            .ok_or(Error::NotFound(Resource::Member))
    }

    /// Changes a member's role, custom role or active flag (merge patch). Owners' memberships
    /// and the owner role need `owners.manage`; the last active owner stays one (ACL-5).
    #[instrument(skip_all, fields(workspace = %scope.workspace_id()))]
    pub async fn update_member(
        &self,
        scope: &TenantScope,
        id: &str,
        patch: MemberPatch,
        meta: &RequestMeta,
    ) -> Result<MemberView> {
        authorize(scope, Permission::MembersManage)?;
        let mut checks = Checks::new();
        for (pointer, null) in [
            ("/role", matches!(patch.role, Patch::Null)),
            ("/active", matches!(patch.active, Patch::Null)),
        ] {
            if null {
                checks.fail(pointer, "must not be null");
            }
        }
        let role = match &patch.role {
            Patch::Value(text) => parse_role(&mut checks, "/role", text),
            _ => None,
        };
        checks.finish()?;
        let id = MemberId::parse(id).ok_or(Error::NotFound(Resource::Member))?;

        let keys = self.owner_keys(scope.workspace_id().as_str()).await?;
        let now = self.now();
        let mut tx = self.store.tenant(scope, Access::Write).await?;
        let workspace = lock_workspace(&mut tx).await?;
        let view = tx
            .member_get(&id)
            .await?
            .ok_or(Error::NotFound(Resource::Member))?;
        let before = view.member.clone();
        let mut after = before.clone();
        if let Some(role) = role {
            after.role = role;
        }
        if let Patch::Value(active) = patch.active {
            after.active = active;
        }
        authorize_owner_change(scope, &[before.role, after.role])?;
        match &patch.custom_role {
            Patch::Absent => {}
            Patch::Null => after.custom_role_id = None,
            Patch::Value(text) => {
                let custom =
                    assignable_role(&mut tx, &workspace, "/custom_role", text, after.role).await?;
                after.custom_role_id = Some(custom.id);
            }
        }
        if after == before {
            return Ok(view);
        }
        keep_an_owner(&mut tx, &before, Some(&after)).await?;
        after.updated_at = now;
        tx.member_update(&after).await?;
        let mut event = ws_event(scope, "member.update", member_target(&after.id));
        member_diff(&mut event, Some(&before), Some(&after));
        tx.audit_append(&event.seal(meta, now)?).await?;
        let change = member_change("member.updated", &after);
        self.emit(&mut *tx, &keys, scope.workspace_id(), change, now)
            .await?;
        tx.commit().await?;
        Ok(MemberView {
            member: after,
            ..view
        })
    }

    /// Removes a member (and their team memberships).
    #[instrument(skip_all, fields(workspace = %scope.workspace_id()))]
    pub async fn remove_member(
        &self,
        scope: &TenantScope,
        id: &str,
        meta: &RequestMeta,
    ) -> Result<()> {
        authorize(scope, Permission::MembersManage)?;
        let id = MemberId::parse(id).ok_or(Error::NotFound(Resource::Member))?;
        let keys = self.owner_keys(scope.workspace_id().as_str()).await?;
        let now = self.now();
        let mut tx = self.store.tenant(scope, Access::Write).await?;
        lock_workspace(&mut tx).await?;
        let member = tx
            .member_get(&id)
            .await?
            .ok_or(Error::NotFound(Resource::Member))?
            .member;
        authorize_owner_change(scope, &[member.role])?;
        keep_an_owner(&mut tx, &member, None).await?;
        tx.member_delete(&id).await?;
        let mut event = ws_event(scope, "member.delete", member_target(&id));
        member_diff(&mut event, Some(&member), None);
        tx.audit_append(&event.seal(meta, now)?).await?;
        let change = member_change("member.removed", &member);
        self.emit(&mut *tx, &keys, scope.workspace_id(), change, now)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The caller leaves the workspace; the last active owner cannot.
    #[instrument(skip_all, fields(workspace = %scope.workspace_id()))]
    pub async fn leave_workspace(&self, scope: &TenantScope, meta: &RequestMeta) -> Result<()> {
        if scope.suspended() {
            return Err(Error::WorkspaceSuspended);
        }
        let keys = self.owner_keys(scope.workspace_id().as_str()).await?;
        let now = self.now();
        let mut tx = self.store.tenant(scope, Access::Write).await?;
        lock_workspace(&mut tx).await?;
        let member = tx
            .member_of_user(scope.principal().user_id()?)
            .await?
            .ok_or(Error::NotFound(Resource::Workspace))?;
        keep_an_owner(&mut tx, &member, None).await?;
        tx.member_delete(&member.id).await?;
        let mut event = ws_event(scope, "member.leave", member_target(&member.id));
        member_diff(&mut event, Some(&member), None);
        tx.audit_append(&event.seal(meta, now)?).await?;
        let change = member_change("member.removed", &member);
        self.emit(&mut *tx, &keys, scope.workspace_id(), change, now)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Invites an address (ACL-7): a single-use link, valid 7 days by default, mailed in the
    /// workspace's branding. A newer invitation to the same address replaces the open one.
    #[instrument(skip_all, fields(workspace = %scope.workspace_id()))]
    pub async fn invite(
        &self,
        scope: &TenantScope,
        email: &str,
        role: &str,
        custom_role: Option<&str>,
        meta: &RequestMeta,
    ) -> Result<Invitation> {
        authorize(scope, Permission::MembersManage)?;
        let email = normalize_email(email);
        let mut checks = Checks::new();
        checks.email("/email", &email);
        let role = parse_role(&mut checks, "/role", role);
        checks.finish()?;
        let Some(role) = role else {
            return Err(Error::field("/role", "must be a role"));
        };
        authorize_owner_change(scope, &[role])?;
        let existing = {
            let mut tx = self
                .store
                .accounts(Some(scope.principal().on_behalf_of()), Access::Read)
                .await?;
            tx.user_by_email(&email).await?.map(|(u, _)| u.id)
        };
        let inviter = self.on_behalf_of(scope.principal()).await?;

        let now = self.now();
        let mut tx = self.store.tenant(scope, Access::Write).await?;
        let workspace = lock_workspace(&mut tx).await?;
        let custom = match custom_role {
            Some(text) => {
                Some(assignable_role(&mut tx, &workspace, "/custom_role", text, role).await?)
            }
            None => None,
        };
        if let Some(user) = &existing
            && tx.member_of_user(user).await?.is_some()
        {
            return Err(Error::Conflict(ConflictKind::AlreadyMember));
        }
        let (invitation, token) = self
            .new_invitation(
                &mut tx,
                scope,
                &email,
                role,
                custom.map(|c| c.id),
                meta,
                now,
            )
            .await?;
        tx.commit().await?;
        self.outbox
            .send(self.invitation_mail(&workspace, &inviter.name, &invitation, &token));
        Ok(invitation)
    }

    /// Stores an invitation (replacing open ones to the address) and audits it; the token is
    /// returned once, for the email.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn new_invitation(
        &self,
        tx: &mut Box<dyn TenantTx>,
        scope: &TenantScope,
        email: &str,
        role: Role,
        custom_role_id: Option<CustomRoleId>,
        meta: &RequestMeta,
        now: time::OffsetDateTime,
    ) -> Result<(Invitation, SecretString)> {
        for replaced in tx.invitations_revoke_open(email, now).await? {
            let event = ws_event(scope, "invitation.revoke", invitation_target(&replaced))
                .reason("replaced");
            tx.audit_append(&event.seal(meta, now)?).await?;
        }
        let token = SecretString::from(random::token()?);
        let invitation = Invitation {
            id: InvitationId::generate(),
            workspace_id: scope.workspace_id().clone(),
            email: email.to_owned(),
            role,
            custom_role_id,
            token_hash: sha256(token.expose_secret().as_bytes()),
            invited_by: scope.principal().on_behalf_of().clone(),
            created_at: now,
            expires_at: now + self.settings.accounts.invitation_ttl(),
            accepted_at: None,
            accepted_by: None,
            revoked_at: None,
        };
        tx.invitation_insert(&invitation).await?;
        let mut event = ws_event(
            scope,
            "invitation.create",
            invitation_target(&invitation.id),
        )
        .personal("/email", json!(invitation.email));
        event.diff_field("/role", Value::Null, json!(role.as_str()));
        if let Some(custom) = &invitation.custom_role_id {
            event.diff_field("/custom_role", Value::Null, json!(custom.as_str()));
        }
        event.extra.insert(
            "expires_at".into(),
            json!(crate::audit::format_ts(invitation.expires_at)),
        );
        tx.audit_append(&event.seal(meta, now)?).await?;
        Ok((invitation, token))
    }

    pub(super) fn invitation_mail(
        &self,
        workspace: &Workspace,
        inviter: &str,
        invitation: &Invitation,
        token: &SecretString,
    ) -> crate::mail::Email {
        let brand = Brand::workspace(&workspace.branding, &workspace.name, &self.settings.brand);
        templates::invitation(
            &brand,
            &invitation.email,
            inviter,
            invitation.role.as_str(),
            &self.link("auth/invitation", token),
            self.settings.accounts.invitation_ttl(),
        )
    }

    /// Invitations, newest first (needs `members.read`).
    pub async fn list_invitations(
        &self,
        scope: &TenantScope,
        before: Option<InvitationId>,
        limit: u32,
    ) -> Result<Page<Invitation>> {
        authorize(scope, Permission::MembersRead)?;
        let limit = limit.clamp(1, LIST_LIMIT_MAX);
        let mut tx = self.store.tenant(scope, Access::Read).await?;
        let rows = tx.invitations_list(before.as_ref(), limit + 1).await?;
        Ok(page_of(rows, limit, |i| i.id.to_string()))
    }

    /// Revokes an open invitation: its link stops working at once.
    #[instrument(skip_all, fields(workspace = %scope.workspace_id()))]
    pub async fn revoke_invitation(
        &self,
        scope: &TenantScope,
        id: &str,
        meta: &RequestMeta,
    ) -> Result<()> {
        authorize(scope, Permission::MembersManage)?;
        let id = InvitationId::parse(id).ok_or(Error::NotFound(Resource::Invitation))?;
        let now = self.now();
        let mut tx = self.store.tenant(scope, Access::Write).await?;
        let invitation = tx
            .invitation_get(&id)
            .await?
            .ok_or(Error::NotFound(Resource::Invitation))?;
        authorize_owner_change(scope, &[invitation.role])?;
        if !tx.invitation_revoke(&id, now).await? {
            return Err(Error::NotFound(Resource::Invitation));
        }
        let event = ws_event(scope, "invitation.revoke", invitation_target(&id));
        tx.audit_append(&event.seal(meta, now)?).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Accepts an invitation as the signed-in user, whose address must be the invited one.
    /// Unknown, used, revoked and expired tokens get the same `invalid_token`. The token
    /// proves the address, so an unverified one becomes verified.
    #[instrument(skip_all)]
    pub async fn accept_invitation(
        &self,
        principal: &Principal,
        token: &SecretString,
        meta: &RequestMeta,
    ) -> Result<(Workspace, MemberView)> {
        let hash = sha256(token.expose_secret().as_bytes());
        let invitation = {
            let mut tx = self
                .store
                .system(
                    &SystemScope::new("invitation lookup by token"),
                    Access::Read,
                )
                .await?;
            tx.invitation_by_token(&hash).await?
        }
        .ok_or(Error::InvalidToken)?;
        let user = self.me(principal).await?;
        let now = self.now();
        if invitation.status(now) != "pending" {
            return Err(Error::InvalidToken);
        }
        if user.email != invitation.email {
            return Err(Error::InvitationMismatch);
        }

        let scope = TenantScope::for_invitee(invitation.workspace_id.clone(), principal.clone());
        let keys = self.owner_keys(scope.workspace_id().as_str()).await?;
        let mut tx = self.store.tenant(&scope, Access::Write).await?;
        let workspace = lock_workspace(&mut tx).await?;
        if tx.member_of_user(&user.id).await?.is_some() {
            return Err(Error::Conflict(ConflictKind::AlreadyMember));
        }
        if !tx.invitation_accept(&invitation.id, &user.id, now).await? {
            return Err(Error::InvalidToken);
        }
        // Deleting a custom role is refused while an open invitation names it.
        let custom_role_id = invitation.custom_role_id.clone();
        let member = Member {
            id: MemberId::generate(),
            workspace_id: workspace.id.clone(),
            user_id: user.id.clone(),
            role: invitation.role,
            custom_role_id,
            active: true,
            created_at: now,
            updated_at: now,
        };
        match tx.member_insert(&member).await {
            Err(StoreError::Conflict(_)) => {
                return Err(Error::Conflict(ConflictKind::AlreadyMember));
            }
            other => other?,
        }
        let accepted = ws_event(
            &scope,
            "invitation.accept",
            invitation_target(&invitation.id),
        );
        tx.audit_append(&accepted.seal(meta, now)?).await?;
        let mut joined = ws_event(&scope, "member.create", member_target(&member.id));
        member_diff(&mut joined, None, Some(&member));
        joined
            .extra
            .insert("invitation".into(), json!(invitation.id.as_str()));
        tx.audit_append(&joined.seal(meta, now)?).await?;
        let change = member_change("member.added", &member);
        self.emit(&mut *tx, &keys, scope.workspace_id(), change, now)
            .await?;
        tx.commit().await?;
        if user.email_verified_at.is_none() {
            self.verify_by_invitation(&user.id, &user.email, meta)
                .await?;
        }
        Ok((
            workspace,
            MemberView {
                member,
                email: user.email,
                name: user.name,
            },
        ))
    }

    /// The open invitation `token` names, for sign-up on an `invite_only` instance: it must be
    /// pending and addressed to `email`.
    pub(crate) async fn invitation_for_sign_up(
        &self,
        token: &SecretString,
        email: &str,
    ) -> Result<Invitation> {
        let hash = sha256(token.expose_secret().as_bytes());
        let invitation = {
            let mut tx = self
                .store
                .system(
                    &SystemScope::new("invitation lookup by token"),
                    Access::Read,
                )
                .await?;
            tx.invitation_by_token(&hash).await?
        };
        match invitation {
            Some(i) if i.status(self.now()) == "pending" && i.email == email => Ok(i),
            Some(i) if i.status(self.now()) == "pending" => Err(Error::InvitationMismatch),
            _ => Err(Error::InvalidToken),
        }
    }

    async fn verify_by_invitation(
        &self,
        user: &UserId,
        email: &str,
        meta: &RequestMeta,
    ) -> Result<()> {
        let now = self.now();
        let mut tx = self.store.accounts(Some(user), Access::Write).await?;
        if tx.user_verify_email(user, email, now).await? {
            let event = AuditEvent::new(
                AuditLog::Instance,
                "auth.email_verified",
                Actor {
                    kind: "user",
                    id: user.to_string(),
                },
                Target {
                    kind: "user".into(),
                    id: user.to_string(),
                },
            )
            .reason("invitation");
            tx.audit_append(&event.seal(meta, now)?).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
