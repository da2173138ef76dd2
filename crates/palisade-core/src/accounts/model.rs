//! Account, session and refresh-token values.

use secrecy::SecretString;
use time::OffsetDateTime;

use crate::ids::{SessionId, UserId};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    /// Lowercased and trimmed; personal data, never logged or audited in clear.
    pub email: String,
    pub name: String,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
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
