//! Webhooks (WHK-1 … WHK-5): endpoints, the event catalog, the transactional outbox, signatures
//! and the delivery rules the dispatcher in `palisade-worker` follows.

pub mod catalog;
pub mod delivery;
pub mod model;
pub(crate) mod outbox;
pub mod service;
pub mod signature;
