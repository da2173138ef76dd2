//! Palisade's background jobs (webhook delivery, checkpoint signing, retention, key rotation),
//! each claiming its work through the database so several nodes never do it twice. The first
//! jobs arrive with the audit-log and webhook issues; the crate exists now so the dependency
//! direction `core ← worker ← palisade` is fixed from the start.
