//! End-to-end tests of members, invitations, teams, custom roles, child workspaces and the
//! workspace auth policy (TEN-3, TEN-4, ACL-1 … ACL-7): the real server over real HTTP, on
//! SQLite and on PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;

use common::{
    ADMIN, PASSWORD, Reply, Server, assert_status, enable_modules, id, link_token, servers, ws_path,
};
use palisade_core::ids::CustomRoleId;
use palisade_core::store::StoredEntry;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// The documented baseline (ACL-1), encoded here independently of the server's catalog.

const ROLES: [&str; 4] = ["owner", "admin", "member", "billing"];

const PERMISSIONS: [&str; 20] = [
    "workspace.read",
    "workspace.update",
    "workspace.delete",
    "auth_policy.manage",
    "children.manage",
    "members.read",
    "members.manage",
    "owners.manage",
    "roles.manage",
    "api_keys.manage",
    "webhooks.manage",
    "audit.read",
    "audit.write",
    "records.read",
    "records.read_draft",
    "records.write",
    "collections.manage",
    "quotas.consume",
    "billing.read",
    "billing.manage",
];

/// Whether the enum role's baseline holds the permission.
fn holds(role: &str, permission: &str) -> bool {
    match role {
        "owner" => true,
        "admin" => ![
            "workspace.delete",
            "billing.manage",
            "owners.manage",
            "children.manage",
        ]
        .contains(&permission),
        "member" => [
            "workspace.read",
            "members.read",
            "records.read",
            "records.read_draft",
            "records.write",
            "quotas.consume",
        ]
        .contains(&permission),
        "billing" => ["workspace.read", "billing.read", "billing.manage"].contains(&permission),
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers.

fn ids(list: &[Value]) -> Vec<String> {
    list.iter().map(id).collect()
}

async fn delete(s: &Server, path: &str, token: &str) -> Reply {
    s.call(Method::DELETE, path, Some(token), None).await
}

async fn put(s: &Server, path: &str, token: &str) -> Reply {
    s.call(Method::PUT, path, Some(token), None).await
}

/// `data` of a list answer that must be 200.
async fn list(s: &Server, token: &str, path: &str) -> Vec<Value> {
    let r = s.get(path, Some(token)).await;
    assert_status(&r, 200, &format!("{}: GET {path}", s.backend()));
    r.body["data"].as_array().unwrap().clone()
}

async fn members(s: &Server, token: &str, ws: &str) -> Vec<Value> {
    list(s, token, &ws_path(ws, "/members?limit=200")).await
}

fn active_owners(members: &[Value]) -> usize {
    members
        .iter()
        .filter(|m| m["role"] == "owner" && m["active"] == true)
        .count()
}

fn member_of<'a>(members: &'a [Value], user_id: &str) -> Option<&'a Value> {
    members.iter().find(|m| m["user_id"] == user_id)
}

/// Invites `email` to `ws` as `role`; returns the invitation and the token of the mailed link.
async fn invite(s: &Server, token: &str, ws: &str, email: &str, role: &str) -> (Value, String) {
    let before = s.mail_count(email, "invitation");
    let r = s
        .post(
            &ws_path(ws, "/invitations"),
            Some(token),
            json!({"email": email, "role": role}),
        )
        .await;
    assert_status(&r, 201, &format!("{}: invite {email}", s.backend()));
    let text = s.nth_mail(email, "invitation", before + 1).await;
    assert!(
        text.contains("/auth/invitation#token="),
        "{}: invitation link in {text}",
        s.backend()
    );
    (r.body, link_token(&text))
}

async fn accept(s: &Server, token: &str, invitation_token: &str) -> Reply {
    s.post(
        "/api/v1/invitations/accept",
        Some(token),
        json!({"token": invitation_token}),
    )
    .await
}

/// `user` (signed in as `email`) joins `ws` as `role` by invitation; returns the member id.
async fn join(s: &Server, inviter: &str, ws: &str, email: &str, user: &str, role: &str) -> String {
    let (_, token) = invite(s, inviter, ws, email, role).await;
    let r = accept(s, user, &token).await;
    assert_status(&r, 200, &format!("{}: {email} accepts", s.backend()));
    assert_eq!(
        r.body["member"]["role"],
        role,
        "{}: {}",
        s.backend(),
        r.text
    );
    id(&r.body["member"])
}

/// Signs in by magic link; returns the access token.
async fn magic_sign_in(s: &Server, email: &str) -> String {
    let before = s.mail_count(email, "magic_link");
    let r = s
        .post("/api/v1/auth/magic-link", None, json!({"email": email}))
        .await;
    assert_status(&r, 202, &format!("{}: magic link for {email}", s.backend()));
    let text = s.nth_mail(email, "magic_link", before + 1).await;
    let r = s
        .post(
            "/api/v1/auth/magic-link/consume",
            None,
            json!({"token": link_token(&text)}),
        )
        .await;
    assert_status(&r, 200, &format!("{}: consume magic link", s.backend()));
    r.body["access_token"].as_str().unwrap().to_owned()
}

/// The newest `seq` of the workspace's log, read through the API by one of its owners.
async fn audit_head(s: &Server, owner: &str, ws: &str) -> u64 {
    let r = s
        .get(&ws_path(ws, "/audit/events?limit=1"), Some(owner))
        .await;
    assert_status(&r, 200, &format!("{}: audit head", s.backend()));
    r.body["data"][0]["seq"].as_u64().unwrap()
}

/// An entry as stored, decoded; `raw` is its exact bytes.
#[derive(Debug)]
struct Ev {
    action: String,
    actor_id: String,
    target_type: String,
    target_id: String,
    diff: Value,
    pii: Value,
    raw: String,
}

fn ev(e: StoredEntry) -> Ev {
    let v: Value = serde_json::from_slice(&e.bytes).unwrap();
    Ev {
        action: v["action"].as_str().unwrap().to_owned(),
        actor_id: v["actor"]["id"].as_str().unwrap_or_default().to_owned(),
        target_type: v["target"]["type"].as_str().unwrap_or_default().to_owned(),
        target_id: v["target"]["id"].as_str().unwrap_or_default().to_owned(),
        diff: v["diff"].clone(),
        pii: v["pii"].clone(),
        raw: String::from_utf8(e.bytes).unwrap(),
    }
}

/// The workspace's log as stored, oldest first.
async fn workspace_audit(server: &Server, ws_id: &str) -> Vec<Ev> {
    let mut events: Vec<Ev> = server
        .workspace_log(ws_id)
        .await
        .into_iter()
        .map(ev)
        .collect();
    events.reverse();
    events
}

/// The entries whose action starts with one of `prefixes`, oldest first, as (action, target id).
fn audit_of<'a>(events: &'a [Ev], prefixes: &[&str]) -> Vec<(&'a str, &'a str)> {
    events
        .iter()
        .filter(|e| prefixes.iter().any(|p| e.action.starts_with(p)))
        .map(|e| (e.action.as_str(), e.target_id.as_str()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// 1. Role × endpoint matrix.

/// A fixture an operation consumes; prepared anew before every call and named `{fresh}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fresh {
    No,
    /// A member with the `member` role (the victim user, re-invited when gone).
    Victim,
    /// An open invitation.
    Invitation,
    /// A team without grants.
    Team,
    /// The standing member is put in the standing team (no `{fresh}`).
    TeamMember,
    /// A custom role nobody holds.
    Role,
    /// A child workspace.
    Child,
}

struct Op {
    method: Method,
    /// `{ws}`, `{member}` (standing member), `{team}`, `{role}`, `{child}`, `{fresh}`.
    path: &'static str,
    body: fn(usize) -> Option<Value>,
    /// Every permission the call needs.
    needs: &'static [&'static str],
    fresh: Fresh,
    /// The status when allowed.
    ok: u16,
}

fn op(
    method: Method,
    path: &'static str,
    body: fn(usize) -> Option<Value>,
    needs: &'static [&'static str],
    fresh: Fresh,
    ok: u16,
) -> Op {
    Op {
        method,
        path,
        body,
        needs,
        fresh,
        ok,
    }
}

fn no_body(_: usize) -> Option<Value> {
    None
}

