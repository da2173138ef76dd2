//! A user's own sessions (IDN-5): list, revoke one, revoke all others, change the password
//! (which revokes the others). A revoked session's refresh token fails at once, and so do its
//! access tokens, since authentication checks the session on every request.

use secrecy::SecretString;
use serde_json::Value;
use tracing::instrument;

use super::model::Session;
use super::service::{account_event, check_new_password, session_target, user_target};
use crate::app::Services;
use crate::audit::{Actor, AuditResult};
use crate::error::{Error, Resource, Result};
use crate::ids::SessionId;
use crate::limits::Check;
use crate::mail::templates;
use crate::principal::{Principal, RequestMeta};
use crate::store::Access;
use crate::validate::Checks;

/// A page of sessions and the cursor of the next one.
#[derive(Debug)]
pub struct SessionPage {
    pub sessions: Vec<Session>,
    pub next: Option<SessionId>,
}

fn current(principal: &Principal) -> Result<&SessionId> {
    principal.session_id()
}

impl Services {
    /// The caller's live sessions, newest first.
    pub async fn list_sessions(
        &self,
        principal: &Principal,
        before: Option<&SessionId>,
        limit: u32,
    ) -> Result<SessionPage> {
        let user = principal.user_id()?;
        let mut tx = self.store.accounts(Some(user), Access::Read).await?;
        let page = tx.sessions_unrevoked(user, before, limit).await?;
        let next = (page.len() == limit as usize)
            .then(|| page.last().map(|s| s.id.clone()))
            .flatten();
        let now = self.now();
        Ok(SessionPage {
            sessions: page.into_iter().filter(|s| s.expires_at > now).collect(),
            next,
        })
    }

    /// Revokes one of the caller's sessions (the current one too: that is signing out).
    #[instrument(skip_all)]
    pub async fn revoke_session(
        &self,
        principal: &Principal,
        id: &SessionId,
        meta: &RequestMeta,
    ) -> Result<()> {
        let user = principal.user_id()?;
        let now = self.now();
        let mut tx = self.store.accounts(Some(user), Access::Write).await?;
        let owned = tx
            .session_get(id)
            .await?
            .filter(|s| &s.user_id == user && s.revoked_at.is_none() && s.expires_at > now);
        if owned.is_none() || !tx.session_revoke(id, now, "revoked_by_user").await? {
            return Err(Error::NotFound(Resource::Session));
        }
        let event = account_event(
            "auth.session_revoked",
            Actor::of(principal),
            session_target(id),
        );
        tx.audit_append(&event.seal(meta, now)?).await?;
        Ok(tx.commit().await?)
    }

    /// Revokes every session of the caller but the current one; returns how many.
    #[instrument(skip_all)]
    pub async fn revoke_other_sessions(
        &self,
        principal: &Principal,
        meta: &RequestMeta,
    ) -> Result<usize> {
        let user = principal.user_id()?;
        let now = self.now();
        let mut tx = self.store.accounts(Some(user), Access::Write).await?;
        let revoked = tx
            .sessions_revoke_all(user, Some(current(principal)?), now, "revoked_by_user")
            .await?;
        let mut event = account_event(
            "auth.sessions_revoked",
            Actor::of(principal),
            user_target(user),
        );
        event.extra.insert(
            "sessions".into(),
            Value::from(revoked.iter().map(ToString::to_string).collect::<Vec<_>>()),
        );
        tx.audit_append(&event.seal(meta, now)?).await?;
        tx.commit().await?;
        Ok(revoked.len())
    }

    /// Changes the caller's password after checking the current one (charged to the same
    /// per-account budget as sign-in, so a stolen session cannot guess it faster); every other
    /// session is revoked and the owner is emailed.
    #[instrument(skip_all)]
    pub async fn change_password(
        &self,
        principal: &Principal,
        current_password: &SecretString,
        new_password: &SecretString,
        meta: &RequestMeta,
    ) -> Result<()> {
        let mut checks = Checks::new();
        check_new_password(&mut checks, "/new_password", new_password);
        checks.finish()?;
        let user_id = principal.user_id()?;
        let (user, credentials) = {
            let mut tx = self.store.accounts(Some(user_id), Access::Read).await?;
            tx.user_with_credentials(user_id)
                .await?
                .ok_or(Error::Unauthenticated)?
        };
        self.check_workspace_password_rules(user_id, "/new_password", new_password)
            .await?;
        self.limit_auth(
            vec![Some(Check::by_personal(
                "sign_in_per_account",
                self.settings.limits.auth.sign_in_per_account,
                "email",
                &user.email,
            ))],
            meta,
        )
        .await?;
        let matches = self
            .passwords
            .verify(current_password, Some(&credentials.password_hash))
            .await?;
        let now = self.now();
        if !matches {
            let mut tx = self.store.accounts(Some(user_id), Access::Write).await?;
            let event = account_event(
                "auth.password_change_failed",
                Actor::of(principal),
                user_target(user_id),
            )
            .with_result(AuditResult::Denied)
            .reason("wrong_password");
            tx.audit_append(&event.seal(meta, now)?).await?;
            tx.commit().await?;
            return Err(Error::field(
                "/current_password",
                "is not the account's current password",
            ));
        }
        let hash = self.passwords.hash(new_password).await?;
        let mut tx = self.store.accounts(Some(user_id), Access::Write).await?;
        tx.user_set_password(user_id, &hash, now).await?;
        let revoked = tx
            .sessions_revoke_all(user_id, Some(current(principal)?), now, "password_changed")
            .await?;
        let mut event = account_event(
            "auth.password_changed",
            Actor::of(principal),
            user_target(user_id),
        );
        event
            .extra
            .insert("sessions_revoked".into(), Value::from(revoked.len()));
        tx.audit_append(&event.seal(meta, now)?).await?;
        tx.commit().await?;
        self.outbox.send(templates::password_changed(
            &self.settings.brand,
            &user.email,
            false,
        ));
        Ok(())
    }
}
