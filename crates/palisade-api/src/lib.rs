//! Palisade's HTTP surface (axum): the router, the project's extractors, handlers with their wire
//! types, problem+json, middleware and the OpenAPI document. Only this crate knows HTTP statuses.

pub mod extract;
pub mod middleware;
pub mod problem;
pub mod routes;
pub mod state;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::{Config, SwaggerUi};

pub use state::{ApiSettings, AppState};

use crate::problem::ApiError;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Palisade",
        description = "Multi-tenant backend for B2B SaaS with a customer-verifiable audit log. \
            Errors are application/problem+json (RFC 9457) with a stable `code`.",
        license(name = "AGPL-3.0-only", identifier = "AGPL-3.0-only")
    ),
    modifiers(&BearerAuth),
    components(schemas(problem::Problem, problem::ProblemField)),
    tags(
        (name = "auth", description = "Accounts, sessions and tokens"),
        (name = "workspaces", description = "Workspaces (tenants)"),
        (name = "collections", description = "Typed schemas for a workspace's records"),
        (name = "records", description = "A workspace's data: records of its collections"),
        (name = "api-keys", description = "Workspace API keys: `Authorization: Bearer pal_…`"),
        (name = "webhooks", description = "Signed, retried webhook deliveries (Standard Webhooks) with their history"),
        (name = "quotas", description = "Budgets applications spend before costly work"),
        (name = "admin", description = "Instance administration"),
        (name = "operations", description = "Health and discovery"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT access token, or a workspace API key pal_…")
                    .build(),
            ),
        );
    }
}

fn api_router() -> OpenApiRouter<AppState> {
    use routes::{
        admin, api_keys, audit, auth, children, collections, members, meta, quotas, sessions,
        teams, webhooks, workspaces,
    };
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(auth::signup))
        .routes(routes!(auth::login))
        .routes(routes!(auth::refresh))
        .routes(routes!(auth::logout))
        .routes(routes!(auth::me))
        .routes(routes!(auth::verify_email))
        .routes(routes!(auth::resend_verification))
        .routes(routes!(auth::password_reset))
        .routes(routes!(auth::password_reset_confirm))
        .routes(routes!(auth::magic_link))
        .routes(routes!(auth::magic_link_consume))
        .routes(routes!(
            sessions::list_sessions,
            sessions::revoke_other_sessions
        ))
        .routes(routes!(sessions::revoke_session))
        .routes(routes!(sessions::change_password))
        .routes(routes!(workspaces::create, workspaces::list))
        .routes(routes!(workspaces::get, workspaces::update))
        .routes(routes!(admin::update_workspace))
        .routes(routes!(members::permissions))
        .routes(routes!(members::list_members))
        .routes(routes!(
            members::get_member,
            members::update_member,
            members::remove_member
        ))
        .routes(routes!(members::leave))
        .routes(routes!(members::invite, members::list_invitations))
        .routes(routes!(members::revoke_invitation))
        .routes(routes!(members::accept_invitation))
        .routes(routes!(teams::create_team, teams::list_teams))
        .routes(routes!(
            teams::get_team,
            teams::update_team,
            teams::delete_team
        ))
        .routes(routes!(teams::list_team_members))
        .routes(routes!(teams::add_team_member, teams::remove_team_member))
        .routes(routes!(teams::create_role, teams::list_roles))
        .routes(routes!(
            teams::get_role,
            teams::update_role,
            teams::delete_role
        ))
        .routes(routes!(api_keys::create_api_key, api_keys::list_api_keys))
        .routes(routes!(api_keys::get_api_key, api_keys::revoke_api_key))
        .routes(routes!(api_keys::rotate_api_key))
        .routes(routes!(webhooks::list_event_types))
        .routes(routes!(webhooks::create_webhook, webhooks::list_webhooks))
        .routes(routes!(
            webhooks::get_webhook,
            webhooks::update_webhook,
            webhooks::delete_webhook
        ))
        .routes(routes!(webhooks::rotate_webhook_secret))
        .routes(routes!(webhooks::list_deliveries))
        .routes(routes!(webhooks::get_delivery))
        .routes(routes!(webhooks::redeliver))
        .routes(routes!(
            collections::create_collection,
            collections::list_collections
        ))
        .routes(routes!(
            collections::get_collection,
            collections::update_collection,
            collections::delete_collection
        ))
        .routes(routes!(
            collections::create_record,
            collections::list_records
        ))
        .routes(routes!(
            collections::get_record,
            collections::update_record,
            collections::delete_record
        ))
        .routes(routes!(collections::publish_record))
        .routes(routes!(collections::unpublish_record))
        .routes(routes!(collections::change_tags))
        .routes(routes!(children::create_child, children::list_children))
        .routes(routes!(children::suspend_child))
        .routes(routes!(children::resume_child))
        .routes(routes!(children::delete_child))
        .routes(routes!(
            children::get_auth_policy,
            children::update_auth_policy
        ))
        .routes(routes!(audit::events, audit::record_event))
        .routes(routes!(audit::entries))
        .routes(routes!(audit::checkpoint))
        .routes(routes!(audit::checkpoint_day))
        .routes(routes!(audit::inclusion))
        .routes(routes!(audit::consistency))
        .routes(routes!(audit::audit_jwks))
        .routes(routes!(audit::export))
        .routes(routes!(audit::security_events))
        .routes(routes!(quotas::consume))
        .routes(routes!(meta::healthz))
        .routes(routes!(meta::readyz))
        .routes(routes!(meta::jwks))
        .routes(routes!(meta::security_txt))
}