/// Every workspace endpoint of the feature (and the existing ones it guards), with the
/// permissions each needs. `leave` comes last: it ends the caller's membership.
fn operations() -> Vec<Op> {
    use Fresh as F;
    vec![
        op(Method::GET, "", no_body, &["workspace.read"], F::No, 200),
        op(
            Method::PATCH,
            "",
            |n| Some(json!({"name": format!("Matrix {n}")})),
            &["workspace.update"],
            F::No,
            200,
        ),
        op(
            Method::GET,
            "/audit/events",
            no_body,
            &["audit.read"],
            F::No,
            200,
        ),
        op(
            Method::POST,
            "/audit/events",
            |n| {
                Some(
                    json!({"action": "invoice.approve", "target": {"type": "invoice", "id": format!("inv_{n}")}}),
                )
            },
            &["audit.write"],
            F::No,
            201,
        ),
        op(
            Method::GET,
            "/members",
            no_body,
            &["members.read"],
            F::No,
            200,
        ),
        op(
            Method::GET,
            "/members/{member}",
            no_body,
            &["members.read"],
            F::No,
            200,
        ),
        op(
            Method::PATCH,
            "/members/{fresh}",
            |_| Some(json!({"role": "billing"})),
            &["members.manage"],
            F::Victim,
            200,
        ),
        op(
            Method::PATCH,
            "/members/{fresh}",
            |_| Some(json!({"role": "owner"})),
            &["members.manage", "owners.manage"],
            F::Victim,
            200,
        ),
        op(
            Method::DELETE,
            "/members/{fresh}",
            no_body,
            &["members.manage"],
            F::Victim,
            204,
        ),
        op(
            Method::POST,
            "/invitations",
            |n| Some(json!({"email": format!("guest-{n}@example.com"), "role": "member"})),
            &["members.manage"],
            F::No,
            201,
        ),
        op(
            Method::POST,
            "/invitations",
            |n| Some(json!({"email": format!("boss-{n}@example.com"), "role": "owner"})),
            &["members.manage", "owners.manage"],
            F::No,
            201,
        ),
        op(
            Method::GET,
            "/invitations",
            no_body,
            &["members.read"],
            F::No,
            200,
        ),
        op(
            Method::DELETE,
            "/invitations/{fresh}",
            no_body,
            &["members.manage"],
            F::Invitation,
            204,
        ),
        op(
            Method::POST,
            "/teams",
            |n| Some(json!({"name": format!("Team {n}")})),
            &["members.manage"],
            F::No,
            201,
        ),
        op(
            Method::POST,
            "/teams",
            |n| {
                Some(json!({"name": format!("Granted {n}"),
                            "grants": [{"collection": null, "permissions": ["records.read"]}]}))
            },
            &["members.manage", "roles.manage"],
            F::No,
            201,
        ),
        op(
            Method::GET,
            "/teams",
            no_body,
            &["members.read"],
            F::No,
            200,
        ),
        op(
            Method::GET,
            "/teams/{team}",
            no_body,
            &["members.read"],
            F::No,
            200,
        ),
        op(
            Method::PATCH,
            "/teams/{team}",
            |n| Some(json!({"description": format!("Version {n}")})),
            &["members.manage"],
            F::No,
            200,
        ),
        op(
            Method::DELETE,
            "/teams/{fresh}",
            no_body,
            &["members.manage"],
            F::Team,
            204,
        ),
        op(
            Method::GET,
            "/teams/{team}/members",
            no_body,
            &["members.read"],
            F::No,
            200,
        ),
        op(
            Method::PUT,
            "/teams/{team}/members/{member}",
            no_body,
            &["members.manage"],
            F::No,
            200,
        ),
        op(
            Method::DELETE,
            "/teams/{team}/members/{member}",
            no_body,
            &["members.manage"],
            F::TeamMember,
            204,
        ),
        op(
            Method::POST,
            "/roles",
            |n| {
                Some(json!({"name": format!("Role {n}"), "base_role": "member",
                            "permissions": ["workspace.read"]}))
            },
            &["roles.manage"],
            F::No,
            201,
        ),
        op(
            Method::GET,
            "/roles",
            no_body,
            &["members.read"],
            F::No,
            200,
        ),
        op(
            Method::GET,
            "/roles/{role}",
            no_body,
            &["members.read"],
            F::No,
            200,
        ),
        op(
            Method::PATCH,
            "/roles/{role}",
            |n| Some(json!({"description": format!("Version {n}")})),
            &["roles.manage"],
            F::No,
            200,
        ),
        op(
            Method::DELETE,
            "/roles/{fresh}",
            no_body,
            &["roles.manage"],
            F::Role,
            204,
        ),
        op(
            Method::POST,
            "/children",
            |n| Some(json!({"name": format!("Child {n}")})),
            &["children.manage"],
            F::No,
            201,
        ),
        op(
            Method::GET,
            "/children",
            no_body,
            &["children.manage"],
            F::No,
            200,
        ),
        op(
            Method::POST,
            "/children/{child}/suspend",
            no_body,
            &["children.manage"],
            F::No,
            200,
        ),
        op(
            Method::POST,
            "/children/{child}/resume",
            no_body,
            &["children.manage"],
            F::No,
            200,
        ),
        op(
            Method::DELETE,
            "/children/{fresh}",
            no_body,
            &["children.manage"],
            F::Child,
            204,
        ),
        op(
            Method::GET,
            "/auth-policy",
            no_body,
            &["workspace.read"],
            F::No,
            200,
        ),
        op(
            Method::PATCH,
            "/auth-policy",
            |n| Some(json!({"password_min_length": 10 + (n % 20)})),
            &["auth_policy.manage"],
            F::No,
            200,
        ),
        op(Method::POST, "/leave", no_body, &[], F::No, 204),
    ]
}

/// The matrix's workspace and its standing fixtures.
struct World<'a> {
    s: &'a Server,
    /// The founder: an owner nobody touches, who prepares fixtures.
    founder: String,
    ws: String,
    victim_email: &'static str,
    victim_user: String,
    victim_token: String,
    member: String,
    team: String,
    role: String,
    child: String,
    n: usize,
}

impl World<'_> {
    fn next(&mut self) -> usize {
        self.n += 1;
        self.n
    }

    /// The victim as a member with the `member` role: re-invited when gone, reset when changed.
    async fn victim(&mut self) -> String {
        let s = self.s;
        let list = members(s, &self.founder, &self.ws).await;
        match member_of(&list, &self.victim_user) {
            None => {
                join(
                    s,
                    &self.founder,
                    &self.ws,
                    self.victim_email,
                    &self.victim_token,
                    "member",
                )
                .await
            }
            Some(m) => {
                let mid = id(m);
                if m["role"] != "member" {
                    let r = s
                        .patch(
                            &ws_path(&self.ws, &format!("/members/{mid}")),
                            Some(&self.founder),
                            json!({"role": "member"}),
                        )
                        .await;
                    assert_status(&r, 200, &format!("{}: reset victim", s.backend()));
                }
                mid
            }
        }
    }

    async fn created(&mut self, path: &str, body: Value) -> String {
        let r = self
            .s
            .post(&ws_path(&self.ws, path), Some(&self.founder), body)
            .await;
        assert_status(
            &r,
            201,
            &format!("{}: fixture POST {path}", self.s.backend()),
        );
        id(&r.body)
    }

    /// Prepares the operation's fixture; returns what `{fresh}` stands for.
    async fn prepare(&mut self, fresh: Fresh) -> String {
        let n = self.next();
        match fresh {
            Fresh::No => String::new(),
            Fresh::Victim => self.victim().await,
            Fresh::Invitation => {
                self.created(
                    "/invitations",
                    json!({"email": format!("doomed-{n}@example.com"), "role": "member"}),
                )
                .await
            }
            Fresh::Team => {
                self.created("/teams", json!({"name": format!("Doomed team {n}")}))
                    .await
            }
            Fresh::Role => {
                self.created(
                    "/roles",
                    json!({"name": format!("Doomed role {n}"), "base_role": "member",
                           "permissions": ["workspace.read"]}),
                )
                .await
            }
            Fresh::Child => {
                self.created("/children", json!({"name": format!("Doomed child {n}")}))
                    .await
            }
            Fresh::TeamMember => {
                let r = put(
                    self.s,
                    &ws_path(
                        &self.ws,
                        &format!("/teams/{}/members/{}", self.team, self.member),
                    ),
                    &self.founder,
                )
                .await;
                assert_status(
                    &r,
                    200,
                    &format!("{}: fixture team member", self.s.backend()),
                );
                String::new()
            }
        }
    }
}

