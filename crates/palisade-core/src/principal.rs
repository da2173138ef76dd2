//! Who is acting, and the request facts that go into the audit log.

use std::net::IpAddr;

use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::ids::{ApiKeyId, SessionId, UserId, WorkspaceId};

/// How a session was started; workspaces may allow only some (TEN-4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignInMethod {
    Password,
    MagicLink,
}

impl SignInMethod {
    pub const ALL: [SignInMethod; 2] = [SignInMethod::Password, SignInMethod::MagicLink];

    pub fn as_str(self) -> &'static str {
        match self {
            SignInMethod::Password => "password",
            SignInMethod::MagicLink => "magic_link",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == text)
    }
}

/// An authenticated caller: a signed-in user, or a workspace API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    User {
        user_id: UserId,
        session_id: SessionId,
        /// How and when the session began, for workspace auth policies.
        method: SignInMethod,
        signed_in_at: OffsetDateTime,
    },
    /// A workspace API key (KEY-1): it exists only inside its own workspace's scope.
    ApiKey {
        key_id: ApiKeyId,
        workspace_id: WorkspaceId,
        /// The person answerable for the key: its creator, or its creating key's.
        on_behalf_of: UserId,
    },
}

impl Principal {
    /// The signed-in user. An API key is not one: account endpoints and the few workspace
    /// actions that only a person can take (leaving) refuse it.
    pub fn user_id(&self) -> Result<&UserId> {
        match self {
            Principal::User { user_id, .. } => Ok(user_id),
            Principal::ApiKey { .. } => Err(Error::UserRequired),
        }
    }

    /// The signed-in session, for endpoints about sessions.
    pub fn session_id(&self) -> Result<&SessionId> {
        match self {
            Principal::User { session_id, .. } => Ok(session_id),
            Principal::ApiKey { .. } => Err(Error::UserRequired),
        }
    }

    /// The person answerable for the request: the user, or the key's creator.
    pub fn on_behalf_of(&self) -> &UserId {
        match self {
            Principal::User { user_id, .. } => user_id,
            Principal::ApiKey { on_behalf_of, .. } => on_behalf_of,
        }
    }
}

/// Facts about the HTTP request a change came from. IP and user agent are personal data: they
/// reach the audit log only as commitments (AUDIT-SPEC §5), never in clear.
#[derive(Clone, Default)]
pub struct RequestMeta {
    pub request_id: Option<String>,
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    /// Rate-limit decisions taken for this request, for the response headers.
    pub limits: crate::limits::LimitReport,
}

impl std::fmt::Debug for RequestMeta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestMeta")
            .field("request_id", &self.request_id)
            .field("ip", &self.ip.map(|_| "<redacted>"))
            .field(
                "user_agent",
                &self.user_agent.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}
