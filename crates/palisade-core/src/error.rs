//! The one error type of the domain, with stable machine codes. Only `palisade-api` turns it
//! into HTTP statuses; codes are documented in the README and never renamed.

use std::error::Error as StdError;

use crate::acl::Permission;

/// One problem with one input field, located by a JSON Pointer (RFC 6901).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    pub pointer: String,
    pub message: String,
}

impl FieldError {
    pub fn new(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            pointer: pointer.into(),
            message: message.into(),
        }
    }
}

/// What was not found; a non-member is told the same as for a missing workspace (TEN-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Workspace,
    User,
    /// No signed checkpoint yet (or none for that date).
    Checkpoint,
    /// One of the caller's own sessions.
    Session,
    Member,
    Invitation,
    Team,
    CustomRole,
    /// A child of the caller's workspace (TEN-3).
    Child,
    ApiKey,
    Collection,
    Record,
    Webhook,
    Delivery,
}

/// Which uniqueness rule a change broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConflictKind {
    EmailTaken,
    SlugTaken,
    /// The user is already a member of the workspace.
    AlreadyMember,
    /// A team or custom role with that name exists in the workspace.
    NameTaken,
    /// The last active owner would be removed, demoted, deactivated or leave (ACL-5).
    LastOwner,
    /// The custom role is still assigned to members; it cannot be deleted.
    RoleInUse,
    /// The child workspace has children of its own; delete those first.
    HasChildren,
    /// Another collection's relation field points to this one; remove that field first.
    CollectionInUse,
    /// A redelivery of a delivery that is still pending.
    DeliveryPending,
    /// A redelivery to a disabled endpoint.
    WebhookDisabled,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("validation failed on {} field(s)", .0.len())]
    Validation(Vec<FieldError>),
    #[error("authentication required")]
    Unauthenticated,
    #[error("invalid email or password")]
    InvalidCredentials,
    #[error("invalid or expired refresh token")]
    InvalidRefreshToken,
    /// The password was right but the address is not verified yet (IDN-1).
    #[error("email address not verified")]
    EmailNotVerified,
    #[error("sign-up is closed on this instance")]
    SignupClosed,
    #[error("sign-up needs an invitation on this instance")]
    InvitationRequired,
    /// An emailed link's token is unknown, used or expired.
    #[error("invalid or expired token")]
    InvalidToken,
    /// A reset code is wrong, spent, replaced or expired, or the address has none.
    #[error("invalid or expired reset code")]
    InvalidResetCode,
    /// A `pal_…` bearer that is malformed, fails its checksum, or is unknown or revoked.
    #[error("invalid API key")]
    InvalidApiKey,
    /// The API key's `expires_at` has passed.
    #[error("API key expired")]
    ApiKeyExpired,
    /// The endpoint acts for a person (account endpoints, leaving a workspace); an API key
    /// cannot use it.
    #[error("a signed-in user is required")]
    UserRequired,
    #[error("{0:?} not found")]
    NotFound(Resource),
    #[error("missing permission {}", .0.key())]
    PermissionDenied(Permission),
    #[error("only an instance administrator may do this")]
    InstanceAdminRequired,
    /// The workspace's plan does not include the module this needs.
    #[error("module {0} is not enabled for this workspace")]
    ModuleDisabled(&'static str),
    /// The workspace is suspended by its parent: only its owners may read it (TEN-3).
    #[error("workspace suspended")]
    WorkspaceSuspended,
    /// The caller's membership is deactivated.
    #[error("membership deactivated")]
    MembershipInactive,
    /// The workspace's auth policy refuses how (or how long ago) the caller signed in (TEN-4).
    #[error("the workspace's auth policy requires signing in again ({0})")]
    ReauthenticationRequired(&'static str),
    /// An invitation was accepted by a user whose address is not the invited one.
    #[error("invitation addressed to someone else")]
    InvitationMismatch,
    #[error("conflict: {0:?}")]
    Conflict(ConflictKind),
    /// `If-Match` named a version that is no longer current; nothing was written.
    #[error("precondition failed")]
    PreconditionFailed,
    /// A write touched fields the caller may not write (DAT-4), each named.
    #[error("{} field(s) not writable", .0.len())]
    FieldsNotWritable(Vec<FieldError>),
    /// A list filtered, sorted or projected on fields the caller may not read (DAT-4), each
    /// named by its parameter.
    #[error("{} field(s) not readable", .0.len())]
    FieldsNotReadable(Vec<FieldError>),
    /// A rate limit or quota is spent (RTL-3).
    #[error("rate limit {} exceeded", .0.policy())]
    RateLimited(crate::limits::Limited),
    #[error("internal error")]
    Internal(#[source] Box<dyn StdError + Send + Sync>),
}

impl Error {
    /// The stable snake_case code clients match on.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Validation(_) => "validation_failed",
            Error::Unauthenticated => "unauthenticated",
            Error::InvalidCredentials => "invalid_credentials",
            Error::InvalidRefreshToken => "invalid_refresh_token",
            Error::EmailNotVerified => "email_not_verified",
            Error::SignupClosed => "signup_closed",
            Error::InvitationRequired => "invitation_required",
            Error::InvalidToken => "invalid_token",
            Error::InvalidResetCode => "invalid_reset_code",
            Error::InvalidApiKey => "invalid_api_key",
            Error::ApiKeyExpired => "api_key_expired",
            Error::UserRequired => "user_required",
            Error::NotFound(Resource::Workspace) => "workspace_not_found",
            Error::NotFound(Resource::User) => "user_not_found",
            Error::NotFound(Resource::Checkpoint) => "checkpoint_not_found",
            Error::NotFound(Resource::Session) => "session_not_found",
            Error::NotFound(Resource::Member) => "member_not_found",
            Error::NotFound(Resource::Invitation) => "invitation_not_found",
            Error::NotFound(Resource::Team) => "team_not_found",
            Error::NotFound(Resource::CustomRole) => "role_not_found",
            Error::NotFound(Resource::Child) => "child_not_found",
            Error::NotFound(Resource::ApiKey) => "api_key_not_found",
            Error::NotFound(Resource::Collection) => "collection_not_found",
            Error::NotFound(Resource::Record) => "record_not_found",
            Error::NotFound(Resource::Webhook) => "webhook_not_found",
            Error::NotFound(Resource::Delivery) => "delivery_not_found",
            Error::PreconditionFailed => "precondition_failed",
            Error::FieldsNotWritable(_) => "field_not_writable",
            Error::FieldsNotReadable(_) => "field_not_readable",
            Error::PermissionDenied(_) => "permission_denied",
            Error::InstanceAdminRequired => "instance_admin_required",
            Error::ModuleDisabled(_) => "module_disabled",
            Error::WorkspaceSuspended => "workspace_suspended",
            Error::MembershipInactive => "membership_inactive",
            Error::ReauthenticationRequired(_) => "reauthentication_required",
            Error::InvitationMismatch => "invitation_mismatch",
            Error::Conflict(ConflictKind::EmailTaken) => "email_taken",
            Error::Conflict(ConflictKind::SlugTaken) => "slug_taken",
            Error::Conflict(ConflictKind::AlreadyMember) => "already_member",
            Error::Conflict(ConflictKind::NameTaken) => "name_taken",
            Error::Conflict(ConflictKind::LastOwner) => "last_owner",
            Error::Conflict(ConflictKind::RoleInUse) => "role_in_use",
            Error::Conflict(ConflictKind::HasChildren) => "has_children",
            Error::Conflict(ConflictKind::CollectionInUse) => "collection_in_use",
            Error::Conflict(ConflictKind::DeliveryPending) => "delivery_pending",
            Error::Conflict(ConflictKind::WebhookDisabled) => "webhook_disabled",
            Error::RateLimited(_) => "rate_limited",
            Error::Internal(_) => "internal",
        }
    }

    pub fn internal(source: impl StdError + Send + Sync + 'static) -> Self {
        Error::Internal(Box::new(source))
    }

    pub fn field(pointer: &str, message: &str) -> Self {
        Error::Validation(vec![FieldError::new(pointer, message)])
    }
}

/// Errors a store reports. A constraint violation is typed so services can turn it into a
/// domain conflict; everything else keeps its source chain for the log.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unique constraint violated: {0}")]
    Conflict(String),
    #[error("database error")]
    Database(#[source] Box<dyn StdError + Send + Sync>),
    /// The value cannot be stored as given (e.g. an audit entry over 65,535 bytes).
    #[error("invalid value: {0}")]
    Invalid(String),
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        Error::Internal(Box::new(e))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
