//! Accounts and sessions (IDN-1, IDN-5): sign-up, sign-in, rotating refresh tokens with reuse
//! detection, sign-out, and authentication of access tokens.

pub mod model;
pub mod service;
