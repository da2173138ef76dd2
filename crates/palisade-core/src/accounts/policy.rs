//! The operator's account rules (`[accounts]` in `palisade.toml`): who may sign up, whether an
//! address must be verified, how long emailed secrets live, how lockout grows.

use serde::{Deserialize, Serialize};

/// Who may create an account (IDN-1). Instance administrators (config `admins`) may always
/// sign up, so a closed instance can still be set up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignupMode {
    #[default]
    Open,
    /// Only with an invitation to a workspace.
    InviteOnly,
    Closed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccountPolicy {
    pub signup_mode: SignupMode,
    /// Refuse password sign-in (403 `email_not_verified`) until the address is verified.
    pub require_verified_email: bool,
    /// Lifetime of an email verification link.
    pub email_verification_ttl_secs: u32,
    /// Lifetime of a password-reset code (IDN-3).
    pub password_reset_code_ttl_secs: u32,
    /// Lifetime of a magic link (IDN-4).
    pub magic_link_ttl_secs: u32,
    /// Lifetime of an invitation to a workspace (ACL-7).
    pub invitation_ttl_secs: u32,
    /// Consecutive failed sign-ins that lock an account (IDN-2).
    pub lockout_threshold: u32,
    /// The first lock's length; each further lock doubles it, up to `lockout_max_secs`.
    pub lockout_secs: u32,
    pub lockout_max_secs: u32,
}

impl Default for AccountPolicy {
    fn default() -> Self {
        Self {
            signup_mode: SignupMode::Open,
            require_verified_email: true,
            email_verification_ttl_secs: 24 * 3600,
            password_reset_code_ttl_secs: 15 * 60,
            magic_link_ttl_secs: 15 * 60,
            invitation_ttl_secs: 7 * 86_400,
            lockout_threshold: 5,
            lockout_secs: 15 * 60,
            lockout_max_secs: 24 * 3600,
        }
    }
}

/// Wrong guesses a reset code survives (IDN-3).
pub const RESET_CODE_ATTEMPTS: u32 = 5;

impl AccountPolicy {
    /// The message names the bad key.
    pub fn validate(&self) -> Result<(), String> {
        let ttl = |name: &str, v: u32, max: u32| {
            if (60..=max).contains(&v) {
                Ok(())
            } else {
                Err(format!("accounts.{name} must be between 60 and {max}"))
            }
        };
        ttl(
            "email_verification_ttl_secs",
            self.email_verification_ttl_secs,
            30 * 86_400,
        )?;
        ttl(
            "password_reset_code_ttl_secs",
            self.password_reset_code_ttl_secs,
            3_600,
        )?;
        ttl("magic_link_ttl_secs", self.magic_link_ttl_secs, 3_600)?;
        ttl("invitation_ttl_secs", self.invitation_ttl_secs, 30 * 86_400)?;
        if !(1..=100).contains(&self.lockout_threshold) {
            return Err("accounts.lockout_threshold must be between 1 and 100".into());
        }
        if self.lockout_secs == 0 || self.lockout_max_secs < self.lockout_secs {
            return Err(
                "accounts.lockout_secs must be at least 1 and at most accounts.lockout_max_secs"
                    .into(),
            );
        }
        Ok(())
    }

    pub fn verification_ttl(&self) -> time::Duration {
        time::Duration::seconds(i64::from(self.email_verification_ttl_secs))
    }

    pub fn invitation_ttl(&self) -> time::Duration {
        time::Duration::seconds(i64::from(self.invitation_ttl_secs))
    }

    pub fn reset_code_ttl(&self) -> time::Duration {
        time::Duration::seconds(i64::from(self.password_reset_code_ttl_secs))
    }

    pub fn magic_link_ttl(&self) -> time::Duration {
        time::Duration::seconds(i64::from(self.magic_link_ttl_secs))
    }

    /// The length of a lock when `earlier` locks came before it since the last success:
    /// `lockout_secs · 2^earlier`, at most `lockout_max_secs`.
    pub fn lock_length(&self, earlier: u32) -> time::Duration {
        let base = u64::from(self.lockout_secs);
        let secs = base
            .checked_shl(earlier.min(40))
            .unwrap_or(u64::MAX)
            .min(u64::from(self.lockout_max_secs));
        time::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_double_up_to_the_cap() {
        let p = AccountPolicy::default();
        let mins: Vec<i64> = (0..9).map(|n| p.lock_length(n).whole_minutes()).collect();
        assert_eq!(mins, [15, 30, 60, 120, 240, 480, 960, 1440, 1440]);
        assert_eq!(p.lock_length(u32::MAX).whole_hours(), 24);
    }

    #[test]
    fn validation_names_the_key() {
        let bad = AccountPolicy {
            magic_link_ttl_secs: 10,
            ..AccountPolicy::default()
        };
        assert!(bad.validate().unwrap_err().contains("magic_link_ttl_secs"));
        assert!(AccountPolicy::default().validate().is_ok());
    }
}
