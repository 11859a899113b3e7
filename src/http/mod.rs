//! The HTTP layer: routing, extraction, error mapping. Thin by rule: a
//! handler parses, calls one [`App`] method and renders; decisions live in
//! `app` and `domain`.

mod account;
mod admin;
mod auth;
mod authorize;
pub mod client_addr;
mod connections;
mod consents;
mod console;
mod dynamic_registration;
mod edge;
mod error;
mod extract;
mod gateway;
mod health;
mod integration;
mod m2m;
mod oauth;
mod observe;
mod openapi;
mod outbound;
mod register;
mod sso;
mod vault;
mod whoami;

pub use error::ApiError;
pub use gateway::{GATEWAY_BODY_TIMEOUT, GATEWAY_MAX_BODY_BYTES};
pub use observe::{MAX_HEADER_BYTES, METRICS_UPKEEP_PERIOD, metrics_handle};

use crate::app::App;
use crate::domain::Role;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::middleware;
use axum::routing::{get, post};
use std::sync::Arc;

/// Request bodies larger than this are refused with 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The service a node serves: the router, with a panic in a handler (a
/// bug) turned into a logged 500 instead of a dropped connection. Wrapped
/// around the whole router once: every `Router::layer` wraps each route
/// again, which the token endpoint pays for on every request.
pub type Service = tower_http::catch_panic::CatchPanic<Router, PanicTo500>;

/// What a panic in a handler answers.
#[derive(Clone, Copy)]
pub struct PanicTo500;

impl tower_http::catch_panic::ResponseForPanic for PanicTo500 {
    type ResponseBody = axum::body::Body;

    fn response_for_panic(
        &mut self,
        panic: Box<dyn std::any::Any + Send + 'static>,
    ) -> axum::http::Response<axum::body::Body> {
        panic_response(panic)
    }
}

pub fn service(app: Arc<App>) -> Service {
    tower::Layer::layer(&tower_http::catch_panic::CatchPanicLayer::custom(PanicTo500), router(app))
}

