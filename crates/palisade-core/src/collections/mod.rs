//! Collections and records, the tenant data plane (DAT-1 … DAT-5). `model` (field types,
//! collections), `service` (schema use cases), `values`
//! (what each field type accepts and how it is stored).

pub mod model;
pub mod records;
pub mod service;
pub mod values;
