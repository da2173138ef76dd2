//! Accounts and sessions (IDN-1 … IDN-5): sign-up with email verification, sign-in with
//! lockout, rotating refresh tokens with reuse detection, password reset by emailed code, magic
//! links, session management, and authentication of access tokens.

pub mod model;
pub mod policy;
pub mod recovery;
pub mod service;
pub mod sessions;