pub fn router(app: Arc<App>) -> Router {
    let server_admin = Router::new()
        .route("/admin/api/users/", get(admin::list_users).post(admin::create_user))
        .route(
            "/admin/api/users/{id}/",
            get(admin::get_user).patch(admin::patch_user).delete(admin::delete_user),
        )
        .route("/admin/api/config/", get(admin::list_config))
        .route(
            "/admin/api/config/{key}/",
            get(admin::get_config).put(admin::put_config).delete(admin::delete_config),
        )
        .route("/admin/api/audit/", get(admin::list_audit))
        .route("/admin/api/data_products/", get(vault::list_data_products).post(vault::create_data_product))
        .route(
            "/admin/api/data_products/{dp_id}/",
            get(vault::get_data_product).put(vault::put_data_product).delete(vault::delete_data_product),
        )
        .route("/admin/api/m2m_clients/", get(m2m::list).post(m2m::create))
        .route("/admin/api/m2m_clients/{client_id}/", get(m2m::get).patch(m2m::patch).delete(m2m::delete))
        .route("/admin/api/m2m_clients/{client_id}/rotate_secret/", post(m2m::rotate_secret))
        .route("/admin/api/initial_access_tokens/", post(dynamic_registration::create_initial_access_token))
        .route("/admin/api/resources/", get(gateway::list_resources).post(gateway::create_resource))
        .route("/admin/api/sso_providers/", get(sso::list_providers).post(sso::create_provider))
        .route(
            "/admin/api/sso_providers/{id}/",
            get(sso::get_provider).put(sso::replace_provider).delete(sso::delete_provider),
        )
        .route(
            "/admin/api/resources/{name}/",
            get(gateway::get_resource).put(gateway::replace_resource).delete(gateway::delete_resource),
        );
    let server_admin = auth::require_role(server_admin, app.clone(), Role::ServerAdmin);
    let client_admin = Router::new()
        .route("/oauth/v1/register/", get(register::list).post(register::register))
        .route("/oauth/v1/register/presets/", get(register::presets))
        .route(
            "/oauth/v1/register/{client_id}/",
            get(register::get).put(register::replace).delete(register::delete),
        )
        .route("/oauth/v1/register/{client_id}/rotate_secret/", post(register::rotate_secret));
    let client_admin = auth::require_role(client_admin, app.clone(), Role::ServerAdmin);
    let catalog_admin = Router::new()
        .route("/admin/api/outbound_clients/", get(outbound::list).post(outbound::create))
        .route(
            "/admin/api/outbound_clients/{id}/",
            get(outbound::get).patch(outbound::patch).delete(outbound::delete),
        );
    let catalog_admin = auth::require_role(catalog_admin, app.clone(), Role::CatalogAdmin);
    let signed_in = Router::new()
        .route("/api/v2/whoami/", get(whoami::whoami))
        .route("/api/v2/oauth/consents/", get(consents::list))
        .route("/api/v2/oauth/consents/{client_id}/", axum::routing::delete(consents::revoke))
        .route("/api/v2/connections/", get(connections::list).post(connections::create))
        .route("/api/v2/connections/{id}/", get(connections::get).delete(connections::delete))
        .route("/api/v2/connections/{id}/token/", get(connections::token))
        .route("/api/v2/auth/credentials/", get(vault::list_credentials).post(vault::store_credentials))
        .route("/api/v2/auth/credentials/{dp_id}/", axum::routing::delete(vault::delete_credentials))
        .route("/internal/v1/credentials/", post(vault::read_credentials))
        .route("/api/v2/connections/{id}/revoke/", post(connections::revoke))
        .route("/api/v2/connections/{id}/proxy/{*path}", axum::routing::any(connections::proxy))
        .route(
            "/api/v2/connections/{id}/authorize/",
            get(connections::authorize).post(connections::authorize_by_post),
        );
    let signed_in = auth::require_role(signed_in, app.clone(), Role::Viewer);
    // Browser-based public clients call these from other origins (no
    // cookies are involved, so no credentials are allowed).
    let cors = tower_http::cors::CorsLayer::new()
        .allow_origin(tower_http::cors::Any)
        .allow_methods([
            axum::http::Method::GET,
            axum::http::Method::POST,
            axum::http::Method::PUT,
            axum::http::Method::DELETE,
            axum::http::Method::PATCH,
        ])
        .allow_headers([
            axum::http::header::AUTHORIZATION,
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderName::from_static("mcp-protocol-version"),
            axum::http::HeaderName::from_static("mcp-session-id"),
            axum::http::HeaderName::from_static("last-event-id"),
        ])
        .expose_headers([
            axum::http::header::WWW_AUTHENTICATE,
            axum::http::HeaderName::from_static("mcp-session-id"),
        ]);
    // Each route also takes OPTIONS, so that the CORS layer answers the
    // preflight instead of the router's 405.
    let preflight = || async { StatusCode::NO_CONTENT };
    // The reference documents these endpoints' statuses exactly (SPEC §1.3):
    // a server failure there is its 500, an outage included.
    let integration_v1 = Router::new()
        .route("/integration/v1/createRefreshToken/", post(integration::create_refresh_token))
        .route("/integration/v1/regenRefreshToken/", post(integration::regen_refresh_token))
        .route("/integration/v1/createAPIAccessToken/", post(integration::create_api_access_token))
        .route("/integration/v1/revokeAPIAccessTokens/", post(integration::revoke_api_access_tokens))
        .route("/integration/v1/validateAPIAccessToken/", post(integration::validate_api_access_token))
        .route("/integration/v1/validateRefreshToken/", post(integration::validate_refresh_token))
        .route_layer(middleware::map_response(integration::documented_statuses));
    let cross_origin = Router::new()
        .route("/oauth/v2/token/", post(oauth::token).options(preflight))
        .route("/oauth/v1/token/", post(oauth::token).options(preflight))
        .route("/oauth/v2/introspect/", post(oauth::introspect).options(preflight))
        .route("/oauth/v1/introspect/", post(oauth::introspect).options(preflight))
        .route("/oauth/v2/revoke/", post(oauth::revoke).options(preflight))
        .route("/oauth/v1/revoke/", post(oauth::revoke).options(preflight))
        .route("/.well-known/oauth-authorization-server", get(oauth::metadata).options(preflight))
        .route("/.well-known/openid-configuration", get(oauth::metadata).options(preflight))
        .route("/.well-known/jwks.json", get(oauth::jwks).options(preflight))
        .route(
            "/.well-known/oauth-protected-resource/{*path}",
            get(gateway::protected_resource_metadata).options(preflight),
        )
        // The gateway: browser-based MCP clients call it from other origins.
        .route("/r/{name}", axum::routing::any(gateway::forward))
        .route("/r/{name}/", axum::routing::any(gateway::forward))
        .route("/r/{name}/{*path}", axum::routing::any(gateway::forward))
        .route(
            dynamic_registration::REGISTRATION_PATH,
            post(dynamic_registration::register).options(preflight),
        )
        .route(
            "/oauth/v2/register/{client_id}/",
            get(dynamic_registration::read)
                .put(dynamic_registration::update)
                .delete(dynamic_registration::delete)
                .options(preflight),
        )
        .layer(cors);

    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(observe::render_metrics))
        .route("/", get(account::home))
        .route(account::ACCOUNT_PATH, get(account::account).post(account::account_action))
        .route("/static/copy.js", get(account::copy_script))
        .route(console::CONSOLE_PATH, get(console::show).post(console::submit))
        .route("/admin/{page}/", get(console::show).post(console::submit))
        .route(console::PASSWORD_PATH, get(console::password_page).post(console::change_password))
        .route("/oauth/v1/authorize/", get(authorize::authorize).post(authorize::consent))
        .route("/oauth/v1/login/", post(authorize::login))
        .route("/login/sso/{id}/", get(sso::start))
        .route("/login/sso/{id}/callback/", get(sso::callback))
        .route("/oauth/v1/connections/callback/", get(authorize::connection_callback))
        .route(
            "/oauth/v1/connections/start/",
            get(authorize::connection_start).post(authorize::connection_start_confirmed),
        )
        .merge(cross_origin)
        .merge(integration_v1)
        .merge(server_admin)
        .merge(client_admin)
        .merge(catalog_admin)
        .merge(signed_in)
        .merge(openapi::routes(app.clone()))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(observe::observe))
        .with_state(app)
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such route (keyward's API paths end with '/')")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "this route does not accept that method")
}

