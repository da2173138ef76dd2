//! What arrives by email: address verification (IDN-1), password reset by 6-digit code
//! (IDN-3) and magic links (IDN-4). Requests answer the same whether the address has an
//! account or not, after the same work; the difference is only whether a message goes out.

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tracing::instrument;

use super::model::{ResetCode, TokenPair, TokenPurpose};
use super::policy::RESET_CODE_ATTEMPTS;
use super::service::{
    account_event, check_new_password, unknown_address_event, user_actor, user_target,
};
use crate::app::Services;
use crate::audit::{Actor, AuditResult};
use crate::crypto::{random, sha256};
use crate::error::{Error, Result};
use crate::ids::ResetCodeId;
use crate::limits::Check;
use crate::mail::templates;
use crate::principal::{RequestMeta, SignInMethod};
use crate::store::Access;
use crate::validate::{Checks, normalize_email};

/// Longest token accepted back (ours are 43 characters).
const TOKEN_MAX: usize = 128;

/// A uniformly random 6-digit code: rejection sampling, no modulo bias.
fn reset_code() -> Result<String> {
    loop {
        let n = u32::from_le_bytes(random::bytes::<4>()?);
        // 4_294_000_000 is the largest multiple of 1,000,000 below 2^32.
        if n < 4_294_000_000 {
            return Ok(format!("{:06}", n % 1_000_000));
        }
    }
}

fn check_token(token: &SecretString) -> Result<()> {
    let len = token.expose_secret().len();
    if len == 0 || len > TOKEN_MAX {
        return Err(Error::field(
            "/token",
            "must be the token from the emailed link",
        ));
    }
    Ok(())
}

impl Services {
    /// Charges an attempt to redeem an emailed code or token to the IP's `redeem` budget.
    async fn limit_redeem(&self, meta: &RequestMeta) -> Result<()> {
        let rate = self.settings.limits.auth.redeem_per_ip;
        self.limit_auth(vec![Check::for_ip("redeem_per_ip", rate, meta.ip)], meta)
            .await
    }

