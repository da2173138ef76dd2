//! Sign-up, sign-in with lockout, refresh, sign-out and access-token authentication, plus the
//! helpers the other account services share (sessions, emailed tokens, audit targets).

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use time::OffsetDateTime;
use tracing::instrument;

use super::model::{
    AccountToken, RefreshToken, Session, SignIn, SignUp, TokenPair, TokenPurpose, User,
};
use super::policy::SignupMode;
use crate::app::Services;
use crate::audit::{Actor, AuditEvent, AuditLog, AuditResult, Target};
use crate::crypto::{random, sha256};
use crate::error::{ConflictKind, Error, Resource, Result, StoreError};
use crate::ids::{SessionId, UserId};
use crate::limits::{Check, Rate};
use crate::mail::{Email, templates};
use crate::principal::{Principal, RequestMeta, SignInMethod};
use crate::store::{Access, AccountTx};
use crate::validate::{Checks, normalize_email};

pub const PASSWORD_MIN: usize = 10;
pub const PASSWORD_MAX: usize = 256;

pub(super) fn user_target(id: &UserId) -> Target {
    Target {
        kind: "user".into(),
        id: id.to_string(),
    }
}

pub(super) fn session_target(id: &SessionId) -> Target {
    Target {
        kind: "session".into(),
        id: id.to_string(),
    }
}

pub(super) fn user_actor(id: &UserId) -> Actor {
    Actor {
        kind: "user",
        id: id.to_string(),
    }
}

/// An instance-log event about an account.
pub(super) fn account_event(action: &'static str, actor: Actor, target: Target) -> AuditEvent {
    AuditEvent::new(AuditLog::Instance, action, actor, target)
}

/// An event about an address that has no account: the address only as a commitment.
pub(super) fn unknown_address_event(action: &'static str, email: &str) -> AuditEvent {
    account_event(
        action,
        Actor::anonymous(),
        Target {
            kind: "user".into(),
            id: String::new(),
        },
    )
    .with_result(AuditResult::Denied)
    .personal("/email", Value::String(email.to_owned()))
    .reason("unknown_email")
}

/// The client's network for the session list, never its address: IPv4 /24, IPv6 /48.
pub fn ip_prefix(ip: std::net::IpAddr) -> String {
    match ip.to_canonical() {
        std::net::IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        std::net::IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2])
        }
    }
}

/// A password's length rule, reported on `pointer`.
pub(super) fn check_new_password(checks: &mut Checks, pointer: &str, password: &SecretString) {
    let len = password.expose_secret().chars().count();
    if !(PASSWORD_MIN..=PASSWORD_MAX).contains(&len) {
        checks.fail(
            pointer,
            format!("must be {PASSWORD_MIN} to {PASSWORD_MAX} characters"),
        );
    }
}

