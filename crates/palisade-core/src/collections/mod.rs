//! Collections and records, the tenant data plane (DAT-1 … DAT-5). `model` (field types,
//! collections), `service` (schema use cases), `records` (record use cases), `query` (list
//! filters, sort and cursors), `values` (what each field type accepts and how it is stored).

pub mod model;
pub mod query;
pub mod records;
pub mod service;
pub mod values;
