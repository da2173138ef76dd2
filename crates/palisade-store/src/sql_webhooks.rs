//! `WebhooksTx`, the webhook statements of `SystemTx` (the dispatcher's claim and outcomes, the
//! failure sweep, retention) and of `KeysTx` (re-sealing), written once for both backends like
//! `sql.rs`. Every tenant statement filters by the transaction's workspace id (the application
//! layer of TEN-2); on PostgreSQL RLS filters again underneath.
//!
//! Times these statements compare in SQL (when a delivery is due, how long a claim runs, since
//! when an endpoint fails, when an event was written) are µs since the Unix epoch on both
//! backends (`rows::micros`), for the reason given in `sql_api_keys.rs`.

/// The columns `WebhookRow` maps, from `webhooks w`.
macro_rules! webhook_columns {
    () => {
        "w.workspace_id AS w_workspace_id, w.id AS w_id, w.url, w.description, w.events, w.enabled, \
         w.disabled_reason, w.grants, w.created_by, w.created_at AS w_created_at, \
         w.updated_at AS w_updated_at, w.secret, w.previous_secret, w.previous_secret_expires_at, \
         w.failing_since_us"
    };
}

/// The columns `OutboxEventRow` maps, from `webhook_events e`.
macro_rules! event_columns {
    () => {
        "e.workspace_id AS e_workspace_id, e.id AS e_id, e.event_type AS e_event_type, e.collection, \
         e.payload, e.draft, e.created_us"
    };
}

/// The columns `DeliveryRow` maps, from `webhook_deliveries d`.
macro_rules! delivery_columns {
    () => {
        "d.workspace_id, d.id, d.webhook_id, d.event_id, d.event_type, d.status, d.attempts, \
         d.schedule_step, d.next_attempt_us, d.created_at, d.updated_at"
    };
}

pub(crate) const WEBHOOK_GET: &str = concat!(
    "SELECT ",
    webhook_columns!(),
    " FROM webhooks w WHERE w.workspace_id = $1 AND w.id = $2"
);
/// `WEBHOOK_GET` locking the row until commit (PostgreSQL's `webhook_lock`).
pub(crate) const WEBHOOK_GET_FOR_UPDATE: &str = concat!(
    "SELECT ",
    webhook_columns!(),
    " FROM webhooks w WHERE w.workspace_id = $1 AND w.id = $2 FOR UPDATE"
);
/// `$2` is the cursor (the empty string sorts before every id).
pub(crate) const WEBHOOKS_LIST: &str = concat!(
    "SELECT ",
    webhook_columns!(),
    " FROM webhooks w WHERE w.workspace_id = $1 AND w.id > $2 ORDER BY w.id LIMIT $3"
);
pub(crate) const WEBHOOKS_ENABLED: &str = concat!(
    "SELECT ",
    webhook_columns!(),
    " FROM webhooks w WHERE w.workspace_id = $1 AND w.enabled ORDER BY w.id"
);
pub(crate) const WEBHOOK_INSERT: &str = "INSERT INTO webhooks (workspace_id, id, url, description, events, enabled, \
     disabled_reason, grants, created_by, created_at, updated_at, secret, previous_secret, \
     previous_secret_expires_at, failing_since_us) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)";
/// Never writes the identity, `created_by` or `created_at`.
pub(crate) const WEBHOOK_UPDATE: &str = "UPDATE webhooks SET url = $3, description = $4, events = $5, enabled = $6, \
     disabled_reason = $7, grants = $8, updated_at = $9, secret = $10, previous_secret = $11, \
     previous_secret_expires_at = $12, failing_since_us = $13 WHERE workspace_id = $1 AND id = $2";
/// Its deliveries and their attempts go with it (`ON DELETE CASCADE`); its events stay for
/// the retention job.
pub(crate) const WEBHOOK_DELETE: &str = "DELETE FROM webhooks WHERE workspace_id = $1 AND id = $2";

pub(crate) const EVENT_INSERT: &str = "INSERT INTO webhook_events (workspace_id, id, event_type, collection, payload, created_us, draft) \
     VALUES ($1, $2, $3, $4, $5, $6, $7)";
pub(crate) const EVENT_GET: &str = concat!(
    "SELECT ",
    event_columns!(),
    " FROM webhook_events e WHERE e.workspace_id = $1 AND e.id = $2"
);
/// The head of a multi-row delivery insert; `QueryBuilder::push_values` adds the rows.
pub(crate) const DELIVERY_INSERT_ROWS: &str = "INSERT INTO webhook_deliveries (workspace_id, id, webhook_id, event_id, event_type, \
     status, attempts, schedule_step, next_attempt_us, created_at, updated_at) ";
