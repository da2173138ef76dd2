//! Palisade's domain: typed ids, the error model, principals and scopes, roles and permissions,
//! audit events, crypto, the store traits and the services (use cases). No HTTP, no SQL; it
//! never reads the clock, the environment or the network itself.

pub mod accounts;
pub mod acl;
pub mod api_keys;
pub mod app;
pub mod audit;
pub mod clock;
pub mod collections;
pub mod crypto;
pub mod error;
pub mod ids;
pub mod keys;
pub mod limits;
pub mod mail;
pub mod principal;
pub mod store;
pub mod tenancy;
pub mod validate;
pub mod webhooks;
pub mod workspaces;

pub use app::{Services, Settings};
pub use error::{Error, Result};