impl Services {
    /// Creates an account (IDN-1) and emails a verification link. The email is stored
    /// lowercased; the password only as Argon2id.
    #[instrument(skip_all)]
    pub async fn sign_up(&self, input: SignUp, meta: &RequestMeta) -> Result<User> {
        let email = normalize_email(&input.email);
        let name = input.name.trim().to_owned();
        let mut checks = Checks::new();
        checks.email("/email", &email);
        checks.text("/name", &name, 1, 200);
        check_new_password(&mut checks, "/password", &input.password);
        checks.finish()?;
        let invitation = match &input.invitation_token {
            Some(token) => Some(self.invitation_for_sign_up(token, &email).await?),
            None => None,
        };
        if !self.settings.admins.contains(&email) {
            match self.settings.accounts.signup_mode {
                SignupMode::Open => {}
                SignupMode::InviteOnly if invitation.is_some() => {}
                SignupMode::InviteOnly => return Err(Error::InvitationRequired),
                SignupMode::Closed => return Err(Error::SignupClosed),
            }
        }

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
            // The invitation's token came to this address: it is proven.
            email_verified_at: invitation.as_ref().map(|_| now),
            created_at: now,
            updated_at: now,
        };
        let mut tx = self.store.accounts(Some(&user.id), Access::Write).await?;
        match tx.user_insert(&user, &hash).await {
            Err(StoreError::Conflict(_)) => return Err(Error::Conflict(ConflictKind::EmailTaken)),
            other => other?,
        }
        let mail = match &invitation {
            Some(_) => None,
            None => Some(self.verification_mail(&mut *tx, &user, now).await?),
        };
        let mut event = account_event("user.sign_up", user_actor(&user.id), user_target(&user.id));
        if let Some(invitation) = &invitation {
            event
                .extra
                .insert("invitation".into(), Value::from(invitation.id.as_str()));
        }
        tx.audit_append(&event.seal(meta, now)?).await?;
        tx.commit().await?;
        if let Some(mail) = mail {
            self.outbox.send(mail);
        }
        Ok(user)
    }

    /// Stores a verification token for the user's address and builds its message.
    pub(super) async fn verification_mail(
        &self,
        tx: &mut dyn AccountTx,
        user: &User,
        now: OffsetDateTime,
    ) -> Result<Email> {
        let ttl = self.settings.accounts.verification_ttl();
        let token = self
            .issue_token(tx, TokenPurpose::VerifyEmail, user, ttl, now)
            .await?;
        Ok(templates::verify_email(
            &self.settings.brand,
            &user.email,
            &self.link("auth/verify-email", &token),
            ttl,
        ))
    }

    /// A new single-use token for `user`'s address, stored as its SHA-256; the secret is
    /// returned once, for the email.
    pub(super) async fn issue_token(
        &self,
        tx: &mut dyn AccountTx,
        purpose: TokenPurpose,
        user: &User,
        ttl: time::Duration,
        now: OffsetDateTime,
    ) -> Result<SecretString> {
        let secret = random::token()?;
        tx.account_token_insert(&AccountToken {
            hash: sha256(secret.as_bytes()),
            purpose,
            user_id: user.id.clone(),
            email: user.email.clone(),
            created_at: now,
            expires_at: now + ttl,
            used_at: None,
        })
        .await?;
        Ok(SecretString::from(secret))
    }

    /// The strictest `password_min_length` among the user's workspaces (TEN-4), applied whenever
    /// they set a password.
    pub(super) async fn check_workspace_password_rules(
        &self,
        user: &UserId,
        pointer: &str,
        password: &SecretString,
    ) -> Result<()> {
        let mut tx = self.store.accounts(Some(user), Access::Read).await?;
        let (mut after, mut strictest) = (None, None::<u32>);
        loop {
            let page = tx.memberships(user, after.as_ref(), 200).await?;
            for m in &page {
                strictest = strictest.max(m.workspace.auth_policy.password_min_length);
            }
            match page.last() {
                Some(last) if page.len() == 200 => after = Some(last.workspace.id.clone()),
                _ => break,
            }
        }
        let len = password.expose_secret().chars().count();
        match strictest {
            Some(min) if len < min as usize => Err(Error::field(
                pointer,
                &format!(
                    "must be at least {min} characters (a workspace you belong to requires it)"
                ),
            )),
            _ => Ok(()),
        }
    }

    /// `<link_base>/<page>#token=<token>`: the token rides in the fragment, which browsers
    /// never send to a server, so it reaches no access log or proxy.
    pub(crate) fn link(&self, page: &str, token: &SecretString) -> String {
        format!(
            "{}/{page}#token={}",
            self.settings.link_base.as_str().trim_end_matches('/'),
            token.expose_secret()
        )
    }

    /// Admits a request that emails an address (reset code, magic link, verification): the
    /// address is normalized and checked, then the IP's budget is charged (its 429 is the
    /// caller's own doing), then the address's, which, when spent, makes the request a silent
    /// no-op (`None`) rather than an answer that would differ by address.
    pub(super) async fn admit_emailing(
        &self,
        email: &str,
        per_ip: (&'static str, Rate),
        per_account: (&'static str, Rate),
        meta: &RequestMeta,
    ) -> Result<Option<String>> {
        let email = normalize_email(email);
        let mut checks = Checks::new();
        checks.email("/email", &email);
        checks.finish()?;
        self.limit_auth(vec![Check::for_ip(per_ip.0, per_ip.1, meta.ip)], meta)
            .await?;
        let account = Check::by_personal(per_account.0, per_account.1, "email", &email);
        match self.limit_auth(vec![Some(account)], meta).await {
            Ok(()) => Ok(Some(email)),
            Err(Error::RateLimited(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Signs in (IDN-2, IDN-5). Unknown email, wrong password and a locked account get the
    /// same answer after the same Argon2 work; only the right password on an unverified
    /// address learns `email_not_verified`.
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
        let limits = &self.settings.limits.auth;
        self.limit_auth(
            vec![
                Check::for_ip("sign_in_per_ip", limits.sign_in_per_ip, meta.ip),
                Some(Check::by_personal(
                    "sign_in_per_account",
                    limits.sign_in_per_account,
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
            .verify(
                &input.password,
                found.as_ref().map(|(_, c)| c.password_hash.as_str()),
            )
            .await?;
        let now = self.now();
        let mut tx = self.store.accounts(None, Access::Write).await?;
        let Some((user, _)) = found else {
            let event = unknown_address_event("auth.sign_in_failed", &email);
            tx.audit_append(&event.seal(meta, now)?).await?;
            tx.commit().await?;
            return Err(Error::InvalidCredentials);
        };
        // The lock as it stands now, not as it stood before the hash.
        let (_, credentials) = tx
            .user_with_credentials(&user.id)
            .await?
            .ok_or(Error::InvalidCredentials)?;
        let failed = |reason: &'static str| {
            account_event(
                "auth.sign_in_failed",
                Actor::anonymous(),
                user_target(&user.id),
            )
            .with_result(AuditResult::Denied)
            .reason(reason)
        };
        if credentials.locked_at(now) {
            tx.audit_append(&failed("locked").seal(meta, now)?).await?;
            tx.commit().await?;
            return Err(Error::InvalidCredentials);
        }
        if !verified {
            // Row writes before the audit append, as on every write path: the log head is
            // the last lock a transaction takes, so two sign-ins cannot deadlock.
            let failures = tx.user_sign_in_failed(&user.id).await?;
            let policy = &self.settings.accounts;
            let locked_for = (failures >= policy.lockout_threshold)
                .then(|| policy.lock_length(credentials.lock_count));
            if let Some(length) = locked_for {
                tx.user_lock(&user.id, now + length).await?;
            }
            tx.audit_append(&failed("wrong_password").seal(meta, now)?)
                .await?;
            let mut mail = None;
            if let Some(length) = locked_for {
                let mut event = account_event(
                    "auth.account_locked",
                    Actor::system(),
                    user_target(&user.id),
                );
                event.extra.insert(
                    "lock".into(),
                    serde_json::json!({
                        "failures": failures,
                        "seconds": length.whole_seconds(),
                        "until": crate::audit::format_ts(now + length),
                    }),
                );
                tx.audit_append(&event.seal(meta, now)?).await?;
                mail = Some(templates::account_locked(
                    &self.settings.brand,
                    &user.email,
                    length,
                ));
            }
            tx.commit().await?;
            if let Some(mail) = mail {
                self.outbox.send(mail);
            }
            return Err(Error::InvalidCredentials);
        }
        if self.settings.accounts.require_verified_email && user.email_verified_at.is_none() {
            tx.audit_append(&failed("email_not_verified").seal(meta, now)?)
                .await?;
            tx.commit().await?;
            return Err(Error::EmailNotVerified);
        }
        tx.user_sign_in_succeeded(&user.id).await?;
        let pair = self
            .start_session(&mut *tx, &user.id, SignInMethod::Password, meta, now)
            .await?;
        tx.commit().await?;
        Ok(pair)
    }

    /// A new session with its first refresh token, audited as `auth.sign_in` with `method`.
    pub(super) async fn start_session(
        &self,
        tx: &mut dyn AccountTx,
        user: &UserId,
        method: SignInMethod,
        meta: &RequestMeta,
        now: OffsetDateTime,
    ) -> Result<TokenPair> {
        let session = Session {
            id: SessionId::generate(),
            user_id: user.clone(),
            created_at: now,
            expires_at: now + self.settings.refresh_ttl,
            revoked_at: None,
            revoked_reason: None,
            last_used_at: now,
            user_agent: meta.user_agent.clone(),
            ip_prefix: meta.ip.map(ip_prefix),
            method,
        };
        tx.session_insert(&session).await?;
        let refresh = self.new_refresh_token(tx, &session).await?;
        let mut event = account_event(
            "auth.sign_in",
            user_actor(user),
            session_target(&session.id),
        );
        event
            .extra
            .insert("method".into(), Value::from(method.as_str()));
        tx.audit_append(&event.seal(meta, now)?).await?;
        self.token_pair(user, &session.id, refresh)
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
            let event = account_event(
                "auth.refresh_token_reused",
                user_actor(&session.user_id),
                session_target(&session.id),
            )
            .with_result(AuditResult::Denied);
            tx.audit_append(&event.seal(meta, now)?).await?;
            tx.commit().await?;
            tracing::warn!(session = %session.id, "refresh token reuse: session revoked");
            return Err(Error::InvalidRefreshToken);
        }
        let refresh = self.new_refresh_token(&mut *tx, &session).await?;
        tx.session_touch(
            &session.id,
            now,
            meta.user_agent.as_deref(),
            meta.ip.map(ip_prefix).as_deref(),
        )
        .await?;
        let event = account_event(
            "auth.token_refresh",
            user_actor(&session.user_id),
            session_target(&session.id),
        );
        tx.audit_append(&event.seal(meta, now)?).await?;
        tx.commit().await?;
        self.token_pair(&session.user_id, &session.id, refresh)
    }

    /// Signs out: the session and all its tokens stop working at once.
    #[instrument(skip_all)]
    pub async fn sign_out(&self, principal: &Principal, meta: &RequestMeta) -> Result<()> {
        let (user_id, session_id) = (principal.user_id()?, principal.session_id()?);
        let now = self.now();
        let mut tx = self.store.accounts(Some(user_id), Access::Write).await?;
        tx.session_revoke(session_id, now, "logout").await?;
        let event = account_event(
            "auth.sign_out",
            Actor::of(principal),
            session_target(session_id),
        );
        tx.audit_append(&event.seal(meta, now)?).await?;
        Ok(tx.commit().await?)
    }

    /// Turns a bearer access token into a principal: signature, claims, expiry, and a session
    /// that is still live, so a revoked session's access tokens stop at once, not when they
    /// expire.
    #[instrument(skip_all)]
    pub async fn authenticate(&self, bearer: &str) -> Result<Principal> {
        if crate::api_keys::model::ApiKeySecret::looks_like(bearer) {
            // API keys belong to a workspace; they work only on its endpoints.
            return Err(Error::UserRequired);
        }
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
            method: session.method,
            signed_in_at: session.created_at,
        })
    }

    pub async fn me(&self, principal: &Principal) -> Result<User> {
        self.user(principal.user_id()?).await
    }

    /// The person answerable for the request (the user, or an API key's creator), e.g. to
    /// sign an invitation.
    pub async fn on_behalf_of(&self, principal: &Principal) -> Result<User> {
        self.user(principal.on_behalf_of()).await
    }

    async fn user(&self, id: &UserId) -> Result<User> {
        let mut tx = self.store.accounts(Some(id), Access::Read).await?;
        tx.user_by_id(id)
            .await?
            .ok_or(Error::NotFound(Resource::User))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_prefix_keeps_only_the_network() {
        let p = |t: &str| ip_prefix(t.parse().unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into()));
        assert_eq!(p("203.0.113.77"), "203.0.113.0/24");
        assert_eq!(p("::ffff:203.0.113.77"), "203.0.113.0/24");
        assert_eq!(p("2001:db8:abcd:12:1::9"), "2001:db8:abcd::/48");
    }
}
