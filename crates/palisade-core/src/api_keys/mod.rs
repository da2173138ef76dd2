//! Workspace API keys (KEY-1, KEY-2): hashed, scoped, rotatable, revocable on every node at
//! once. `model` (the secret's format, scopes), `service` (create, list, rotate, revoke and the
//! request-path check), `cache` (verified keys in memory under a short lease).

pub mod cache;
pub mod model;
pub mod service;

pub use service::KeyState;