fn panic_response(_panic: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    // The panic's message went to the log through the panic hook; the caller
    // learns nothing of it.
    tracing::error!("a request handler panicked");
    axum::response::IntoResponse::into_response(ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal error",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    #[tokio::test]
    async fn a_panicking_handler_is_a_logged_500_with_the_error_shape() {
        async fn boom() -> &'static str {
            panic!("a bug")
        }
        let router: Router = Router::new().route("/boom", get(boom));
        let router =
            tower::Layer::layer(&tower_http::catch_panic::CatchPanicLayer::custom(PanicTo500), router);
        let request = axum::http::Request::get("/boom").body(axum::body::Body::empty()).unwrap();
        let response = router.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(axum::body::Body::new(response.into_body()), 1024).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"], "internal_error");
        assert!(!body.to_string().contains("a bug"));
    }
}

/// An upstream's answer as the two proxies pass it back: its status, the
/// `headers` named, and its body streamed as it comes. The body keeps its
/// length where the upstream gave one, so the caller gets `Content-Length`
/// (not a chunked copy) and a stream of events still flows as sent.
fn passed_on(
    upstream: reqwest::Response,
    headers: &[&str],
) -> Result<axum::response::Response, axum::http::Error> {
    let mut reply = axum::response::Response::builder().status(upstream.status().as_u16());
    for name in headers {
        if let Some(value) = upstream.headers().get(*name) {
            reply = reply.header(*name, value.as_bytes());
        }
    }
    let body = axum::http::Response::<reqwest::Body>::from(upstream).into_body();
    reply.body(axum::body::Body::new(body))
}
