//! Webhook delivery: the SSRF-safe HTTP client that posts to endpoints, and the dispatcher
//! that drains the outbox through it.

pub mod client;
pub mod dispatch;
