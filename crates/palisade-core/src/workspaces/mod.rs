//! Workspaces (TEN-1): the tenant, its settings and memberships, and the membership check that
//! is the only way to a `TenantScope`.

pub mod model;
pub mod service;
