//! Helpers the record test suites share: paths, and creating collections, records, members and
//! scoped API keys (each asserting its status).

use serde_json::{Value, json};

use super::{Server, assert_status, id, join, ws_path};

pub fn col_path(ws: &str, name: &str) -> String {
    ws_path(ws, &format!("/collections/{name}"))
}

pub fn records(ws: &str, col: &str) -> String {
    format!("{}/records", col_path(ws, col))
}

pub fn record(ws: &str, col: &str, id: &str) -> String {
    format!("{}/{id}", records(ws, col))
}

/// `POST …/collections`, which must be 201; returns the collection.
pub async fn collection(s: &Server, token: &str, ws: &str, name: &str, fields: Value) -> Value {
    let r = s
        .post(
            &ws_path(ws, "/collections"),
            Some(token),
            json!({"name": name, "fields": fields}),
        )
        .await;
    assert_status(
        &r,
        201,
        &format!("{}: create collection {name}", s.backend()),
    );
    r.body
}

/// `POST …/records`, which must be 201 with the version as ETag; returns the record.
pub async fn create(s: &Server, token: &str, ws: &str, col: &str, body: Value) -> Value {
    let r = s.post(&records(ws, col), Some(token), body.clone()).await;
    assert_status(
        &r,
        201,
        &format!("{}: create record in {col} {body}", s.backend()),
    );
    assert_eq!(r.header("etag"), "\"1\"", "{}: {}", s.backend(), r.text);
    assert_eq!(r.body["version"], 1, "{}", s.backend());
    r.body
}

/// A new user who joined `ws` as `role`: (user id, token, member id).
pub async fn member(
    s: &Server,
    owner: &str,
    ws: &str,
    email: &str,
    role: &str,
) -> (String, String, String) {
    let (uid, token, _) = s.user(email).await;
    let mid = join(s, owner, ws, email, &token, role).await;
    (uid, token, mid)
}

/// `POST …/api-keys`, which must be 201; returns (key id, secret).
pub async fn create_key(s: &Server, token: &str, ws: &str, scopes: &[&str]) -> (String, String) {
    let r = s
        .post(
            &ws_path(ws, "/api-keys"),
            Some(token),
            json!({"name": format!("key {scopes:?}"), "scopes": scopes}),
        )
        .await;
    assert_status(&r, 201, &format!("{}: create key {scopes:?}", s.backend()));
    (id(&r.body), r.body["key"].as_str().unwrap().to_owned())
}