#[tokio::test]
async fn the_permission_catalog_lists_every_key_with_the_roles_that_hold_it() {
    let s = Server::start(palisade_store::testing::sqlite()).await;
    let r = s.get("/api/v1/permissions", None).await;
    assert_status(&r, 200, "catalog");
    let data = r.body["data"].as_array().unwrap();
    let keys: Vec<&str> = data.iter().map(|p| p["key"].as_str().unwrap()).collect();
    assert_eq!(keys, PERMISSIONS, "every key, once, in catalog order");
    for p in data {
        let key = p["key"].as_str().unwrap();
        assert!(
            p["meaning"].as_str().is_some_and(|m| !m.is_empty()),
            "{key}: a meaning"
        );
        let mut roles: Vec<&str> = p["roles"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        roles.sort_unstable();
        let mut expected: Vec<&str> = ROLES.into_iter().filter(|r| holds(r, key)).collect();
        expected.sort_unstable();
        assert_eq!(roles, expected, "{key}: the roles holding it");
    }
    s.stop().await;
}

#[tokio::test]
async fn every_role_gets_exactly_its_baseline_on_every_workspace_endpoint() {
    for s in servers().await {
        let b = s.backend();
        let (_, founder, _) = s.user("founder@example.com").await;
        let ws = id(&s.workspace(&founder, "Matrix", "matrix").await);
        let (_, admin, _) = s.user(ADMIN).await;
        enable_modules(&s, &admin, &ws, &["advanced_rbac"]).await;

        let mut actors: Vec<(&str, String)> = Vec::new();
        for role in ROLES {
            let email = format!("as.{role}@example.com");
            let (_, token, _) = s.user(&email).await;
            join(&s, &founder, &ws, &email, &token, role).await;
            actors.push((role, token));
        }
        let (_, outsider, _) = s.user("outsider@example.com").await;
        s.workspace(&outsider, "Elsewhere", "elsewhere").await;
        actors.push(("non-member", outsider));

        let (_, standing, _) = s.user("standing@example.com").await;
        let member = join(
            &s,
            &founder,
            &ws,
            "standing@example.com",
            &standing,
            "member",
        )
        .await;
        let (victim_user, victim_token, _) = s.user("victim@example.com").await;
        let mut world = World {
            s: &s,
            founder: founder.clone(),
            ws: ws.clone(),
            victim_email: "victim@example.com",
            victim_user,
            victim_token,
            member,
            team: String::new(),
            role: String::new(),
            child: String::new(),
            n: 0,
        };
        world.team = world.created("/teams", json!({"name": "Standing"})).await;
        world.role = world
            .created(
                "/roles",
                json!({"name": "Standing", "base_role": "member", "permissions": ["workspace.read"]}),
            )
            .await;
        world.child = world
            .created("/children", json!({"name": "Standing child"}))
            .await;

        let mut calls = 0;
        for (role, token) in &actors {
            for op in operations() {
                let fresh = world.prepare(op.fresh).await;
                let path = ws_path(&ws, op.path)
                    .replace("{member}", &world.member)
                    .replace("{team}", &world.team)
                    .replace("{role}", &world.role)
                    .replace("{child}", &world.child)
                    .replace("{fresh}", &fresh);
                let body = (op.body)(world.next());
                let head = audit_head(&s, &founder, &ws).await;
                let r = s.call(op.method.clone(), &path, Some(token), body).await;
                calls += 1;
                let what = format!("{b}: {role} {} {}", op.method, op.path);
                let allowed = ROLES.contains(role) && op.needs.iter().all(|p| holds(role, p));
                if !ROLES.contains(role) {
                    r.assert_problem(404, "workspace_not_found", &what);
                } else if allowed {
                    assert_status(&r, op.ok, &what);
                } else {
                    r.assert_problem(403, "permission_denied", &what);
                }
                if !allowed {
                    assert_eq!(
                        audit_head(&s, &founder, &ws).await,
                        head,
                        "{what}: a refused call writes nothing"
                    );
                }
            }
            if ROLES.contains(role) {
                // The last operation was `leave`: the workspace is gone for them.
                s.get(&ws_path(&ws, ""), Some(token)).await.assert_problem(
                    404,
                    "workspace_not_found",
                    &format!("{b}: {role} left"),
                );
            }
        }
        assert_eq!(calls, operations().len() * 5, "{b}");
        s.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// 2. The last owner (ACL-5).

/// A losing request's answer: the last-owner rule, or (listed in `also`) the caller already
/// lost the power to act (demoted, deactivated, removed) when its request was authorized.
fn assert_lost(r: &Reply, also: (u16, &str), context: &str) {
    let code = r.body["code"].as_str().unwrap_or_default();
    let got = (r.status.as_u16(), code);
    assert!(
        got == (409, "last_owner") || got == also,
        "{context}: unexpected answer {} {}",
        r.status,
        r.text
    );
    assert_eq!(
        r.header("content-type"),
        "application/problem+json",
        "{context}"
    );
}

#[tokio::test]
async fn two_owners_demoting_each_other_at_once_never_leave_the_workspace_without_an_owner() {
    for s in servers().await {
        let b = s.backend();
        let (a_user, a, _) = s.user("ann@example.com").await;
        let (_, bt, _) = s.user("ben@example.com").await;
        let ws = id(&s.workspace(&a, "Race", "race").await);
        let b_mem = join(&s, &a, &ws, "ben@example.com", &bt, "owner").await;
        let a_mem = id(member_of(&members(&s, &a, &ws).await, &a_user).unwrap());
        let mut tally: BTreeMap<String, usize> = BTreeMap::new();
        for run in 0..100 {
            let ctx = format!("{b}: run {run}");
            let (path_b, path_a) = (
                ws_path(&ws, &format!("/members/{b_mem}")),
                ws_path(&ws, &format!("/members/{a_mem}")),
            );
            let (ra, rb) = tokio::join!(
                s.patch(&path_b, Some(&a), json!({"role": "admin"})),
                s.patch(&path_a, Some(&bt), json!({"role": "admin"})),
            );
            let won: Vec<bool> = [&ra, &rb]
                .iter()
                .map(|r| r.status == StatusCode::OK)
                .collect();
            for r in [&ra, &rb] {
                let key = match r.status {
                    StatusCode::OK => "200".to_owned(),
                    st => format!("{} {}", st.as_u16(), r.body["code"].as_str().unwrap_or("")),
                };
                *tally.entry(key).or_default() += 1;
                if r.status != StatusCode::OK {
                    assert_lost(r, (403, "permission_denied"), &ctx);
                }
            }
            let successes = won.iter().filter(|w| **w).count();
            assert!(successes <= 1, "{ctx}: both demotions succeeded");
            // Whoever still holds the owner role can read the members.
            let (owner, demoted) = if won[0] { (&a, &b_mem) } else { (&bt, &a_mem) };
            let list = members(&s, owner, &ws).await;
            assert!(active_owners(&list) >= 1, "{ctx}: no owner left: {list:?}");
            assert_eq!(
                successes, 1,
                "{ctx}: the first demotion is legitimate and must succeed ({} / {})",
                ra.text, rb.text
            );
            assert_eq!(active_owners(&list), 1, "{ctx}: {list:?}");
            // Reset: the remaining owner makes the other an owner again.
            let r = s
                .patch(
                    &ws_path(&ws, &format!("/members/{demoted}")),
                    Some(owner),
                    json!({"role": "owner"}),
                )
                .await;
            assert_status(&r, 200, &format!("{ctx}: reset"));
        }
        eprintln!("{b}: demotion race answers over 100 runs: {tally:?}");
        s.stop().await;
    }
}

#[tokio::test]
async fn two_owners_deactivating_removing_or_leaving_at_once_keep_one_owner() {
    for s in servers().await {
        let b = s.backend();
        let (a_user, a, _) = s.user("cara@example.com").await;
        let (b_user, bt, _) = s.user("dirk@example.com").await;
        let ws = id(&s.workspace(&a, "Race 2", "race-2").await);
        join(&s, &a, &ws, "dirk@example.com", &bt, "owner").await;
        let users = [
            (a_user.as_str(), a.as_str(), "cara@example.com"),
            (b_user.as_str(), bt.as_str(), "dirk@example.com"),
        ];
        for run in 0..30 {
            let kind = ["deactivate", "delete", "leave"][run % 3];
            let ctx = format!("{b}: {kind} run {run}");
            let list = members(&s, &a, &ws).await;
            let a_mem = id(member_of(&list, &a_user).unwrap());
            let b_mem = id(member_of(&list, &b_user).unwrap());
            let (path_b, path_a, leave) = (
                ws_path(&ws, &format!("/members/{b_mem}")),
                ws_path(&ws, &format!("/members/{a_mem}")),
                ws_path(&ws, "/leave"),
            );
            let (ra, rb) = match kind {
                "deactivate" => tokio::join!(
                    s.patch(&path_b, Some(&a), json!({"active": false})),
                    s.patch(&path_a, Some(&bt), json!({"active": false})),
                ),
                "delete" => tokio::join!(delete(&s, &path_b, &a), delete(&s, &path_a, &bt)),
                _ => tokio::join!(
                    s.call(Method::POST, &leave, Some(&a), None),
                    s.call(Method::POST, &leave, Some(&bt), None),
                ),
            };
            let won: Vec<bool> = [&ra, &rb].iter().map(|r| r.status.is_success()).collect();
            let also = match kind {
                "deactivate" => (403, "membership_inactive"),
                "delete" => (404, "workspace_not_found"),
                _ => (409, "last_owner"),
            };
            for r in [&ra, &rb] {
                if !r.status.is_success() {
                    assert_lost(r, also, &ctx);
                }
            }
            assert_eq!(
                won.iter().filter(|w| **w).count(),
                1,
                "{ctx}: exactly one may succeed ({} / {})",
                ra.text,
                rb.text
            );
            // In `leave`, the winner is the one who left; otherwise the winner acted on the other.
            let a_won = won[0];
            let a_stays = if kind == "leave" { !a_won } else { a_won };
            let (stays, gone) = if a_stays {
                (users[0], users[1])
            } else {
                (users[1], users[0])
            };
            let list = members(&s, stays.1, &ws).await;
            assert_eq!(active_owners(&list), 1, "{ctx}: {list:?}");
            let still = member_of(&list, stays.0).unwrap();
            assert_eq!(
                (still["role"].as_str(), still["active"].as_bool()),
                (Some("owner"), Some(true)),
                "{ctx}"
            );
            // Reset.
            match kind {
                "deactivate" => {
                    let gone_mem = id(member_of(&list, gone.0).unwrap());
                    let r = s
                        .patch(
                            &ws_path(&ws, &format!("/members/{gone_mem}")),
                            Some(stays.1),
                            json!({"active": true}),
                        )
                        .await;
                    assert_status(&r, 200, &format!("{ctx}: reactivate"));
                }
                _ => {
                    assert!(member_of(&list, gone.0).is_none(), "{ctx}: {list:?}");
                    join(&s, stays.1, &ws, gone.2, gone.1, "owner").await;
                }
            }
        }
        s.stop().await;
    }
}

#[tokio::test]
async fn the_last_active_owner_cannot_be_demoted_deactivated_removed_or_leave() {
    for s in servers().await {
        let b = s.backend();
        let (o_user, o, _) = s.user("olga@example.com").await;
        let (_, adm, _) = s.user("adam@example.com").await;
        let (_, x, _) = s.user("xena@example.com").await;
        let ws = id(&s.workspace(&o, "Solo", "solo").await);
        join(&s, &o, &ws, "adam@example.com", &adm, "admin").await;
        let x_mem = join(&s, &o, &ws, "xena@example.com", &x, "owner").await;
        // A second owner, deactivated: Olga is the last *active* owner.
        let r = s
            .patch(
                &ws_path(&ws, &format!("/members/{x_mem}")),
                Some(&o),
                json!({"active": false}),
            )
            .await;
        assert_status(&r, 200, b);
        assert_eq!(r.body["active"], false, "{b}");
        let before = members(&s, &o, &ws).await;
        assert_eq!(active_owners(&before), 1, "{b}");
        let o_mem = id(member_of(&before, &o_user).unwrap());
        let audit_before = workspace_audit(&s, &ws).await.len();
        let me = ws_path(&ws, &format!("/members/{o_mem}"));

        for body in [
            json!({"role": "admin"}),
            json!({"role": "member"}),
            json!({"active": false}),
        ] {
            s.patch(&me, Some(&o), body.clone()).await.assert_problem(
                409,
                "last_owner",
                &format!("{b}: {body}"),
            );
        }
        delete(&s, &me, &o)
            .await
            .assert_problem(409, "last_owner", &format!("{b}: delete"));
        s.call(Method::POST, &ws_path(&ws, "/leave"), Some(&o), None)
            .await
            .assert_problem(409, "last_owner", &format!("{b}: leave"));
        // An admin may not touch an owner at all.
        delete(&s, &me, &adm).await.assert_problem(
            403,
            "permission_denied",
            &format!("{b}: admin deletes owner"),
        );
        s.patch(&me, Some(&adm), json!({"role": "admin"}))
            .await
            .assert_problem(
                403,
                "permission_denied",
                &format!("{b}: admin demotes owner"),
            );

        assert_eq!(members(&s, &o, &ws).await, before, "{b}: nothing changed");
        assert_eq!(
            workspace_audit(&s, &ws).await.len(),
            audit_before,
            "{b}: refused changes write nothing"
        );

        // Reactivate Xena: now Olga may leave, and Xena is the last owner.
        let r = s
            .patch(
                &ws_path(&ws, &format!("/members/{x_mem}")),
                Some(&o),
                json!({"active": true}),
            )
            .await;
        assert_status(&r, 200, b);
        let r = s
            .call(Method::POST, &ws_path(&ws, "/leave"), Some(&o), None)
            .await;
        assert_status(&r, 204, &format!("{b}: leave with another owner"));
        s.patch(
            &ws_path(&ws, &format!("/members/{x_mem}")),
            Some(&x),
            json!({"role": "admin"}),
        )
        .await
        .assert_problem(409, "last_owner", &format!("{b}: Xena is the last owner"));
        let events = workspace_audit(&s, &ws).await;
        let leave = events.last().unwrap();
        assert_eq!(
            (leave.action.as_str(), leave.target_id.as_str()),
            ("member.leave", o_mem.as_str()),
            "{b}"
        );
        s.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Custom roles (ACL-3).

#[tokio::test]
async fn custom_roles_need_the_module_stay_within_the_baseline_and_narrow_members() {
    for s in servers().await {
        let b = s.backend();
        let (_, o, _) = s.user("rhea@example.com").await;
        let (_, m, _) = s.user("milo@example.com").await;
        let (_, a, _) = s.user("ari@example.com").await;
        let ws = id(&s.workspace(&o, "Roles", "roles").await);
        let m_mem = join(&s, &o, &ws, "milo@example.com", &m, "member").await;
        join(&s, &o, &ws, "ari@example.com", &a, "admin").await;

        // Module off: every endpoint says so.
        let some_role = CustomRoleId::generate().to_string();
        let viewer_body = json!({"name": "Viewer", "description": "Reads only", "base_role": "member",
                                 "permissions": ["workspace.read", "records.read"],
                                 "fields": [{"collection": "invoices", "field": "amount", "read": true, "write": false}]});
        for (method, path, body) in [
            (Method::POST, "/roles".to_owned(), Some(viewer_body.clone())),
            (Method::GET, "/roles".to_owned(), None),
            (Method::GET, format!("/roles/{some_role}"), None),
            (
                Method::PATCH,
                format!("/roles/{some_role}"),
                Some(json!({"description": "x"})),
            ),
            (Method::DELETE, format!("/roles/{some_role}"), None),
            (
                Method::PATCH,
                format!("/members/{m_mem}"),
                Some(json!({"custom_role": some_role})),
            ),
        ] {
            s.call(method.clone(), &ws_path(&ws, &path), Some(&o), body)
                .await
                .assert_problem(403, "module_disabled", &format!("{b}: {method} {path}"));
        }

        let (_, admin, _) = s.user(ADMIN).await;
        enable_modules(&s, &admin, &ws, &["advanced_rbac"]).await;

        // Beyond the base role's baseline.
        let r = s
            .post(
                &ws_path(&ws, "/roles"),
                Some(&o),
                json!({"name": "Overreach", "base_role": "member",
                       "permissions": ["workspace.read", "members.manage"]}),
            )
            .await;
        r.assert_problem(422, "validation_failed", &format!("{b}: overreach"));
        assert_eq!(r.pointers(), ["/permissions/1"], "{b}");
        // Beyond what the caller holds: an admin cannot hand out billing.manage.
        let r = s
            .post(
                &ws_path(&ws, "/roles"),
                Some(&a),
                json!({"name": "Treasurer", "base_role": "owner", "permissions": ["billing.manage"]}),
            )
            .await;
        r.assert_problem(
            422,
            "validation_failed",
            &format!("{b}: admin grants billing"),
        );
        assert_eq!(r.pointers(), ["/permissions/0"], "{b}");

        // Within it.
        let r = s
            .post(&ws_path(&ws, "/roles"), Some(&o), viewer_body.clone())
            .await;
        assert_status(&r, 201, &format!("{b}: viewer"));
        let viewer = id(&r.body);
        assert!(viewer.starts_with("role_"), "{b}: {viewer}");
        assert_eq!(
            (
                r.body["name"].clone(),
                r.body["description"].clone(),
                r.body["base_role"].clone(),
                r.body["permissions"].clone(),
                r.body["fields"].clone()
            ),
            (
                json!("Viewer"),
                json!("Reads only"),
                json!("member"),
                json!(["workspace.read", "records.read"]),
                viewer_body["fields"].clone()
            ),
            "{b}: {}",
            r.text
        );
        assert!(
            r.body["created_at"].is_string() && r.body["updated_at"].is_string(),
            "{b}"
        );

        // It narrows Milo: he keeps workspace.read, loses members.read.
        let r = s
            .patch(
                &ws_path(&ws, &format!("/members/{m_mem}")),
                Some(&o),
                json!({"custom_role": viewer}),
            )
            .await;
        assert_status(&r, 200, &format!("{b}: assign viewer"));
        assert_eq!(
            (r.body["role"].as_str(), r.body["custom_role"].as_str()),
            (Some("member"), Some(viewer.as_str())),
            "{b}"
        );
        assert_status(
            &s.get(&ws_path(&ws, ""), Some(&m)).await,
            200,
            &format!("{b}: narrowed member reads the workspace"),
        );
        s.get(&ws_path(&ws, "/members"), Some(&m))
            .await
            .assert_problem(403, "permission_denied", &format!("{b}: narrowed members"));
        s.get(&ws_path(&ws, "/roles"), Some(&m))
            .await
            .assert_problem(403, "permission_denied", &format!("{b}: narrowed roles"));

        // A role granting more than Milo's enum role cannot be assigned to him.
        let r = s
            .post(
                &ws_path(&ws, "/roles"),
                Some(&o),
                json!({"name": "Manager", "base_role": "admin",
                       "permissions": ["workspace.read", "members.manage"]}),
            )
            .await;
        assert_status(&r, 201, &format!("{b}: manager"));
        let manager = id(&r.body);
        let r = s
            .patch(
                &ws_path(&ws, &format!("/members/{m_mem}")),
                Some(&o),
                json!({"custom_role": manager}),
            )
            .await;
        r.assert_problem(422, "validation_failed", &format!("{b}: beyond enum role"));
        assert_eq!(r.pointers(), ["/custom_role"], "{b}");
        let r = s
            .get(&ws_path(&ws, &format!("/members/{m_mem}")), Some(&o))
            .await;
        assert_eq!(r.body["custom_role"], json!(viewer), "{b}: unchanged");

        // In use: not deletable.
        delete(&s, &ws_path(&ws, &format!("/roles/{viewer}")), &o)
            .await
            .assert_problem(409, "role_in_use", &format!("{b}: viewer in use"));
        assert_status(
            &delete(&s, &ws_path(&ws, &format!("/roles/{manager}")), &o).await,
            204,
            &format!("{b}: delete manager"),
        );
        s.get(&ws_path(&ws, &format!("/roles/{manager}")), Some(&o))
            .await
            .assert_problem(404, "role_not_found", &format!("{b}: manager gone"));
        let r = s
            .patch(
                &ws_path(&ws, &format!("/roles/{viewer}")),
                Some(&o),
                json!({"description": "Reads published records"}),
            )
            .await;
        assert_status(&r, 200, &format!("{b}: update viewer"));
        assert_eq!(r.body["description"], "Reads published records", "{b}");
        let roles = list(&s, &o, &ws_path(&ws, "/roles")).await;
        assert_eq!(ids(&roles), [viewer.as_str()], "{b}");
        let r = s
            .get(&ws_path(&ws, &format!("/roles/{viewer}")), Some(&a))
            .await;
        assert_status(&r, 200, &format!("{b}: admin reads role"));

        // Cleared: Milo reads members again; the role can go.
        let r = s
            .patch(
                &ws_path(&ws, &format!("/members/{m_mem}")),
                Some(&o),
                json!({"custom_role": null}),
            )
            .await;
        assert_status(&r, 200, &format!("{b}: clear custom role"));
        assert_eq!(r.body["custom_role"], Value::Null, "{b}");
        assert_status(
            &s.get(&ws_path(&ws, "/members"), Some(&m)).await,
            200,
            &format!("{b}: restored"),
        );
        assert_status(
            &delete(&s, &ws_path(&ws, &format!("/roles/{viewer}")), &o).await,
            204,
            &format!("{b}: delete viewer"),
        );

        let events = workspace_audit(&s, &ws).await;
        let trail = audit_of(&events, &["custom_role.", "member.update"]);
        assert_eq!(
            trail,
            [
                ("custom_role.create", viewer.as_str()),
                ("member.update", m_mem.as_str()),
                ("custom_role.create", manager.as_str()),
                ("custom_role.delete", manager.as_str()),
                ("custom_role.update", viewer.as_str()),
                ("member.update", m_mem.as_str()),
                ("custom_role.delete", viewer.as_str()),
            ],
            "{b}"
        );
        let assigned = events.iter().find(|e| e.action == "member.update").unwrap();
        assert_eq!(
            assigned.diff["/custom_role"],
            json!([null, viewer]),
            "{b}: {}",
            assigned.raw
        );
        s.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Parent and child workspaces (TEN-3).

#[tokio::test]
async fn a_parent_owner_runs_a_childs_lifecycle_without_seeing_inside_it() {
    for s in servers().await {
        let b = s.backend();
        let (p_user, p, _) = s.user("pam@example.com").await;
        let (_, pa, _) = s.user("pete@example.com").await;
        let (c_user, c, _) = s.user("chloe@example.com").await;
        let (_, ca, _) = s.user("carl@example.com").await;
        let (_, cm, _) = s.user("cleo@example.com").await;
        let parent = id(&s.workspace(&p, "Holding", "holding").await);
        join(&s, &p, &parent, "pete@example.com", &pa, "admin").await;

        let r = s
            .post(
                &ws_path(&parent, "/children"),
                Some(&p),
                json!({"name": "Subsidiary", "slug": "subsidiary", "owner_email": "chloe@example.com"}),
            )
            .await;
        assert_status(&r, 201, &format!("{b}: create child"));
        let child = id(&r.body);
        assert!(child.starts_with("ws_"), "{b}: {child}");
        assert_eq!(
            (
                r.body["slug"].as_str(),
                r.body["name"].as_str(),
                r.body["suspended_at"].clone()
            ),
            (Some("subsidiary"), Some("Subsidiary"), Value::Null),
            "{b}: {}",
            r.text
        );
        assert!(
            r.body["region"].is_string()
                && r.body["plan"].is_string()
                && r.body["created_at"].is_string(),
            "{b}: {}",
            r.text
        );

        // The parent's owner is not a member of the child: it does not exist for them.
        for key in [child.as_str(), "subsidiary"] {
            for path in ["", "/members", "/audit/events"] {
                s.get(&ws_path(key, path), Some(&p)).await.assert_problem(
                    404,
                    "workspace_not_found",
                    &format!("{b}: parent owner GET {key}{path}"),
                );
            }
        }
        // Only owners manage children.
        for (method, path, body) in [
            (Method::GET, "/children".to_owned(), None),
            (
                Method::POST,
                "/children".to_owned(),
                Some(json!({"name": "Rogue"})),
            ),
            (Method::POST, format!("/children/{child}/suspend"), None),
            (Method::DELETE, format!("/children/{child}"), None),
        ] {
            s.call(method.clone(), &ws_path(&parent, &path), Some(&pa), body)
                .await
                .assert_problem(
                    403,
                    "permission_denied",
                    &format!("{b}: parent admin {method} {path}"),
                );
        }
        let children = list(&s, &p, &ws_path(&parent, "/children")).await;
        assert_eq!(ids(&children), [child.as_str()], "{b}");

        // The invited owner accepts and finds a log of the child's own.
        let text = s.mail("chloe@example.com", "invitation").await;
        let r = accept(&s, &c, &link_token(&text)).await;
        assert_status(&r, 200, &format!("{b}: child owner accepts"));
        assert_eq!(
            (
                r.body["workspace"]["id"].as_str(),
                r.body["member"]["role"].as_str(),
                r.body["member"]["user_id"].as_str()
            ),
            (Some(child.as_str()), Some("owner"), Some(c_user.as_str())),
            "{b}: {}",
            r.text
        );
        let log = list(&s, &c, &ws_path(&child, "/audit/events?limit=200")).await;
        let first = log
            .iter()
            .min_by_key(|e| e["seq"].as_u64().unwrap())
            .unwrap();
        assert_eq!(
            (
                first["seq"].as_u64(),
                first["entry"]["action"].as_str(),
                first["entry"]["target"]["id"].as_str()
            ),
            (Some(0), Some("workspace.create"), Some(child.as_str())),
            "{b}: {log:?}"
        );
        let child_members = members(&s, &c, &child).await;
        assert!(
            member_of(&child_members, &p_user).is_none(),
            "{b}: the parent owner is not a member: {child_members:?}"
        );

        join(&s, &c, &child, "carl@example.com", &ca, "admin").await;
        join(&s, &c, &child, "cleo@example.com", &cm, "member").await;

        // Suspended: only the child's owners may still read its settings.
        let r = s
            .call(
                Method::POST,
                &ws_path(&parent, &format!("/children/{child}/suspend")),
                Some(&p),
                None,
            )
            .await;
        assert_status(&r, 200, &format!("{b}: suspend"));
        assert!(r.body["suspended_at"].is_string(), "{b}: {}", r.text);
        for (who, token) in [("admin", &ca), ("member", &cm)] {
            for path in ["", "/members"] {
                s.get(&ws_path(&child, path), Some(token))
                    .await
                    .assert_problem(
                        403,
                        "workspace_suspended",
                        &format!("{b}: child {who} GET {path}"),
                    );
            }
        }
        s.patch(&ws_path(&child, ""), Some(&c), json!({"name": "Renamed"}))
            .await
            .assert_problem(403, "workspace_suspended", &format!("{b}: owner PATCH"));
        assert_status(
            &s.get(&ws_path(&child, ""), Some(&c)).await,
            200,
            &format!("{b}: suspended, the owner reads the workspace"),
        );
        s.get(&ws_path(&child, "/members"), Some(&c))
            .await
            .assert_problem(403, "workspace_suspended", &format!("{b}: owner members"));

        let r = s
            .call(
                Method::POST,
                &ws_path(&parent, &format!("/children/{child}/resume")),
                Some(&p),
                None,
            )
            .await;
        assert_status(&r, 200, &format!("{b}: resume"));
        assert_eq!(r.body["suspended_at"], Value::Null, "{b}");
        for token in [&ca, &cm, &c] {
            assert_status(
                &s.get(&ws_path(&child, "/members"), Some(token)).await,
                200,
                &format!("{b}: resumed"),
            );
        }

        // A child created without owner_email belongs to its creator.
        let r = s
            .post(
                &ws_path(&parent, "/children"),
                Some(&p),
                json!({"name": "Branch", "slug": "branch"}),
            )
            .await;
        assert_status(&r, 201, &format!("{b}: own child"));
        let branch = id(&r.body);
        let r = s.get(&ws_path("branch", ""), Some(&p)).await;
        assert_status(&r, 200, &format!("{b}: creator owns the child"));
        assert_eq!(r.body["role"], "owner", "{b}");

        // Deleted: gone for its members.
        assert_status(
            &delete(&s, &ws_path(&parent, &format!("/children/{child}")), &p).await,
            204,
            &format!("{b}: delete child"),
        );
        for token in [&c, &cm] {
            s.get(&ws_path(&child, ""), Some(token))
                .await
                .assert_problem(404, "workspace_not_found", &format!("{b}: deleted child"));
        }

        let parent_log = workspace_audit(&s, &parent).await;
        assert_eq!(
            audit_of(&parent_log, &["workspace.child_"]),
            [
                ("workspace.child_create", child.as_str()),
                ("workspace.child_suspend", child.as_str()),
                ("workspace.child_resume", child.as_str()),
                ("workspace.child_create", branch.as_str()),
                ("workspace.child_delete", child.as_str()),
            ],
            "{b}"
        );
        assert_eq!(parent_log[0].action, "workspace.create", "{b}");
        assert_eq!(parent_log[0].target_id, parent, "{b}");
        let child_log = workspace_audit(&s, &child).await;
        assert!(
            child_log
                .iter()
                .all(|e| !e.action.starts_with("workspace.child_")),
            "{b}: the parent's operations are in the parent's log"
        );
        s.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Invitations (ACL-7).

#[tokio::test]
async fn invitations_are_single_use_expiring_revocable_and_for_one_address() {
    for s in servers().await {
        let b = s.backend();
        let (o_user, o, _) = s.user("ivy@example.com").await;
        let (_, mallory, _) = s.user("mallory@example.com").await;
        let (_, grace, _) = s.user("grace@example.com").await;
        let (_, _, _) = s.user("late@example.com").await;
        let (_, rev, _) = s.user("rev@example.com").await;
        let (_, twice, _) = s.user("twice@example.com").await;
        let ws = id(&s.workspace(&o, "Invites", "invites").await);

        let (inv, token) = invite(&s, &o, &ws, "grace@example.com", "member").await;
        let inv_id = id(&inv);
        assert!(inv_id.starts_with("inv_"), "{b}: {inv}");
        assert_eq!(
            (
                inv["email"].as_str(),
                inv["role"].as_str(),
                inv["custom_role"].clone(),
                inv["status"].as_str(),
                inv["invited_by"].as_str(),
                inv["accepted_at"].clone(),
                inv["revoked_at"].clone()
            ),
            (
                Some("grace@example.com"),
                Some("member"),
                Value::Null,
                Some("pending"),
                Some(o_user.as_str()),
                Value::Null,
                Value::Null
            ),
            "{b}: {inv}"
        );
        let ts = |v: &Value| {
            time::OffsetDateTime::parse(
                v.as_str().unwrap(),
                &time::format_description::well_known::Rfc3339,
            )
            .unwrap()
        };
        assert_eq!(
            ts(&inv["expires_at"]) - ts(&inv["created_at"]),
            time::Duration::days(7),
            "{b}: valid 7 days"
        );

        // Someone else signed in: refused, and the invitation stays usable.
        accept(&s, &mallory, &token).await.assert_problem(
            403,
            "invitation_mismatch",
            &format!("{b}: wrong user"),
        );
        let r = accept(&s, &grace, &token).await;
        assert_status(&r, 200, &format!("{b}: grace accepts"));
        assert_eq!(
            (
                r.body["workspace"]["id"].as_str(),
                r.body["member"]["email"].as_str(),
                r.body["member"]["role"].as_str(),
                r.body["member"]["active"].as_bool()
            ),
            (
                Some(ws.as_str()),
                Some("grace@example.com"),
                Some("member"),
                Some(true)
            ),
            "{b}: {}",
            r.text
        );
        assert!(
            r.body["member"]["id"]
                .as_str()
                .is_some_and(|m| m.starts_with("mem_")),
            "{b}"
        );
        let grace_mem = id(&r.body["member"]);
        accept(&s, &grace, &token).await.assert_problem(
            400,
            "invalid_token",
            &format!("{b}: reused"),
        );
        s.post(
            &ws_path(&ws, "/invitations"),
            Some(&o),
            json!({"email": "grace@example.com", "role": "admin"}),
        )
        .await
        .assert_problem(409, "already_member", &format!("{b}: already member"));
        accept(&s, &grace, "not-a-token-at-all")
            .await
            .assert_problem(400, "invalid_token", &format!("{b}: unknown token"));

        // Revoked.
        let (rev_inv, rev_token) = invite(&s, &o, &ws, "rev@example.com", "member").await;
        let rev_id = id(&rev_inv);
        assert_status(
            &delete(&s, &ws_path(&ws, &format!("/invitations/{rev_id}")), &o).await,
            204,
            &format!("{b}: revoke"),
        );
        accept(&s, &rev, &rev_token).await.assert_problem(
            400,
            "invalid_token",
            &format!("{b}: revoked"),
        );
        delete(&s, &ws_path(&ws, &format!("/invitations/{rev_id}")), &o)
            .await
            .assert_problem(404, "invitation_not_found", &format!("{b}: revoke twice"));

        // A newer invitation to the same address replaces the open one.
        let (first, first_token) = invite(&s, &o, &ws, "twice@example.com", "member").await;
        let (second, second_token) = invite(&s, &o, &ws, "twice@example.com", "billing").await;
        accept(&s, &twice, &first_token).await.assert_problem(
            400,
            "invalid_token",
            &format!("{b}: replaced"),
        );
        let twice_joined = accept(&s, &twice, &second_token).await;
        assert_status(&twice_joined, 200, &format!("{b}: the newer one works"));
        assert_eq!(twice_joined.body["member"]["role"], "billing", "{b}");

        // Expired after 7 days.
        let (late_inv, late_token) = invite(&s, &o, &ws, "late@example.com", "member").await;
        s.advance(time::Duration::days(7) + time::Duration::seconds(1));
        let (late, _) = s.login("late@example.com").await;
        accept(&s, &late, &late_token).await.assert_problem(
            400,
            "invalid_token",
            &format!("{b}: expired"),
        );

        // The list, newest first, with each status.
        let (o, _) = s.login("ivy@example.com").await;
        let invitations = list(&s, &o, &ws_path(&ws, "/invitations")).await;
        let status: Vec<(String, &str)> = invitations
            .iter()
            .map(|i| (id(i), i["status"].as_str().unwrap()))
            .collect();
        assert_eq!(
            status,
            [
                (id(&late_inv), "expired"),
                (id(&second), "accepted"),
                (id(&first), "revoked"),
                (rev_id.clone(), "revoked"),
                (inv_id.clone(), "accepted"),
            ],
            "{b}"
        );
        assert!(invitations[1]["accepted_at"].is_string(), "{b}");
        assert!(invitations[3]["revoked_at"].is_string(), "{b}");

        // The log: the address only as a commitment.
        let events = workspace_audit(&s, &ws).await;
        let created: Vec<&Ev> = events
            .iter()
            .filter(|e| e.action == "invitation.create")
            .collect();
        assert_eq!(created.len(), 5, "{b}");
        for e in &created {
            for address in [
                "grace@example.com",
                "rev@example.com",
                "twice@example.com",
                "late@example.com",
            ] {
                assert!(!e.raw.contains(address), "{b}: address in clear: {}", e.raw);
            }
            assert!(
                e.pii.get("/email").and_then(Value::as_str).is_some(),
                "{b}: the address is committed: {}",
                e.raw
            );
            assert_eq!(e.actor_id, o_user, "{b}");
            assert_eq!(e.target_type, "invitation", "{b}");
        }
        assert_eq!(created[0].diff["/role"], json!([null, "member"]), "{b}");
        let o_mem = id(member_of(&members(&s, &o, &ws).await, &o_user).unwrap());
        let trail = audit_of(
            &events,
            &["invitation.revoke", "invitation.accept", "member.create"],
        );
        assert_eq!(
            trail,
            [
                ("member.create", o_mem.as_str()),
                ("invitation.accept", inv_id.as_str()),
                ("member.create", grace_mem.as_str()),
                ("invitation.revoke", rev_id.as_str()),
                ("invitation.revoke", id(&first).as_str()),
                ("invitation.accept", id(&second).as_str()),
                ("member.create", id(&twice_joined.body["member"]).as_str()),
            ],
            "{b}"
        );
        s.stop().await;
    }
}

#[tokio::test]
async fn an_invite_only_instance_admits_sign_up_only_with_an_invitation_for_that_address() {
    for db in palisade_store::testing::databases().await {
        let s = Server::start_with(db, |c| {
            c.accounts.signup_mode = palisade_core::accounts::policy::SignupMode::InviteOnly;
        })
        .await;
        let b = s.backend();
        let signup = |email: &str, token: Option<&str>| {
            let mut body = json!({"email": email, "password": PASSWORD, "name": "Newcomer"});
            if let Some(t) = token {
                body["invitation_token"] = json!(t);
            }
            s.post("/api/v1/auth/signup", None, body)
        };
        signup("newbie@example.com", None).await.assert_problem(
            403,
            "invitation_required",
            &format!("{b}: no token"),
        );

        // Instance admins may always sign up; one invites.
        let (_, admin, _) = s.user(ADMIN).await;
        let ws = id(&s.workspace(&admin, "Closed club", "closed-club").await);
        let (_, token) = invite(&s, &admin, &ws, "newbie@example.com", "member").await;

        // The token is for one address.
        let r = signup("intruder@example.com", Some(&token)).await;
        assert!(
            r.status.is_client_error(),
            "{b}: another address with the token: {}",
            r.text
        );
        s.sign_in("intruder@example.com", PASSWORD)
            .await
            .assert_problem(401, "invalid_credentials", &format!("{b}: no account"));
        let r = signup("newbie@example.com", Some("not-a-token")).await;
        assert!(r.status.is_client_error(), "{b}: bad token: {}", r.text);

        let r = signup("newbie@example.com", Some(&token)).await;
        assert_status(&r, 201, &format!("{b}: invited sign-up"));
        assert_eq!(r.body["email_verified"], true, "{b}: {}", r.text);
        // Verified by the invitation: no verification mail, sign-in works at once.
        let (newbie, _) = s.login("newbie@example.com").await;
        assert_eq!(s.mail_count("newbie@example.com", "verify_email"), 0, "{b}");
        let r = accept(&s, &newbie, &token).await;
        assert_status(&r, 200, &format!("{b}: accept after sign-up"));
        assert_eq!(r.body["workspace"]["id"], json!(ws), "{b}");
        s.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// 6. Teams (ACL-4).

#[tokio::test]
async fn teams_hold_members_add_back_permissions_and_stay_in_their_workspace() {
    for s in servers().await {
        let b = s.backend();
        let (_, o, _) = s.user("tess@example.com").await;
        let (_, a, _) = s.user("theo@example.com").await;
        let (_, m, _) = s.user("tina@example.com").await;
        let ws = id(&s.workspace(&o, "Teams", "teams").await);
        join(&s, &o, &ws, "theo@example.com", &a, "admin").await;
        let m_mem = join(&s, &o, &ws, "tina@example.com", &m, "member").await;

        let grants = json!([{"collection": "tasks", "permissions": ["records.write"]}]);
        let r = s
            .post(
                &ws_path(&ws, "/teams"),
                Some(&a),
                json!({"name": "Editors", "description": "Write tasks", "grants": grants}),
            )
            .await;
        assert_status(&r, 201, &format!("{b}: create team"));
        let editors = id(&r.body);
        assert!(editors.starts_with("team_"), "{b}: {editors}");
        assert_eq!(
            (
                r.body["name"].clone(),
                r.body["description"].clone(),
                r.body["grants"].clone()
            ),
            (json!("Editors"), json!("Write tasks"), grants),
            "{b}: {}",
            r.text
        );
        s.post(
            &ws_path(&ws, "/teams"),
            Some(&a),
            json!({"name": "Editors"}),
        )
        .await
        .assert_problem(409, "name_taken", &format!("{b}: duplicate"));
        let r = s
            .post(
                &ws_path(&ws, "/teams"),
                Some(&a),
                json!({"name": "Payers", "grants": [{"collection": null, "permissions": ["billing.manage"]}]}),
            )
            .await;
        r.assert_problem(422, "validation_failed", &format!("{b}: beyond the caller"));
        assert_eq!(r.pointers(), ["/grants/0/permissions/0"], "{b}");

        // Added twice, recorded once.
        let member_path = ws_path(&ws, &format!("/teams/{editors}/members/{m_mem}"));
        for _ in 0..2 {
            let r = put(&s, &member_path, &a).await;
            assert_status(&r, 200, &format!("{b}: add member"));
            assert_eq!(r.body["id"], json!(m_mem), "{b}");
        }
        let team_members = list(&s, &a, &ws_path(&ws, &format!("/teams/{editors}/members"))).await;
        assert_eq!(ids(&team_members), [m_mem.as_str()], "{b}");
        let teams = list(&s, &m, &ws_path(&ws, "/teams")).await;
        assert_eq!(ids(&teams), [editors.as_str()], "{b}");
        let r = s
            .patch(
                &ws_path(&ws, &format!("/teams/{editors}")),
                Some(&a),
                json!({"name": "Writers"}),
            )
            .await;
        assert_status(&r, 200, &format!("{b}: rename"));
        assert_eq!(r.body["name"], "Writers", "{b}");
        let r = s
            .get(&ws_path(&ws, &format!("/teams/{editors}")), Some(&m))
            .await;
        assert_status(&r, 200, &format!("{b}: member reads team"));
        assert_eq!(r.body["name"], "Writers", "{b}");

        // A workspace-wide grant adds back what a custom role took away, within the enum role.
        let (_, admin, _) = s.user(ADMIN).await;
        enable_modules(&s, &admin, &ws, &["advanced_rbac"]).await;
        let r = s
            .post(
                &ws_path(&ws, "/roles"),
                Some(&o),
                json!({"name": "Viewer", "base_role": "member",
                       "permissions": ["workspace.read", "records.read"]}),
            )
            .await;
        assert_status(&r, 201, &format!("{b}: viewer"));
        let viewer = id(&r.body);
        let r = s
            .patch(
                &ws_path(&ws, &format!("/members/{m_mem}")),
                Some(&o),
                json!({"custom_role": viewer}),
            )
            .await;
        assert_status(&r, 200, &format!("{b}: narrow tina"));
        s.get(&ws_path(&ws, "/members"), Some(&m))
            .await
            .assert_problem(403, "permission_denied", &format!("{b}: narrowed"));
        let r = s
            .post(
                &ws_path(&ws, "/teams"),
                Some(&o),
                json!({"name": "Readers", "grants": [{"collection": null, "permissions": ["members.read"]}]}),
            )
            .await;
        assert_status(&r, 201, &format!("{b}: readers"));
        let readers = id(&r.body);
        s.patch(
            &ws_path(&ws, &format!("/teams/{readers}")),
            Some(&o),
            json!({"name": "Writers"}),
        )
        .await
        .assert_problem(409, "name_taken", &format!("{b}: rename onto another"));
        let readers_tina = ws_path(&ws, &format!("/teams/{readers}/members/{m_mem}"));
        assert_status(&put(&s, &readers_tina, &o).await, 200, b);
        assert_status(
            &s.get(&ws_path(&ws, "/members"), Some(&m)).await,
            200,
            &format!("{b}: the team gives members.read back"),
        );
        assert_status(&delete(&s, &readers_tina, &o).await, 204, b);
        s.get(&ws_path(&ws, "/members"), Some(&m))
            .await
            .assert_problem(403, "permission_denied", &format!("{b}: out of the team"));

        // Cross-tenant: a team of this workspace does not exist in another.
        let other = id(&s.workspace(&o, "Other", "other-teams").await);
        for (method, path) in [
            (Method::GET, format!("/teams/{readers}")),
            (Method::GET, format!("/teams/{readers}/members")),
            (Method::PATCH, format!("/teams/{readers}")),
            (Method::DELETE, format!("/teams/{readers}")),
        ] {
            let body = (method == Method::PATCH).then(|| json!({"description": "x"}));
            s.call(method.clone(), &ws_path(&other, &path), Some(&o), body)
                .await
                .assert_problem(404, "team_not_found", &format!("{b}: {method} {path}"));
        }

        assert_status(&delete(&s, &member_path, &a).await, 204, b);
        let team_members = list(&s, &a, &ws_path(&ws, &format!("/teams/{editors}/members"))).await;
        assert!(team_members.is_empty(), "{b}: {team_members:?}");
        assert_status(
            &delete(&s, &ws_path(&ws, &format!("/teams/{editors}")), &a).await,
            204,
            &format!("{b}: delete team"),
        );
        s.get(&ws_path(&ws, &format!("/teams/{editors}")), Some(&a))
            .await
            .assert_problem(404, "team_not_found", &format!("{b}: deleted team"));
        // Tina is still a member of the workspace.
        assert!(
            members(&s, &o, &ws).await.iter().any(|x| id(x) == m_mem),
            "{b}"
        );

        let events = workspace_audit(&s, &ws).await;
        assert_eq!(
            audit_of(&events, &["team."]),
            [
                ("team.create", editors.as_str()),
                ("team.member_add", editors.as_str()),
                ("team.update", editors.as_str()),
                ("team.create", readers.as_str()),
                ("team.member_add", readers.as_str()),
                ("team.member_remove", readers.as_str()),
                ("team.member_remove", editors.as_str()),
                ("team.delete", editors.as_str()),
            ],
            "{b}: one entry per change"
        );
        let renamed = events.iter().find(|e| e.action == "team.update").unwrap();
        assert_eq!(renamed.diff["/name"], json!(["Editors", "Writers"]), "{b}");
        s.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// 7. Cross-tenant ids.

#[tokio::test]
async fn ids_of_one_workspace_are_not_found_under_another_the_caller_owns() {
    for s in servers().await {
        let b = s.backend();
        let (_, o, _) = s.user("owen@example.com").await;
        let (_, x, _) = s.user("xavi@example.com").await;
        let (_, y, _) = s.user("yara@example.com").await;
        let (_, admin, _) = s.user(ADMIN).await;
        let alpha = id(&s.workspace(&o, "Alpha", "alpha").await);
        let beta = id(&s.workspace(&o, "Beta", "beta").await);
        for ws in [&alpha, &beta] {
            enable_modules(&s, &admin, ws, &["advanced_rbac"]).await;
        }
        let x_mem = join(&s, &o, &alpha, "xavi@example.com", &x, "member").await;
        let y_mem = join(&s, &o, &beta, "yara@example.com", &y, "member").await;
        let (inv, _) = invite(&s, &o, &alpha, "pending@example.com", "member").await;
        let inv = id(&inv);
        let create = |ws: &str, path: &str, body: Value| {
            let path = ws_path(ws, path);
            let o = o.clone();
            let s = &s;
            async move {
                let r = s.post(&path, Some(&o), body).await;
                assert_status(&r, 201, &format!("{}: POST {path}", s.backend()));
                id(&r.body)
            }
        };
        let team = create(&alpha, "/teams", json!({"name": "Alpha team"})).await;
        let beta_team = create(&beta, "/teams", json!({"name": "Beta team"})).await;
        let role = create(
            &alpha,
            "/roles",
            json!({"name": "Alpha role", "base_role": "member", "permissions": ["workspace.read"]}),
        )
        .await;
        let child = create(&alpha, "/children", json!({"name": "Alpha child"})).await;

        let cases: Vec<(Method, String, Option<Value>, &str)> = vec![
            (
                Method::GET,
                format!("/members/{x_mem}"),
                None,
                "member_not_found",
            ),
            (
                Method::PATCH,
                format!("/members/{x_mem}"),
                Some(json!({"role": "admin"})),
                "member_not_found",
            ),
            (
                Method::DELETE,
                format!("/members/{x_mem}"),
                None,
                "member_not_found",
            ),
            (
                Method::DELETE,
                format!("/invitations/{inv}"),
                None,
                "invitation_not_found",
            ),
            (
                Method::GET,
                format!("/teams/{team}"),
                None,
                "team_not_found",
            ),
            (
                Method::PATCH,
                format!("/teams/{team}"),
                Some(json!({"name": "Stolen"})),
                "team_not_found",
            ),
            (
                Method::DELETE,
                format!("/teams/{team}"),
                None,
                "team_not_found",
            ),
            (
                Method::GET,
                format!("/teams/{team}/members"),
                None,
                "team_not_found",
            ),
            (
                Method::PUT,
                format!("/teams/{team}/members/{y_mem}"),
                None,
                "team_not_found",
            ),
            (
                Method::DELETE,
                format!("/teams/{team}/members/{y_mem}"),
                None,
                "team_not_found",
            ),
            (
                Method::PUT,
                format!("/teams/{beta_team}/members/{x_mem}"),
                None,
                "member_not_found",
            ),
            (
                Method::GET,
                format!("/roles/{role}"),
                None,
                "role_not_found",
            ),
            (
                Method::PATCH,
                format!("/roles/{role}"),
                Some(json!({"description": "Stolen"})),
                "role_not_found",
            ),
            (
                Method::DELETE,
                format!("/roles/{role}"),
                None,
                "role_not_found",
            ),
            (
                Method::POST,
                format!("/children/{child}/suspend"),
                None,
                "child_not_found",
            ),
            (
                Method::POST,
                format!("/children/{child}/resume"),
                None,
                "child_not_found",
            ),
            (
                Method::DELETE,
                format!("/children/{child}"),
                None,
                "child_not_found",
            ),
        ];
        let head = audit_head(&s, &o, &beta).await;
        for (method, path, body, code) in cases {
            s.call(method.clone(), &ws_path(&beta, &path), Some(&o), body)
                .await
                .assert_problem(404, code, &format!("{b}: {method} beta{path}"));
        }
        // A custom role of Alpha cannot be given to a member of Beta either.
        let r = s
            .patch(
                &ws_path(&beta, &format!("/members/{y_mem}")),
                Some(&o),
                json!({"custom_role": role}),
            )
            .await;
        assert!(r.status.is_client_error(), "{b}: {}", r.text);
        assert_eq!(
            audit_head(&s, &o, &beta).await,
            head,
            "{b}: nothing written"
        );

        // Everything in Alpha is intact.
        let alpha_members = members(&s, &o, &alpha).await;
        let xm = alpha_members.iter().find(|m| id(m) == x_mem).unwrap();
        assert_eq!(xm["role"], "member", "{b}");
        let y_in_beta = members(&s, &o, &beta).await;
        let ym = y_in_beta.iter().find(|m| id(m) == y_mem).unwrap();
        assert_eq!(ym["custom_role"], Value::Null, "{b}");
        let invitations = list(&s, &o, &ws_path(&alpha, "/invitations")).await;
        assert_eq!(invitations[0]["id"], json!(inv), "{b}");
        assert_eq!(invitations[0]["status"], "pending", "{b}");
        let r = s
            .get(&ws_path(&alpha, &format!("/teams/{team}")), Some(&o))
            .await;
        assert_eq!(
            (r.status, r.body["name"].as_str()),
            (StatusCode::OK, Some("Alpha team")),
            "{b}"
        );
        let r = s
            .get(&ws_path(&alpha, &format!("/roles/{role}")), Some(&o))
            .await;
        assert_eq!(
            (r.status, r.body["description"].clone()),
            (StatusCode::OK, Value::Null),
            "{b}"
        );
        let children = list(&s, &o, &ws_path(&alpha, "/children")).await;
        assert_eq!(ids(&children), [child.as_str()], "{b}");
        assert_eq!(children[0]["suspended_at"], Value::Null, "{b}");
        s.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Auth policy (TEN-4).

#[tokio::test]
async fn a_workspace_auth_policy_limits_sign_in_methods_and_session_age_for_that_workspace_only() {
    for s in servers().await {
        let b = s.backend();
        let (_, o1, _) = s.user("paula@example.com").await;
        let (_, o2_password, _) = s.user("quinn@example.com").await;
        let (_, m, _) = s.user("mona@example.com").await;
        let ws = id(&s.workspace(&o1, "Strict", "strict").await);
        let home = id(&s.workspace(&m, "Home", "home").await);
        join(&s, &o1, &ws, "quinn@example.com", &o2_password, "owner").await;
        join(&s, &o1, &ws, "mona@example.com", &m, "member").await;

        let r = s.get(&ws_path(&ws, "/auth-policy"), Some(&m)).await;
        assert_status(&r, 200, &format!("{b}: member reads the policy"));
        assert_eq!(
            r.body,
            json!({"sign_in_methods": ["password", "magic_link"], "session_max_secs": null,
                   "password_min_length": null, "mfa_required": false}),
            "{b}"
        );
        s.patch(
            &ws_path(&ws, "/auth-policy"),
            Some(&m),
            json!({"session_max_secs": 300}),
        )
        .await
        .assert_problem(403, "permission_denied", &format!("{b}: member"));

        // A password session cannot forbid passwords: it would lock itself out.
        let r = s
            .patch(
                &ws_path(&ws, "/auth-policy"),
                Some(&o1),
                json!({"sign_in_methods": ["magic_link"]}),
            )
            .await;
        r.assert_problem(422, "validation_failed", &format!("{b}: self lock-out"));
        assert_eq!(r.pointers(), ["/sign_in_methods"], "{b}");

        // An owner signed in by magic link can.
        let o2 = magic_sign_in(&s, "quinn@example.com").await;
        let r = s
            .patch(
                &ws_path(&ws, "/auth-policy"),
                Some(&o2),
                json!({"sign_in_methods": ["magic_link"]}),
            )
            .await;
        assert_status(&r, 200, &format!("{b}: magic link only"));
        assert_eq!(r.body["sign_in_methods"], json!(["magic_link"]), "{b}");
        for (who, token) in [("member", &m), ("owner", &o1)] {
            s.get(&ws_path(&ws, ""), Some(token)).await.assert_problem(
                403,
                "reauthentication_required",
                &format!("{b}: {who} by password"),
            );
        }
        assert_status(
            &s.get(&ws_path(&home, ""), Some(&m)).await,
            200,
            &format!("{b}: her own workspace is unaffected"),
        );
        let m_magic = magic_sign_in(&s, "mona@example.com").await;
        assert_status(
            &s.get(&ws_path(&ws, ""), Some(&m_magic)).await,
            200,
            &format!("{b}: by magic link"),
        );

        // Session lifetime.
        let r = s
            .patch(
                &ws_path(&ws, "/auth-policy"),
                Some(&o2),
                json!({"sign_in_methods": ["password", "magic_link"], "session_max_secs": 300}),
            )
            .await;
        assert_status(&r, 200, &format!("{b}: session max"));
        assert_eq!(r.body["session_max_secs"], 300, "{b}");
        let (m, _) = s.login("mona@example.com").await;
        assert_status(&s.get(&ws_path(&ws, ""), Some(&m)).await, 200, b);
        s.advance(time::Duration::seconds(301));
        s.get(&ws_path(&ws, "/members"), Some(&m))
            .await
            .assert_problem(403, "reauthentication_required", &format!("{b}: too old"));
        assert_status(
            &s.get(&ws_path(&home, ""), Some(&m)).await,
            200,
            &format!("{b}: other workspaces still work"),
        );
        let (m, _) = s.login("mona@example.com").await;
        assert_status(
            &s.get(&ws_path(&ws, "/members"), Some(&m)).await,
            200,
            &format!("{b}: signed in again"),
        );

        let events = workspace_audit(&s, &ws).await;
        let updates: Vec<&Ev> = events
            .iter()
            .filter(|e| e.action == "workspace.auth_policy_update")
            .collect();
        assert_eq!(updates.len(), 2, "{b}");
        assert_eq!(
            updates[0].diff["/sign_in_methods"],
            json!([["password", "magic_link"], ["magic_link"]]),
            "{b}: {}",
            updates[0].raw
        );
        assert_eq!(
            updates[1].diff["/session_max_secs"],
            json!([null, 300]),
            "{b}: {}",
            updates[1].raw
        );
        s.stop().await;
    }
}
