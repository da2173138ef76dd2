//! Handlers, grouped by feature, each with its wire types (`FooIn` / `FooOut` / `FooPatch`).

pub mod admin;
pub mod api_keys;
pub mod audit;
pub mod auth;
pub mod children;
pub mod collections;
pub mod members;
pub mod meta;
pub mod pages;
pub mod quotas;
pub mod sessions;
pub mod teams;
pub mod webhooks;
pub mod workspaces;

/// `data` + `next_cursor`: the shape of every list.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ListOut<T: utoipa::ToSchema> {
    pub data: Vec<T>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// RFC 3339 in UTC, as on the whole API.
pub fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
