//! Workspaces (TEN-1): the tenant, its settings and memberships, and the membership check that
//! is the only way to a `TenantScope`.

pub mod children;
pub mod members;
pub mod model;
pub mod roles;
pub mod service;
pub mod teams;
