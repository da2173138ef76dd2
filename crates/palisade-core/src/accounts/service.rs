//! Sign-up, sign-in, refresh, sign-out and access-token authentication.

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tracing::instrument;

use super::model::{RefreshToken, Session, SignIn, SignUp, TokenPair, User};
use crate::app::Services;
use crate::audit::{Actor, AuditEvent, AuditLog, AuditResult, Target};
use crate::crypto::{random, sha256};
use crate::error::{ConflictKind, Error, Resource, Result, StoreError};
use crate::ids::{SessionId, UserId};
use crate::limits::Check;
use crate::principal::{Principal, RequestMeta};
use crate::store::{Access, AccountTx};
use crate::validate::{Checks, normalize_email};

pub const PASSWORD_MIN: usize = 10;
pub const PASSWORD_MAX: usize = 256;

fn user_target(id: &UserId) -> Target {
    Target {
        kind: "user".into(),
        id: id.to_string(),
    }
}

fn session_target(id: &SessionId) -> Target {
    Target {
        kind: "session".into(),
        id: id.to_string(),
    }
}

impl Services {
    /// Creates an account (IDN-1). The email is stored lowercased; the password only as Argon2id.
    #[instrument(skip_all)]
    pub async fn sign_up(&self, input: SignUp, meta: &RequestMeta) -> Result<User> {
        let email = normalize_email(&input.email);
        let name = input.name.trim().to_owned();
        let mut checks = Checks::new();
        checks.email("/email", &email);
        checks.text("/name", &name, 1, 200);
        let pw_len = input.password.expose_secret().chars().count();
        if !(PASSWORD_MIN..=PASSWORD_MAX).contains(&pw_len) {
            checks.fail(
                "/password",
                format!("must be {PASSWORD_MIN} to {PASSWORD_MAX} characters"),
            );
        }
        checks.finish()?;

        let domain = email.rsplit_once('@').map_or("", |(_, d)| d);
        let limits = &self.settings.limits.auth;
        self.limit_auth(
            vec![
                Check::for_ip("sign_up_per_ip", limits.sign_up_per_ip, meta.ip),
                Some(Check::by_personal(
                    "sign_up_per_email_domain",
                    limits.sign_up_per_email_domain,
                    "email_domain",
                    domain,
                )),
            ],
            meta,
        )
        .await?;
        let hash = self.passwords.hash(&input.password).await?;
        let now = self.now();
        let user = User {
            id: UserId::generate(),
            email,
            name,
            created_at: now,
            updated_at: now,
        };
        let mut tx = self.store.accounts(Some(&user.id), Access::Write).await?;
        match tx.user_insert(&user, &hash).await {
            Err(StoreError::Conflict(_)) => return Err(Error::Conflict(ConflictKind::EmailTaken)),
            other => other?,
        }
        let event = AuditEvent::new(
            AuditLog::Instance,
            "user.sign_up",
            Actor {
                kind: "user",
                id: user.id.to_string(),
            },
            user_target(&user.id),
        );
        tx.audit_append(&event.seal(meta, now)?).await?;
        tx.commit().await?;
        Ok(user)
    }

    /// Signs in (IDN-2, IDN-5). Unknown email and wrong password get the same error after the
    /// same Argon2 work.
    #[instrument(skip_all)]
    pub async fn sign_in(&self, input: SignIn, meta: &RequestMeta) -> Result<TokenPair> {
        let email = normalize_email(&input.email);
        let mut checks = Checks::new();
        if email.is_empty() {
            checks.fail("/email", "must not be empty");
        }
        let pw_len = input.password.expose_secret().chars().count();
        if pw_len == 0 || pw_len > PASSWORD_MAX {
            checks.fail(
                "/password",
                format!("must be 1 to {PASSWORD_MAX} characters"),
            );
        }
        checks.finish()?;

        // Per account means per address, known or not: refusing only known accounts would
        // tell an attacker which addresses have one.
        self.limit_auth(
            vec![
                Check::for_ip(
                    "sign_in_per_ip",
                    self.settings.limits.auth.sign_in_per_ip,
                    meta.ip,
                ),
                Some(Check::by_personal(
                    "sign_in_per_account",
                    self.settings.limits.auth.sign_in_per_account,
                    "email",
                    &email,
                )),
            ],
            meta,
        )
        .await?;
        let found = {
            let mut tx = self.store.accounts(None, Access::Read).await?;
            tx.user_by_email(&email).await?
        };
        let verified = self
            .passwords
            .verify(&input.password, found.as_ref().map(|(_, h)| h.as_str()))
            .await?;
        let now = self.now();
        let mut tx = self.store.accounts(None, Access::Write).await?;
        let user = match found {
            Some((user, _)) if verified => user,
            other => {
                let known = other.is_some();
                let target = other.map_or(
                    Target {
                        kind: "user".into(),
                        id: String::new(),
                    },
                    |(u, _)| user_target(&u.id),
                );
                let event = AuditEvent::new(
                    AuditLog::Instance,
                    "auth.sign_in_failed",
                    Actor::anonymous(),
                    target,
                )
                .with_result(AuditResult::Denied);
                // An unknown address is kept only as a commitment, opened beside the log; a
                // known one is already named by the target's user id.
                let event = if known {
                    event
                } else {
                    event.personal("/email", Value::String(email.clone()))
                };
                tx.audit_append(&event.seal(meta, now)?).await?;
                tx.commit().await?;
                return Err(Error::InvalidCredentials);
            }
        };
        let session = Session {
            id: SessionId::generate(),
            user_id: user.id.clone(),
            created_at: now,
            expires_at: now + self.settings.refresh_ttl,
            revoked_at: None,
            revoked_reason: None,
        };
        tx.session_insert(&session).await?;
        let refresh = self.new_refresh_token(&mut *tx, &session).await?;
        let event = AuditEvent::new(
            AuditLog::Instance,
            "auth.sign_in",
            Actor {
                kind: "user",
                id: user.id.to_string(),
            },
            session_target(&session.id),
        );
        tx.audit_append(&event.seal(meta, now)?).await?;
        tx.commit().await?;
        self.token_pair(&user.id, &session.id, refresh)
    }