    /// Confirms an address with the token of its verification link.
    #[instrument(skip_all)]
    pub async fn verify_email(&self, token: &SecretString, meta: &RequestMeta) -> Result<()> {
        check_token(token)?;
        self.limit_redeem(meta).await?;
        let now = self.now();
        let mut tx = self.store.accounts(None, Access::Write).await?;
        let hash = sha256(token.expose_secret().as_bytes());
        let Some(used) = tx
            .account_token_use(&hash, TokenPurpose::VerifyEmail, now)
            .await?
        else {
            return Err(Error::InvalidToken);
        };
        if tx
            .user_verify_email(&used.user_id, &used.email, now)
            .await?
        {
            let event = account_event(
                "auth.email_verified",
                user_actor(&used.user_id),
                user_target(&used.user_id),
            );
            tx.audit_append(&event.seal(meta, now)?).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Sends a new verification link if the address has an unverified account; answers the
    /// same in every case.
    #[instrument(skip_all)]
    pub async fn resend_verification(&self, email: &str, meta: &RequestMeta) -> Result<()> {
        let limits = &self.settings.limits.auth;
        let Some(email) = self
            .admit_emailing(
                email,
                ("verify_email_per_ip", limits.verify_email_per_ip),
                ("verify_email_per_account", limits.verify_email_per_account),
                meta,
            )
            .await?
        else {
            return Ok(());
        };
        let now = self.now();
        let mut tx = self.store.accounts(None, Access::Write).await?;
        let mail = match tx.user_by_email(&email).await? {
            Some((user, _)) if user.email_verified_at.is_none() => {
                let mail = self.verification_mail(&mut *tx, &user, now).await?;
                let event = account_event(
                    "auth.email_verification_sent",
                    Actor::anonymous(),
                    user_target(&user.id),
                );
                tx.audit_append(&event.seal(meta, now)?).await?;
                Some(mail)
            }
            Some(_) => None,
            None => {
                let event = unknown_address_event("auth.email_verification_sent", &email);
                tx.audit_append(&event.seal(meta, now)?).await?;
                None
            }
        };
        tx.commit().await?;
        if let Some(mail) = mail {
            self.outbox.send(mail);
        }
        Ok(())
    }

    /// Emails a 6-digit reset code if the address has an account (IDN-3). The code is stored
    /// only as Argon2id; an unknown address costs the same hash.
    #[instrument(skip_all)]
    pub async fn request_password_reset(&self, email: &str, meta: &RequestMeta) -> Result<()> {
        let limits = &self.settings.limits.auth;
        let Some(email) = self
            .admit_emailing(
                email,
                ("password_reset_per_ip", limits.password_reset_per_ip),
                (
                    "password_reset_per_account",
                    limits.password_reset_per_account,
                ),
                meta,
            )
            .await?
        else {
            return Ok(());
        };
        let found = {
            let mut tx = self.store.accounts(None, Access::Read).await?;
            tx.user_by_email(&email).await?
        };
        let code = SecretString::from(reset_code()?);
        let code_hash = self.passwords.hash(&code).await?;
        let now = self.now();
        let ttl = self.settings.accounts.reset_code_ttl();
        let mut tx = self.store.accounts(None, Access::Write).await?;
        let Some((user, _)) = found else {
            let event = unknown_address_event("auth.password_reset_requested", &email);
            tx.audit_append(&event.seal(meta, now)?).await?;
            tx.commit().await?;
            return Ok(());
        };
        tx.reset_code_insert(&ResetCode {
            id: ResetCodeId::generate(),
            user_id: user.id.clone(),
            code_hash,
            created_at: now,
            expires_at: now + ttl,
            attempts: 0,
            closed_at: None,
        })
        .await?;
        let event = account_event(
            "auth.password_reset_requested",
            Actor::anonymous(),
            user_target(&user.id),
        );
        tx.audit_append(&event.seal(meta, now)?).await?;
        tx.commit().await?;
        self.outbox.send(templates::password_reset_code(
            &self.settings.brand,
            &user.email,
            code.expose_secret(),
            ttl,
        ));
        Ok(())
    }

    /// Sets a new password with an emailed code. Each guess takes one of the code's attempts
    /// before it is checked, so parallel guesses cannot exceed them; success closes the code,
    /// ends every session of the account and any lockout, and emails a notice.
    #[instrument(skip_all)]
    pub async fn confirm_password_reset(
        &self,
        email: &str,
        code: &SecretString,
        new_password: &SecretString,
        meta: &RequestMeta,
    ) -> Result<()> {
        let email = normalize_email(email);
        let mut checks = Checks::new();
        if email.is_empty() {
            checks.fail("/email", "must not be empty");
        }
        let code_text = code.expose_secret();
        if code_text.len() != 6 || !code_text.bytes().all(|b| b.is_ascii_digit()) {
            checks.fail("/code", "must be the 6-digit code from the email");
        }
        check_new_password(&mut checks, "/new_password", new_password);
        checks.finish()?;
        self.limit_redeem(meta).await?;

        // Take an attempt of the account's open code, if there is one.
        let mut tx = self.store.accounts(None, Access::Write).await?;
        let user = tx.user_by_email(&email).await?.map(|(u, _)| u);
        let mut taken = None;
        if let Some(user) = &user
            && let Some(open) = tx.reset_code_live(&user.id, self.now()).await?
            && let Some(attempt) = tx.reset_code_attempt(&open.id, RESET_CODE_ATTEMPTS).await?
        {
            taken = Some((open, attempt));
        }
        tx.commit().await?;

        let matches = self
            .passwords
            .verify(code, taken.as_ref().map(|(c, _)| c.code_hash.as_str()))
            .await?;
        let now = self.now();
        let (Some(user), Some((open, attempt)), true) = (&user, &taken, matches) else {
            let mut tx = self.store.accounts(None, Access::Write).await?;
            let event = match (&user, &taken) {
                (None, _) => unknown_address_event("auth.password_reset_failed", &email),
                (Some(user), taken) => {
                    let mut event = account_event(
                        "auth.password_reset_failed",
                        Actor::anonymous(),
                        user_target(&user.id),
                    )
                    .with_result(AuditResult::Denied)
                    .reason(if taken.is_some() {
                        "wrong_code"
                    } else {
                        "no_open_code"
                    });
                    if let Some((_, attempt)) = taken {
                        event.extra.insert(
                            "attempt".into(),
                            serde_json::json!({"number": attempt, "of": RESET_CODE_ATTEMPTS}),
                        );
                    }
                    event
                }
            };
            tx.audit_append(&event.seal(meta, now)?).await?;
            tx.commit().await?;
            return Err(Error::InvalidResetCode);
        };
        // Only someone holding the right code learns the workspace rules.
        self.check_workspace_password_rules(&user.id, "/new_password", new_password)
            .await?;
        let hash = self.passwords.hash(new_password).await?;
        let mut tx = self.store.accounts(Some(&user.id), Access::Write).await?;
        if !tx.reset_code_close(&open.id, now).await? {
            // Another request used the same code first.
            return Err(Error::InvalidResetCode);
        }
        tx.user_set_password(&user.id, &hash, now).await?;
        tx.user_verify_email(&user.id, &user.email, now).await?;
        let revoked = tx
            .sessions_revoke_all(&user.id, None, now, "password_reset")
            .await?;
        let mut event = account_event(
            "auth.password_reset",
            user_actor(&user.id),
            user_target(&user.id),
        );
        event.extra.insert("attempt".into(), Value::from(*attempt));
        event
            .extra
            .insert("sessions_revoked".into(), Value::from(revoked.len()));
        tx.audit_append(&event.seal(meta, now)?).await?;
        tx.commit().await?;
        self.outbox.send(templates::password_changed(
            &self.settings.brand,
            &user.email,
            true,
        ));
        Ok(())
    }

    /// Emails a sign-in link if the address has an account (IDN-4).
    #[instrument(skip_all)]
    pub async fn request_magic_link(&self, email: &str, meta: &RequestMeta) -> Result<()> {
        let limits = &self.settings.limits.auth;
        let Some(email) = self
            .admit_emailing(
                email,
                ("magic_link_per_ip", limits.magic_link_per_ip),
                ("magic_link_per_account", limits.magic_link_per_account),
                meta,
            )
            .await?
        else {
            return Ok(());
        };
        let now = self.now();
        let ttl = self.settings.accounts.magic_link_ttl();
        let mut tx = self.store.accounts(None, Access::Write).await?;
        let Some((user, _)) = tx.user_by_email(&email).await? else {
            let event = unknown_address_event("auth.magic_link_requested", &email);
            tx.audit_append(&event.seal(meta, now)?).await?;
            tx.commit().await?;
            return Ok(());
        };
        let token = self
            .issue_token(&mut *tx, TokenPurpose::MagicLink, &user, ttl, now)
            .await?;
        let event = account_event(
            "auth.magic_link_requested",
            Actor::anonymous(),
            user_target(&user.id),
        );
        tx.audit_append(&event.seal(meta, now)?).await?;
        tx.commit().await?;
        self.outbox.send(templates::magic_link(
            &self.settings.brand,
            &user.email,
            &self.link("auth/magic", &token),
            ttl,
        ));
        Ok(())
    }

    /// Signs in with a magic link's token: single use, so the first POST wins and every later
    /// one fails. Opening the link proves the address, so it also verifies it.
    #[instrument(skip_all)]
    pub async fn consume_magic_link(
        &self,
        token: &SecretString,
        meta: &RequestMeta,
    ) -> Result<TokenPair> {
        check_token(token)?;
        self.limit_redeem(meta).await?;
        let now = self.now();
        let mut tx = self.store.accounts(None, Access::Write).await?;
        let hash = sha256(token.expose_secret().as_bytes());
        let Some(used) = tx
            .account_token_use(&hash, TokenPurpose::MagicLink, now)
            .await?
        else {
            return Err(Error::InvalidToken);
        };
        tx.user_verify_email(&used.user_id, &used.email, now)
            .await?;
        tx.user_sign_in_succeeded(&used.user_id).await?;
        let pair = self
            .start_session(&mut *tx, &used.user_id, SignInMethod::MagicLink, meta, now)
            .await?;
        tx.commit().await?;
        Ok(pair)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_codes_are_six_digits() -> Result<()> {
        for _ in 0..200 {
            let c = reset_code()?;
            assert_eq!(c.len(), 6);
            assert!(c.bytes().all(|b| b.is_ascii_digit()));
        }
        Ok(())
    }
}