/// Every `/api/v1` route is rate limited (RTL-3): the 429 answer, once for all.
fn document_rate_limits(mut doc: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    use utoipa::openapi::header::HeaderBuilder;
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder, Type};
    let integer = || utoipa::openapi::ObjectBuilder::new().schema_type(Type::Integer);
    let text = || utoipa::openapi::ObjectBuilder::new().schema_type(Type::String);
    let limited = ResponseBuilder::new()
        .description(
            "`rate_limited`: a budget is spent; nothing was done. `retry_after` and `policy` in \
             the body; see README \"Rate limits\".",
        )
        .content(
            "application/problem+json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(Some(integer()))
                .description(Some("Seconds until the request would be allowed."))
                .build(),
        )
        .header(
            "RateLimit-Policy",
            HeaderBuilder::new()
                .schema(Some(text()))
                .description(Some("Every budget charged: `\"<policy>\";q=<quota>;w=<window s>`, comma-separated (draft-ietf-httpapi-ratelimit-headers). Also on successful responses."))
                .build(),
        )
        .header(
            "RateLimit",
            HeaderBuilder::new()
                .schema(Some(text()))
                .description(Some("Each budget's state: `\"<policy>\";r=<remaining>;t=<seconds until full>`. Also on successful responses."))
                .build(),
        )
        .build();
    for (path, item) in doc.paths.paths.iter_mut() {
        if !path.starts_with("/api/v1/") {
            continue;
        }
        for op in [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ]
        .into_iter()
        .flatten()
        {
            op.responses
                .responses
                .entry("429".to_owned())
                .or_insert_with(|| limited.clone().into());
        }
    }
    doc
}

/// The OpenAPI 3.1 document, generated from the handlers' annotations.
pub fn openapi() -> utoipa::openapi::OpenApi {
    document_rate_limits(api_router().split_for_parts().1)
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    let (api, doc) = api_router().split_for_parts();
    let doc = document_rate_limits(doc);
    let schema = Arc::new(doc.to_pretty_json().unwrap_or_default());
    let max_body = state.settings.max_body_bytes;
    let swagger =
        SwaggerUi::new("/api/docs").config(Config::new(["/api/schema/"]).validator_url("none"));
    api.route(
        "/api/schema/",
        get(move || {
            let schema = Arc::clone(&schema);
            async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    schema.as_str().to_owned(),
                )
            }
        }),
    )
    .route("/auth/magic", get(routes::pages::magic_link))
    .route("/auth/verify-email", get(routes::pages::verify_email))
    .route("/auth/invitation", get(routes::pages::invitation))
    .route("/api/redoc/", get(routes::meta::redoc_page))
    .route(
        "/api/redoc/redoc.standalone.js",
        get(routes::meta::redoc_js),
    )
    .merge(Router::<AppState>::from(swagger))
    .fallback(|| async { ApiError::RouteNotFound })
    .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
    .layer(DefaultBodyLimit::max(max_body))
    .layer(CatchPanicLayer::custom(middleware::panic_response))
    .layer(axum::middleware::from_fn_with_state(
        state.clone(),
        middleware::request_context,
    ))
    .layer(SetSensitiveRequestHeadersLayer::new([
        axum::http::header::AUTHORIZATION,
        axum::http::header::COOKIE,
    ]))
    .with_state(state)
}