    async fn new_refresh_token(
        &self,
        tx: &mut dyn AccountTx,
        session: &Session,
    ) -> Result<SecretString> {
        let now = self.now();
        let secret = random::token()?;
        let token = RefreshToken {
            hash: sha256(secret.as_bytes()),
            session_id: session.id.clone(),
            user_id: session.user_id.clone(),
            issued_at: now,
            expires_at: session.expires_at.min(now + self.settings.refresh_ttl),
            used_at: None,
        };
        tx.refresh_insert(&token).await?;
        Ok(SecretString::from(secret))
    }

    fn token_pair(
        &self,
        user: &UserId,
        session: &SessionId,
        refresh: SecretString,
    ) -> Result<TokenPair> {
        let access = self.tokens.issue(user, session, self.now())?;
        Ok(TokenPair {
            access_token: SecretString::from(access),
            expires_in: self.tokens.ttl().whole_seconds(),
            refresh_token: refresh,
        })
    }

    /// Rotates a refresh token. Presenting a token that was already used revokes its whole
    /// family (the session), since either the client or a thief holds a copy.
    #[instrument(skip_all)]
    pub async fn refresh(&self, presented: &SecretString, meta: &RequestMeta) -> Result<TokenPair> {
        let rate = self.settings.limits.auth.refresh_per_ip;
        self.limit_auth(vec![Check::for_ip("refresh_per_ip", rate, meta.ip)], meta)
            .await?;
        let hash = sha256(presented.expose_secret().as_bytes());
        let now = self.now();
        let mut tx = self.store.accounts(None, Access::Write).await?;
        let token = tx
            .refresh_get(&hash)
            .await?
            .ok_or(Error::InvalidRefreshToken)?;
        let session = tx
            .session_get(&token.session_id)
            .await?
            .ok_or(Error::InvalidRefreshToken)?;
        if session.revoked_at.is_some() || session.expires_at <= now || token.expires_at <= now {
            return Err(Error::InvalidRefreshToken);
        }
        if token.used_at.is_some() || !tx.refresh_mark_used(&hash, now).await? {
            tx.session_revoke(&session.id, now, "refresh_token_reuse")
                .await?;
            let event = AuditEvent::new(
                AuditLog::Instance,
                "auth.refresh_token_reused",
                Actor {
                    kind: "user",
                    id: session.user_id.to_string(),
                },
                session_target(&session.id),
            )
            .with_result(AuditResult::Denied);
            tx.audit_append(&event.seal(meta, now)?).await?;
            tx.commit().await?;
            tracing::warn!(session = %session.id, "refresh token reuse: session revoked");
            return Err(Error::InvalidRefreshToken);
        }
        let refresh = self.new_refresh_token(&mut *tx, &session).await?;
        let event = AuditEvent::new(
            AuditLog::Instance,
            "auth.token_refresh",
            Actor {
                kind: "user",
                id: session.user_id.to_string(),
            },
            session_target(&session.id),
        );
        tx.audit_append(&event.seal(meta, now)?).await?;
        tx.commit().await?;
        self.token_pair(&session.user_id, &session.id, refresh)
    }

    /// Signs out: the session and all its tokens stop working at once.
    #[instrument(skip_all)]
    pub async fn sign_out(&self, principal: &Principal, meta: &RequestMeta) -> Result<()> {
        let Principal::User {
            user_id,
            session_id,
        } = principal;
        let now = self.now();
        let mut tx = self.store.accounts(Some(user_id), Access::Write).await?;
        tx.session_revoke(session_id, now, "logout").await?;
        let event = AuditEvent::new(
            AuditLog::Instance,
            "auth.sign_out",
            Actor::of(principal),
            session_target(session_id),
        );
        tx.audit_append(&event.seal(meta, now)?).await?;
        Ok(tx.commit().await?)
    }

    /// Turns a bearer access token into a principal: signature, claims, expiry, and a session
    /// that is still live (so sign-out takes effect before the token expires).
    #[instrument(skip_all)]
    pub async fn authenticate(&self, bearer: &str) -> Result<Principal> {
        let verified = self.tokens.verify(bearer, self.now())?;
        let mut tx = self
            .store
            .accounts(Some(&verified.user_id), Access::Read)
            .await?;
        let session = tx
            .session_get(&verified.session_id)
            .await?
            .ok_or(Error::Unauthenticated)?;
        if session.revoked_at.is_some()
            || session.user_id != verified.user_id
            || session.expires_at <= self.now()
        {
            return Err(Error::Unauthenticated);
        }
        Ok(Principal::User {
            user_id: verified.user_id,
            session_id: verified.session_id,
        })
    }

    pub async fn me(&self, principal: &Principal) -> Result<User> {
        let mut tx = self
            .store
            .accounts(Some(principal.user_id()), Access::Read)
            .await?;
        tx.user_by_id(principal.user_id())
            .await?
            .ok_or(Error::NotFound(Resource::User))
    }
}
