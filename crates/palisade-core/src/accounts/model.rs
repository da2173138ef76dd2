//! Account, session and refresh-token values.

use secrecy::SecretString;
use time::OffsetDateTime;

use crate::ids::{ResetCodeId, SessionId, UserId};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    /// Lowercased and trimmed; personal data, never logged or audited in clear.
    pub email: String,
    pub name: String,
    /// When the address was proven by a link, code or magic link sent to it.
    pub email_verified_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// What sign-in checks besides the user: the password hash and the lockout state (IDN-2).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Argon2id PHC string.
    pub password_hash: String,
    /// Consecutive failed sign-ins since the last success or lock.
    pub failed_logins: u32,
    /// Locks since the last successful sign-in: each doubles the next lock's length.
    pub lock_count: u32,
    pub locked_until: Option<OffsetDateTime>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("failed_logins", &self.failed_logins)
            .field("lock_count", &self.lock_count)
            .field("locked_until", &self.locked_until)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    pub fn locked_at(&self, now: OffsetDateTime) -> bool {
        self.locked_until.is_some_and(|until| until > now)
    }
}

/// A sign-in session: the family of its refresh tokens. Revoking it kills every token in the
/// family and every access token that names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: SessionId,
    pub user_id: UserId,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
    pub revoked_reason: Option<String>,
    /// Sign-in or the last refresh (access tokens are not tracked: no write per request).
    pub last_used_at: OffsetDateTime,
    /// As the client sent it at sign-in or last refresh, cut to 512 characters.
    pub user_agent: Option<String>,
    /// The client's network, never its address: an IPv4 /24 or an IPv6 /48.
    pub ip_prefix: Option<String>,
    /// How the session began (a workspace's auth policy may refuse some, TEN-4).
    pub method: crate::principal::SignInMethod,
}

/// What an emailed token proves when it comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenPurpose {
    VerifyEmail,
    MagicLink,
}

impl TokenPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenPurpose::VerifyEmail => "verify_email",
            TokenPurpose::MagicLink => "magic_link",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [TokenPurpose::VerifyEmail, TokenPurpose::MagicLink]
            .into_iter()
            .find(|p| p.as_str() == text)
    }
}

/// A single-use emailed token (verification link, magic link), stored only as its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountToken {
    pub hash: [u8; 32],
    pub purpose: TokenPurpose,
    pub user_id: UserId,
    /// The address it was sent to: a verification proves this address, not a later one.
    pub email: String,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub used_at: Option<OffsetDateTime>,
}

/// A password-reset code (IDN-3), stored only as Argon2id. Attempts are counted before each
/// check, so no more than the allowed number of guesses is ever verified, even in parallel.
#[derive(Clone, PartialEq, Eq)]
pub struct ResetCode {
    pub id: ResetCodeId,
    pub user_id: UserId,
    pub code_hash: String,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub attempts: u32,
    /// Set when used, or when a newer code replaced it.
    pub closed_at: Option<OffsetDateTime>,
}

impl std::fmt::Debug for ResetCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResetCode")
            .field("id", &self.id)
            .field("attempts", &self.attempts)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A refresh token as stored: only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshToken {
    pub hash: [u8; 32],
    pub session_id: SessionId,
    pub user_id: UserId,
    pub issued_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub used_at: Option<OffsetDateTime>,
}

#[derive(Debug)]
pub struct SignUp {
    pub email: String,
    pub password: SecretString,
    pub name: String,
    /// An invitation to this address: admits sign-up on an `invite_only` instance and
    /// proves the address (no verification mail).
    pub invitation_token: Option<SecretString>,
}

#[derive(Debug)]
pub struct SignIn {
    pub email: String,
    pub password: SecretString,
}

/// What a successful sign-in or refresh returns. The refresh token is shown once.
#[derive(Debug)]
pub struct TokenPair {
    pub access_token: SecretString,
    pub expires_in: i64,
    pub refresh_token: SecretString,
}