pub(crate) const DELIVERY_GET: &str = concat!(
    "SELECT ",
    delivery_columns!(),
    " FROM webhook_deliveries d WHERE d.workspace_id = $1 AND d.id = $2"
);
/// `$3` a status or the empty string for any, `$4` the cursor (`~` sorts after every id).
/// Served by `webhook_deliveries_webhook`.
pub(crate) const DELIVERIES_LIST: &str = concat!(
    "SELECT ",
    delivery_columns!(),
    " FROM webhook_deliveries d WHERE d.workspace_id = $1 AND d.webhook_id = $2 \
     AND ($3 = '' OR d.status = $3) AND d.id < $4 ORDER BY d.id DESC LIMIT $5"
);
/// Pauses an endpoint's pending deliveries no running claim holds (`$3` now in µs).
pub(crate) const DELIVERIES_PAUSE: &str = "UPDATE webhook_deliveries SET status = 'paused', next_attempt_us = NULL, \
     claim = NULL, claimed_until_us = NULL, updated_at = $4 \
     WHERE workspace_id = $1 AND webhook_id = $2 AND status = 'pending' \
     AND (claimed_until_us IS NULL OR claimed_until_us < $3)";
/// Makes an endpoint's paused deliveries due at `$3`.
pub(crate) const DELIVERIES_RESUME: &str = "UPDATE webhook_deliveries SET status = 'pending', next_attempt_us = $3, \
     updated_at = $4 WHERE workspace_id = $1 AND webhook_id = $2 AND status = 'paused'";
/// Re-opens a delivery that is not pending: due at `$3`, claim released.
pub(crate) const DELIVERY_REDELIVER: &str = "UPDATE webhook_deliveries SET status = 'pending', next_attempt_us = $3, \
     schedule_step = $4, claim = NULL, claimed_until_us = NULL, updated_at = $5 \
     WHERE workspace_id = $1 AND id = $2 AND status <> 'pending'";
pub(crate) const ATTEMPTS: &str = "SELECT delivery_id, number, attempted_at, status_code, latency_ms, response_body, error, \
     trigger FROM webhook_attempts WHERE workspace_id = $1 AND delivery_id = $2 ORDER BY number";

/// The deliveries a claim picks: due by `$1`, not held by a claim still running, of an enabled
/// endpoint, oldest due first, at most `$4`. Only pending deliveries have a `next_attempt_us`
/// (a check constraint), so the condition on it alone selects them, and they are read in order
/// from `webhook_deliveries_due` up to the limit. The endpoint is looked up per delivery (a
/// scalar subquery, never turned into a join): with a join, or a condition on the status, the
/// planner may misjudge how many rows qualify (before the first `ANALYZE`, or taking correlated
/// columns for independent ones) and sort every due delivery instead.
macro_rules! claim_pick {
    () => {
        "FROM webhook_deliveries d WHERE d.next_attempt_us <= $1 \
         AND (d.claimed_until_us IS NULL OR d.claimed_until_us < $1) \
         AND (SELECT w.enabled FROM webhooks w WHERE w.workspace_id = d.workspace_id AND w.id = d.webhook_id) \
         ORDER BY d.next_attempt_us LIMIT $4"
    };
}

