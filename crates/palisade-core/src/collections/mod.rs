//! Collections and records, the tenant data plane (DAT-1 … DAT-5). `model` (field types,
//! collections), `service` (schema use cases).

pub mod model;
pub mod service;