/// How a backend claims (`$2` the lease's end, `$3` the claim; `claim_pick!` for the rest).
pub(crate) enum Claim {
    /// One statement claims and returns `ClaimedRow`s.
    Joined(&'static str),
    /// The claim returns the claimed keys; `CLAIMED_HEAD` reads them.
    Keyed(&'static str),
}

/// PostgreSQL: the picked rows are locked `FOR UPDATE SKIP LOCKED`, so dispatchers never wait
/// on or take each other's, and updated by their address (the lock holds them in place until
/// commit); the update is a data-modifying CTE the read joins, in one round trip. Each claimed
/// delivery's event and endpoint are looked up by their primary key in a `LATERAL` subquery
/// that `OFFSET 0` keeps from being flattened into a join, for the reason in `claim_pick!`:
/// before statistics exist the planner has been seen to match events by workspace alone.
pub(crate) const CLAIM_POSTGRES: Claim = Claim::Joined(concat!(
    "WITH claimed AS (UPDATE webhook_deliveries SET claim = $3, claimed_until_us = $2 \
     WHERE ctid = ANY(ARRAY(SELECT d.ctid ",
    claim_pick!(),
    " FOR UPDATE SKIP LOCKED)) RETURNING *) SELECT ",
    delivery_columns!(),
    ", ",
    event_columns!(),
    ", ",
    webhook_columns!(),
    " FROM claimed d \
     CROSS JOIN LATERAL (SELECT * FROM webhook_events e \
     WHERE e.workspace_id = d.workspace_id AND e.id = d.event_id OFFSET 0) e \
     CROSS JOIN LATERAL (SELECT * FROM webhooks w \
     WHERE w.workspace_id = d.workspace_id AND w.id = d.webhook_id OFFSET 0) w"
));

/// SQLite: one writer, so nothing to lock; `RETURNING` sees only the updated table, so the
/// read is a second statement.
pub(crate) const CLAIM_SQLITE: Claim = Claim::Keyed(concat!(
    "UPDATE webhook_deliveries SET claim = $3, claimed_until_us = $2 \
     WHERE rowid IN (SELECT d.rowid ",
    claim_pick!(),
    ") RETURNING workspace_id, id"
));

/// The head of the read of claimed deliveries with their events and endpoints; the keys
/// follow as a list of `(workspace_id, id)` tuples.
pub(crate) const CLAIMED_HEAD: &str = concat!(
    "SELECT ",
    delivery_columns!(),
    ", ",
    event_columns!(),
    ", ",
    webhook_columns!(),
    " FROM webhook_deliveries d \
     JOIN webhook_events e ON e.workspace_id = d.workspace_id AND e.id = d.event_id \
     JOIN webhooks w ON w.workspace_id = d.workspace_id AND w.id = d.webhook_id \
     WHERE (d.workspace_id, d.id) IN "
);

/// The head of the batched outcome update: the outcomes follow as `VALUES` rows of
/// (workspace, delivery, claim, status, attempts, schedule step, next attempt µs, updated at),
/// then `OUTCOMES_TAIL`. Both backends name `VALUES` columns `column1` … `column8`. Only a
/// delivery still holding the outcome's claim changes; the keys of those come back. A finished
/// delivery is due no more, whatever the outcome says; one to retry whose endpoint was disabled
/// while it was in flight is paused, like the endpoint's other pending deliveries.
pub(crate) const OUTCOMES_HEAD: &str = "UPDATE webhook_deliveries SET \
     status = CASE WHEN v.column4 = 'pending' AND NOT (SELECT w.enabled FROM webhooks w \
         WHERE w.workspace_id = webhook_deliveries.workspace_id AND w.id = webhook_deliveries.webhook_id) \
         THEN 'paused' ELSE v.column4 END, \
     attempts = v.column5, schedule_step = v.column6, \
     next_attempt_us = CASE WHEN v.column4 = 'pending' AND (SELECT w.enabled FROM webhooks w \
         WHERE w.workspace_id = webhook_deliveries.workspace_id AND w.id = webhook_deliveries.webhook_id) \
         THEN v.column7 END, \
     claim = NULL, claimed_until_us = NULL, updated_at = v.column8 FROM (";
pub(crate) const OUTCOMES_TAIL: &str = ") AS v WHERE webhook_deliveries.workspace_id = v.column1 \
     AND webhook_deliveries.id = v.column2 AND webhook_deliveries.claim = v.column3 \
     RETURNING workspace_id, id";
/// The head of a multi-row attempt insert; `QueryBuilder::push_values` adds the rows.
pub(crate) const ATTEMPT_INSERT_ROWS: &str = "INSERT INTO webhook_attempts (workspace_id, delivery_id, number, attempted_at, \
     status_code, latency_ms, response_body, error, trigger) ";
/// An endpoint's failure run after a batch of outcomes (`$1` workspace, `$2` endpoint, `$3`
/// µs). Each writes only when the value changes, so a batch of successes to a healthy endpoint
/// (or of failures to one already failing) writes and locks no endpoint row.
pub(crate) const FAILING_CLEAR: &str = "UPDATE webhooks SET failing_since_us = NULL \
     WHERE workspace_id = $1 AND id = $2 AND failing_since_us IS NOT NULL";
pub(crate) const FAILING_START: &str = "UPDATE webhooks SET failing_since_us = $3 \
     WHERE workspace_id = $1 AND id = $2 AND failing_since_us IS NULL";
pub(crate) const FAILING_RESTART: &str =
    "UPDATE webhooks SET failing_since_us = $3 WHERE workspace_id = $1 AND id = $2";

/// When the earliest pending delivery of an enabled endpoint is due, claims aside: read from
/// `webhook_deliveries_due` in order up to the first of an enabled endpoint (see `claim_pick!`).
pub(crate) const NEXT_DUE: &str = "SELECT d.next_attempt_us FROM webhook_deliveries d \
     WHERE d.next_attempt_us IS NOT NULL \
     AND (SELECT w.enabled FROM webhooks w WHERE w.workspace_id = d.workspace_id AND w.id = d.webhook_id) \
     ORDER BY d.next_attempt_us LIMIT 1";
pub(crate) const FAILING_SINCE: &str = "SELECT workspace_id, id FROM webhooks \
     WHERE enabled AND failing_since_us <= $1 ORDER BY workspace_id, id";
/// Events older than `$1` with no pending or paused delivery (a paused one goes out when its
/// endpoint is enabled again); their deliveries and attempts go with them.
pub(crate) const EVENTS_PRUNE: &str = "DELETE FROM webhook_events WHERE created_us < $1 AND NOT EXISTS \
     (SELECT 1 FROM webhook_deliveries d WHERE d.workspace_id = webhook_events.workspace_id \
     AND d.event_id = webhook_events.id AND d.status IN ('pending', 'paused'))";

/// `KeysTx`: the owner's sealed webhook values by id after `$2`, and their compare-and-swap.
pub(crate) const SECRETS: &str = "SELECT id, secret, previous_secret FROM webhooks \
     WHERE workspace_id = $1 AND id > $2 ORDER BY id LIMIT $3";
pub(crate) const SECRET_RESEAL: &str =
    "UPDATE webhooks SET secret = $4 WHERE workspace_id = $1 AND id = $2 AND secret = $3";
pub(crate) const PREVIOUS_SECRET_RESEAL: &str = "UPDATE webhooks SET previous_secret = $4 \
     WHERE workspace_id = $1 AND id = $2 AND previous_secret = $3";
pub(crate) const PAYLOADS: &str = "SELECT id, payload FROM webhook_events \
     WHERE workspace_id = $1 AND id > $2 ORDER BY id LIMIT $3";
pub(crate) const PAYLOAD_RESEAL: &str = "UPDATE webhook_events SET payload = $4 \
     WHERE workspace_id = $1 AND id = $2 AND payload = $3";

/// Rows per multi-row statement: far below either backend's limit on bound values.
pub(crate) const BATCH: usize = 256;

/// Implements `WebhooksTx` and `WorkspaceSystemTx` for `SqlTx<$db>`, and the functions the
/// webhook methods of `SystemTx` (in `sql.rs`) and `KeysTx` (in `sql_keys.rs`) call; `$claim`
/// is the backend's `Claim`. Invoke it beside `impl_members_tx!`, whose helpers it uses.
macro_rules! impl_webhooks_tx {
    ($db:ty, $claim:path, $lock:path) => {
        mod webhooks_tx {
            use std::collections::{BTreeMap, HashSet};

            use palisade_core::ids::{DeliveryId, WebhookEventId, WebhookId, WorkspaceId};
            use palisade_core::store::{StoreResult, WebhooksTx, WorkspaceSystemTx};
            use palisade_core::webhooks::model::{
                Attempt, ClaimedDelivery, Delivery, DeliveryOutcome, DeliveryStatus, Endpoint,
                OutboxEvent,
            };
            use sqlx::types::Json;
            use time::OffsetDateTime;

            use super::members_tx::{in_scope, one, page};
            use crate::rows::{
                AttemptRow, ClaimedRow, DeliveryRow, OutboxEventRow, WebhookRow, corrupt,
                from_micros, micros,
            };
            use crate::sql::{SqlTx, map_err};
            use crate::sql_webhooks as q;

            fn micros_opt(at: Option<OffsetDateTime>) -> StoreResult<Option<i64>> {
                at.map(micros).transpose()
            }

            /// `SystemTx::webhook_deliveries_claim`.
            pub(crate) async fn claim(
                tx: &mut SqlTx<$db>,
                now: OffsetDateTime,
                lease_until: OffsetDateTime,
                claim: &str,
                limit: u32,
            ) -> StoreResult<Vec<ClaimedDelivery>> {
                let rows: Vec<ClaimedRow> = match $claim {
                    q::Claim::Joined(sql) => sqlx::query_as(sql)
                        .bind(micros(now)?)
                        .bind(micros(lease_until)?)
                        .bind(claim)
                        .bind(i64::from(limit))
                        .fetch_all(&mut *tx.tx)
                        .await
                        .map_err(map_err)?,
                    q::Claim::Keyed(sql) => {
                        let keys: Vec<(String, String)> = sqlx::query_as(sql)
                            .bind(micros(now)?)
                            .bind(micros(lease_until)?)
                            .bind(claim)
                            .bind(i64::from(limit))
                            .fetch_all(&mut *tx.tx)
                            .await
                            .map_err(map_err)?;
                        let mut rows = Vec::with_capacity(keys.len());
                        for chunk in keys.chunks(q::BATCH) {
                            let mut b = sqlx::QueryBuilder::<$db>::new(q::CLAIMED_HEAD);
                            b.push_tuples(chunk, |mut row, (ws, id)| {
                                row.push_bind(ws.clone()).push_bind(id.clone());
                            });
                            let found: Vec<ClaimedRow> = b
                                .build_query_as()
                                .fetch_all(&mut *tx.tx)
                                .await
                                .map_err(map_err)?;
                            if found.len() != chunk.len() {
                                return Err(corrupt(
                                    "webhook_deliveries",
                                    "a claimed delivery vanished",
                                ));
                            }
                            rows.extend(found);
                        }
                        rows
                    }
                };
                let mut claimed = Vec::with_capacity(rows.len());
                for r in rows {
                    claimed.push(ClaimedDelivery {
                        delivery: r.delivery.into_delivery()?,
                        event: r.event.into_event()?,
                        endpoint: r.webhook.into_endpoint()?,
                        claim: claim.to_owned(),
                    });
                }
                claimed.sort_by(|a, b| {
                    (a.delivery.next_attempt_at, a.delivery.id.as_str())
                        .cmp(&(b.delivery.next_attempt_at, b.delivery.id.as_str()))
                });
                Ok(claimed)
            }

            /// What a batch of outcomes does to one endpoint's failure run, folded in order.
            #[derive(Clone, Copy)]
            enum FailureRun {
                /// The last outcome succeeded.
                Clear,
                /// Failures only: the run starts at the first one unless it already runs.
                Start(i64),
                /// A success, then failures: the run restarts at the first failure after it.
                Restart(i64),
            }

            /// `SystemTx::webhook_outcomes_record`: one statement updates every delivery that
            /// still holds its claim, one inserts their attempts, and each endpoint's failure
            /// run is written once, in key order (two dispatchers lock endpoint rows in the same
            /// order).
            pub(crate) async fn outcomes_record(
                tx: &mut SqlTx<$db>,
                outcomes: &[DeliveryOutcome],
                at: OffsetDateTime,
            ) -> StoreResult<u64> {
                // A delivery's first outcome in the batch releases its claim: any later one
                // for it would find the claim gone, so it is not sent.
                let mut seen = HashSet::with_capacity(outcomes.len());
                let unique: Vec<&DeliveryOutcome> = outcomes
                    .iter()
                    .filter(|o| {
                        seen.insert((o.workspace_id.as_str(), o.attempt.delivery_id.as_str()))
                    })
                    .collect();
                let mut recorded: HashSet<(String, String)> = HashSet::with_capacity(unique.len());
                for chunk in unique.chunks(q::BATCH) {
                    let mut b = sqlx::QueryBuilder::<$db>::new(q::OUTCOMES_HEAD);
                    let mut rows = Vec::with_capacity(chunk.len());
                    for o in chunk {
                        rows.push((o, micros_opt(o.next_attempt_at)?));
                    }
                    b.push_values(rows, |mut row, (o, next)| {
                        row.push_bind(o.workspace_id.as_str().to_owned())
                            .push_bind(o.attempt.delivery_id.as_str().to_owned())
                            .push_bind(o.claim.clone())
                            .push_bind(o.status.as_str())
                            .push_bind(o.attempt.number)
                            .push_bind(o.schedule_step)
                            .push_bind(next)
                            .push_bind(at);
                    });
                    b.push(q::OUTCOMES_TAIL);
                    let keys: Vec<(String, String)> = b
                        .build_query_as()
                        .fetch_all(&mut *tx.tx)
                        .await
                        .map_err(map_err)?;
                    recorded.extend(keys);
                }
                let done: Vec<&DeliveryOutcome> = unique
                    .into_iter()
                    .filter(|o| {
                        recorded.contains(&(
                            o.workspace_id.as_str().to_owned(),
                            o.attempt.delivery_id.as_str().to_owned(),
                        ))
                    })
                    .collect();
                for chunk in done.chunks(q::BATCH) {
                    let mut b = sqlx::QueryBuilder::<$db>::new(q::ATTEMPT_INSERT_ROWS);
                    b.push_values(chunk, |mut row, o| {
                        let a = &o.attempt;
                        row.push_bind(o.workspace_id.as_str().to_owned())
                            .push_bind(a.delivery_id.as_str().to_owned())
                            .push_bind(a.number)
                            .push_bind(a.attempted_at)
                            .push_bind(a.status_code)
                            .push_bind(a.latency_ms)
                            .push_bind(a.response_body.clone())
                            .push_bind(a.error.clone())
                            .push_bind(a.trigger.clone());
                    });
                    b.build().execute(&mut *tx.tx).await.map_err(map_err)?;
                }
                let mut runs: BTreeMap<(&str, &str), FailureRun> = BTreeMap::new();
                for o in &done {
                    let key = (o.workspace_id.as_str(), o.webhook_id.as_str());
                    let next = match (o.failing_since, runs.get(&key)) {
                        (None, _) => FailureRun::Clear,
                        (Some(since), None) => FailureRun::Start(micros(since)?),
                        (Some(since), Some(FailureRun::Clear)) => {
                            FailureRun::Restart(micros(since)?)
                        }
                        (Some(_), Some(run)) => *run,
                    };
                    runs.insert(key, next);
                }
                for ((ws, id), run) in runs {
                    let (sql, us) = match run {
                        FailureRun::Clear => (q::FAILING_CLEAR, None),
                        FailureRun::Start(us) => (q::FAILING_START, Some(us)),
                        FailureRun::Restart(us) => (q::FAILING_RESTART, Some(us)),
                    };
                    let mut query = sqlx::query(sql).bind(ws).bind(id);
                    if let Some(us) = us {
                        query = query.bind(us);
                    }
                    query.execute(&mut *tx.tx).await.map_err(map_err)?;
                }
                Ok(done.len() as u64)
            }

            /// `SystemTx::webhook_next_due`.
            pub(crate) async fn next_due(
                tx: &mut SqlTx<$db>,
            ) -> StoreResult<Option<OffsetDateTime>> {
                let us: Option<i64> = sqlx::query_scalar(q::NEXT_DUE)
                    .fetch_optional(&mut *tx.tx)
                    .await
                    .map_err(map_err)?;
                us.map(|us| from_micros("webhook_deliveries", us))
                    .transpose()
            }

            /// `SystemTx::webhooks_failing_since`.
            pub(crate) async fn failing_since(
                tx: &mut SqlTx<$db>,
                before: OffsetDateTime,
            ) -> StoreResult<Vec<(WorkspaceId, WebhookId)>> {
                let rows: Vec<(String, String)> = sqlx::query_as(q::FAILING_SINCE)
                    .bind(micros(before)?)
                    .fetch_all(&mut *tx.tx)
                    .await
                    .map_err(map_err)?;
                Ok(rows
                    .into_iter()
                    .map(|(ws, id)| (WorkspaceId::from_trusted(ws), WebhookId::from_trusted(id)))
                    .collect())
            }

            /// `SystemTx::webhook_events_prune`.
            pub(crate) async fn events_prune(
                tx: &mut SqlTx<$db>,
                before: OffsetDateTime,
            ) -> StoreResult<u64> {
                let done = sqlx::query(q::EVENTS_PRUNE)
                    .bind(micros(before)?)
                    .execute(&mut *tx.tx)
                    .await
                    .map_err(map_err)?;
                Ok(done.rows_affected())
            }

            /// `KeysTx::webhook_secrets`.
            pub(crate) async fn secrets(
                tx: &mut SqlTx<$db>,
                after: &str,
                limit: u32,
            ) -> StoreResult<Vec<(WebhookId, Vec<u8>, Option<Vec<u8>>)>> {
                let rows: Vec<(String, Vec<u8>, Option<Vec<u8>>)> =
                    page(tx, q::SECRETS, after, limit).await?;
                Ok(rows
                    .into_iter()
                    .map(|(id, secret, previous)| (WebhookId::from_trusted(id), secret, previous))
                    .collect())
            }

            /// `KeysTx::webhook_secret_reseal`: `field` is `secret` or `previous_secret`.
            pub(crate) async fn secret_reseal(
                tx: &mut SqlTx<$db>,
                id: &WebhookId,
                field: &str,
                old: &[u8],
                new: &[u8],
            ) -> StoreResult<bool> {
                let sql = match field {
                    "secret" => q::SECRET_RESEAL,
                    "previous_secret" => q::PREVIOUS_SECRET_RESEAL,
                    other => {
                        return Err(palisade_core::error::StoreError::Invalid(format!(
                            "webhooks has no sealed column {other}"
                        )));
                    }
                };
                swap(tx, sql, id.as_str(), old, new).await
            }

            /// `KeysTx::webhook_payloads`.
            pub(crate) async fn payloads(
                tx: &mut SqlTx<$db>,
                after: &str,
                limit: u32,
            ) -> StoreResult<Vec<(WebhookEventId, Vec<u8>)>> {
                let rows: Vec<(String, Vec<u8>)> = page(tx, q::PAYLOADS, after, limit).await?;
                Ok(rows
                    .into_iter()
                    .map(|(id, payload)| (WebhookEventId::from_trusted(id), payload))
                    .collect())
            }

            /// `KeysTx::webhook_payload_reseal`.
            pub(crate) async fn payload_reseal(
                tx: &mut SqlTx<$db>,
                id: &WebhookEventId,
                old: &[u8],
                new: &[u8],
            ) -> StoreResult<bool> {
                swap(tx, q::PAYLOAD_RESEAL, id.as_str(), old, new).await
            }

            /// A compare-and-swap of this workspace's row `$2`: `$3` the value read, `$4` the new.
            async fn swap(
                tx: &mut SqlTx<$db>,
                sql: &'static str,
                id: &str,
                old: &[u8],
                new: &[u8],
            ) -> StoreResult<bool> {
                let ws = tx.workspace()?.to_owned();
                let done = sqlx::query(sql)
                    .bind(ws)
                    .bind(id)
                    .bind(old)
                    .bind(new)
                    .execute(&mut *tx.tx)
                    .await
                    .map_err(map_err)?;
                Ok(done.rows_affected() == 1)
            }

            /// A statement of this workspace keyed by `$2` alone; whether it changed a row.
            async fn changed(
                tx: &mut SqlTx<$db>,
                sql: &'static str,
                key: &str,
            ) -> StoreResult<bool> {
                let ws = tx.workspace()?.to_owned();
                let done = sqlx::query(sql)
                    .bind(ws)
                    .bind(key)
                    .execute(&mut *tx.tx)
                    .await
                    .map_err(map_err)?;
                Ok(done.rows_affected() == 1)
            }

            #[async_trait::async_trait]
            impl WebhooksTx for SqlTx<$db> {
                async fn webhook_insert(&mut self, e: &Endpoint) -> StoreResult<()> {
                    let ws = in_scope(self, "webhooks", &e.workspace_id)?;
                    sqlx::query(q::WEBHOOK_INSERT)
                        .bind(ws)
                        .bind(e.id.as_str())
                        .bind(&e.url)
                        .bind(&e.description)
                        .bind(Json(&e.events))
                        .bind(e.enabled)
                        .bind(e.disabled_reason.as_deref())
                        .bind(Json(&e.grants))
                        .bind(&e.created_by)
                        .bind(e.created_at)
                        .bind(e.updated_at)
                        .bind(&e.secret)
                        .bind(e.previous_secret.as_deref())
                        .bind(e.previous_secret_expires_at)
                        .bind(micros_opt(e.failing_since)?)
                        .execute(&mut *self.tx)
                        .await
                        .map_err(map_err)?;
                    Ok(())
                }

                async fn webhook_get(&mut self, id: &WebhookId) -> StoreResult<Option<Endpoint>> {
                    let row: Option<WebhookRow> = one(self, q::WEBHOOK_GET, id.as_str()).await?;
                    row.map(WebhookRow::into_endpoint).transpose()
                }

                async fn webhook_lock(&mut self, id: &WebhookId) -> StoreResult<Option<Endpoint>> {
                    let row: Option<WebhookRow> = one(self, $lock, id.as_str()).await?;
                    row.map(WebhookRow::into_endpoint).transpose()
                }

                async fn webhooks_list(
                    &mut self,
                    after: Option<&WebhookId>,
                    limit: u32,
                ) -> StoreResult<Vec<Endpoint>> {
                    let rows: Vec<WebhookRow> = page(
                        self,
                        q::WEBHOOKS_LIST,
                        after.map_or("", WebhookId::as_str),
                        limit,
                    )
                    .await?;
                    rows.into_iter().map(WebhookRow::into_endpoint).collect()
                }

                async fn webhooks_enabled(&mut self) -> StoreResult<Vec<Endpoint>> {
                    let ws = self.workspace()?.to_owned();
                    let rows = sqlx::query_as::<_, WebhookRow>(q::WEBHOOKS_ENABLED)
                        .bind(ws)
                        .fetch_all(&mut *self.tx)
                        .await
                        .map_err(map_err)?;
                    rows.into_iter().map(WebhookRow::into_endpoint).collect()
                }

                async fn webhook_update(&mut self, e: &Endpoint) -> StoreResult<bool> {
                    let ws = in_scope(self, "webhooks", &e.workspace_id)?;
                    let done = sqlx::query(q::WEBHOOK_UPDATE)
                        .bind(ws)
                        .bind(e.id.as_str())
                        .bind(&e.url)
                        .bind(&e.description)
                        .bind(Json(&e.events))
                        .bind(e.enabled)
                        .bind(e.disabled_reason.as_deref())
                        .bind(Json(&e.grants))
                        .bind(e.updated_at)
                        .bind(&e.secret)
                        .bind(e.previous_secret.as_deref())
                        .bind(e.previous_secret_expires_at)
                        .bind(micros_opt(e.failing_since)?)
                        .execute(&mut *self.tx)
                        .await
                        .map_err(map_err)?;
                    Ok(done.rows_affected() == 1)
                }

                async fn webhook_delete(&mut self, id: &WebhookId) -> StoreResult<bool> {
                    changed(self, q::WEBHOOK_DELETE, id.as_str()).await
                }

                async fn webhook_event_insert(
                    &mut self,
                    event: &OutboxEvent,
                    deliveries: &[Delivery],
                ) -> StoreResult<()> {
                    let ws = in_scope(self, "webhook_events", &event.workspace_id)?;
                    for d in deliveries {
                        in_scope(self, "webhook_deliveries", &d.workspace_id)?;
                        if d.event_id != event.id {
                            return Err(corrupt("webhook_deliveries", "delivery of another event"));
                        }
                    }
                    sqlx::query(q::EVENT_INSERT)
                        .bind(&ws)
                        .bind(event.id.as_str())
                        .bind(&event.event_type)
                        .bind(event.collection.as_deref())
                        .bind(&event.payload)
                        .bind(micros(event.created_at)?)
                        .bind(event.draft)
                        .execute(&mut *self.tx)
                        .await
                        .map_err(map_err)?;
                    for chunk in deliveries.chunks(q::BATCH) {
                        let mut rows = Vec::with_capacity(chunk.len());
                        for d in chunk {
                            rows.push((d, micros_opt(d.next_attempt_at)?));
                        }
                        let mut b = sqlx::QueryBuilder::<$db>::new(q::DELIVERY_INSERT_ROWS);
                        b.push_values(rows, |mut row, (d, next)| {
                            row.push_bind(ws.clone())
                                .push_bind(d.id.as_str().to_owned())
                                .push_bind(d.webhook_id.as_str().to_owned())
                                .push_bind(d.event_id.as_str().to_owned())
                                .push_bind(d.event_type.clone())
                                .push_bind(d.status.as_str())
                                .push_bind(d.attempts)
                                .push_bind(d.schedule_step)
                                .push_bind(next)
                                .push_bind(d.created_at)
                                .push_bind(d.updated_at);
                        });
                        b.build().execute(&mut *self.tx).await.map_err(map_err)?;
                    }
                    Ok(())
                }

                async fn webhook_event_get(
                    &mut self,
                    id: &WebhookEventId,
                ) -> StoreResult<Option<OutboxEvent>> {
                    let row: Option<OutboxEventRow> = one(self, q::EVENT_GET, id.as_str()).await?;
                    row.map(OutboxEventRow::into_event).transpose()
                }

                async fn webhook_deliveries_list(
                    &mut self,
                    webhook: &WebhookId,
                    status: Option<DeliveryStatus>,
                    before: Option<&DeliveryId>,
                    limit: u32,
                ) -> StoreResult<Vec<Delivery>> {
                    let ws = self.workspace()?.to_owned();
                    let rows = sqlx::query_as::<_, DeliveryRow>(q::DELIVERIES_LIST)
                        .bind(ws)
                        .bind(webhook.as_str())
                        .bind(status.map_or("", DeliveryStatus::as_str))
                        .bind(before.map_or("~", DeliveryId::as_str))
                        .bind(i64::from(limit))
                        .fetch_all(&mut *self.tx)
                        .await
                        .map_err(map_err)?;
                    rows.into_iter().map(DeliveryRow::into_delivery).collect()
                }

                async fn webhook_delivery_get(
                    &mut self,
                    id: &DeliveryId,
                ) -> StoreResult<Option<Delivery>> {
                    let row: Option<DeliveryRow> = one(self, q::DELIVERY_GET, id.as_str()).await?;
                    row.map(DeliveryRow::into_delivery).transpose()
                }

                async fn webhook_attempts(
                    &mut self,
                    delivery: &DeliveryId,
                ) -> StoreResult<Vec<Attempt>> {
                    let ws = self.workspace()?.to_owned();
                    let rows = sqlx::query_as::<_, AttemptRow>(q::ATTEMPTS)
                        .bind(ws)
                        .bind(delivery.as_str())
                        .fetch_all(&mut *self.tx)
                        .await
                        .map_err(map_err)?;
                    Ok(rows.into_iter().map(Attempt::from).collect())
                }

                async fn webhook_deliveries_pause(
                    &mut self,
                    webhook: &WebhookId,
                    at: OffsetDateTime,
                ) -> StoreResult<u64> {
                    endpoint_deliveries(self, q::DELIVERIES_PAUSE, webhook, at).await
                }

                async fn webhook_deliveries_resume(
                    &mut self,
                    webhook: &WebhookId,
                    at: OffsetDateTime,
                ) -> StoreResult<u64> {
                    endpoint_deliveries(self, q::DELIVERIES_RESUME, webhook, at).await
                }

                async fn webhook_delivery_redeliver(
                    &mut self,
                    id: &DeliveryId,
                    at: OffsetDateTime,
                    schedule_step: i64,
                ) -> StoreResult<bool> {
                    let ws = self.workspace()?.to_owned();
                    let done = sqlx::query(q::DELIVERY_REDELIVER)
                        .bind(ws)
                        .bind(id.as_str())
                        .bind(micros(at)?)
                        .bind(schedule_step)
                        .bind(at)
                        .execute(&mut *self.tx)
                        .await
                        .map_err(map_err)?;
                    Ok(done.rows_affected() == 1)
                }
            }

            /// Pauses or resumes an endpoint's deliveries (`$1` workspace, `$2` endpoint, `$3`
            /// `at` in µs, `$4` `at`): how many changed.
            async fn endpoint_deliveries(
                tx: &mut SqlTx<$db>,
                sql: &'static str,
                webhook: &WebhookId,
                at: OffsetDateTime,
            ) -> StoreResult<u64> {
                let ws = tx.workspace()?.to_owned();
                let done = sqlx::query(sql)
                    .bind(ws)
                    .bind(webhook.as_str())
                    .bind(micros(at)?)
                    .bind(at)
                    .execute(&mut *tx.tx)
                    .await
                    .map_err(map_err)?;
                Ok(done.rows_affected())
            }

            impl WorkspaceSystemTx for SqlTx<$db> {}
        }
    };
}

pub(crate) use impl_webhooks_tx;
