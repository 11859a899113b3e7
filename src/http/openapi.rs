//! OpenAPI 3 documents generated from the handlers' annotations, and their
//! Swagger UI from assets bundled in the binary, shown only while
//! `alation.feature_flags.enable_swagger` is true.

use super::error::ApiError;
use super::integration;
use crate::app::App;
use crate::domain::settings::ENABLE_SWAGGER;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use std::sync::Arc;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Token Authentication and Management APIs",
        description = "RefreshTokens and APIAccessTokens of a user. An APIAccessToken authenticates the \
                       platform's APIs in the `TOKEN` header.",
        version = "1"
    ),
    paths(
        integration::create_refresh_token,
        integration::regen_refresh_token,
        integration::create_api_access_token,
        integration::revoke_api_access_tokens,
        integration::validate_api_access_token,
        integration::validate_refresh_token,
    ),
    modifiers(&Conventions)
)]
pub struct ApiAuthenticationDoc;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "OAuth 2.0: client administration and tokens",
        description = "Register the OAuth clients of third-party apps (server admins), and obtain tokens. \
                       The authorization endpoint is /oauth/v1/authorize/ (a browser page).",
        version = "1"
    ),
    paths(
        super::register::register,
        super::register::list,
        super::register::get,
        super::register::replace,
        super::register::delete,
        super::register::rotate_secret,
        super::register::presets,
        super::oauth::token,
        super::oauth::introspect,
        super::oauth::revoke,
        super::oauth::metadata,
        super::oauth::jwks,
        super::gateway::protected_resource_metadata,
        super::dynamic_registration::register,
        super::dynamic_registration::read,
        super::dynamic_registration::update,
        super::dynamic_registration::delete,
    ),
    modifiers(&AdminAuthentication, &Aliases, &Conventions)
)]
pub struct OAuth2Doc;

/// Paths that answer exactly as another (older clients' versions, OpenID
/// discovery): the same operation under each.
struct Aliases;

const ALIASES: &[(&str, &str)] = &[
    ("/oauth/v1/token/", "/oauth/v2/token/"),
    ("/oauth/v2/introspect/", "/oauth/v1/introspect/"),
    ("/oauth/v2/revoke/", "/oauth/v1/revoke/"),
    ("/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"),
];

impl utoipa::Modify for Aliases {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, alias) in ALIASES {
            if let Some(item) = openapi.paths.paths.get(*path).cloned() {
                let mut item = item;
                for operation in [&mut item.get, &mut item.post].into_iter().flatten() {
                    // Operation ids are unique within a document.
                    let at: String =
                        alias.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
                    operation.operation_id = operation.operation_id.as_ref().map(|id| format!("{id}_at{at}"));
                }
                openapi.paths.paths.insert(alias.to_string(), item);
            }
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Admin API",
        description = "Users, settings, the audit log, M2M clients, protected resources, SSO providers, data \
                       products and outbound OAuth clients (server admins; outbound clients: catalog admins).",
        version = "1"
    ),
    paths(
        super::admin::list_users,
        super::admin::create_user,
        super::admin::get_user,
        super::admin::patch_user,
        super::admin::delete_user,
        super::admin::list_config,
        super::admin::get_config,
        super::admin::put_config,
        super::admin::delete_config,
        super::admin::list_audit,
        super::m2m::create,
        super::m2m::list,
        super::m2m::get,
        super::m2m::patch,
        super::m2m::delete,
        super::m2m::rotate_secret,
        super::dynamic_registration::create_initial_access_token,
        super::gateway::list_resources,
        super::gateway::create_resource,
        super::gateway::get_resource,
        super::gateway::replace_resource,
        super::gateway::delete_resource,
        super::sso::list_providers,
        super::sso::create_provider,
        super::sso::get_provider,
        super::sso::replace_provider,
        super::sso::delete_provider,
        super::vault::list_data_products,
        super::vault::create_data_product,
        super::vault::get_data_product,
        super::vault::put_data_product,
        super::vault::delete_data_product,
        super::outbound::list,
        super::outbound::create,
        super::outbound::get,
        super::outbound::patch,
        super::outbound::delete,
        super::health::healthz,
        super::health::readyz,
    ),
    modifiers(&AdminAuthentication, &Conventions)
)]
pub struct AdminDoc;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Account API",
        description = "Who a signed-in caller is (whoami) and what it holds: consents to apps, connections to other companies' APIs \
                       (the proxy at /api/v2/connections/{id}/proxy/… passes the provider's API through, and \
                       is documented by the provider), and warehouse credentials.",
        version = "1"
    ),
    paths(
        super::whoami::whoami,
        super::consents::list,
        super::consents::revoke,
        super::connections::create,
        super::connections::list,
        super::connections::get,
        super::connections::delete,
        super::connections::token,
        super::connections::authorize,
        super::connections::authorize_by_post,
        super::connections::revoke,
        super::vault::store_credentials,
        super::vault::list_credentials,
        super::vault::delete_credentials,
        super::vault::read_credentials,
    ),
    modifiers(&AdminAuthentication, &Conventions)
)]
pub struct AccountDoc;

/// The admin API's two ways to authenticate, for "Authorize" in the UI.
struct AdminAuthentication;

impl utoipa::Modify for AdminAuthentication {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components
            .add_security_scheme("token", SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("TOKEN"))));
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Basic).build()),
        );
    }
}

/// What every operation of every document may also answer, and what every
/// request schema means, said once here rather than on each handler:
/// a malformed parameter or query (control characters included) is a 400;
/// an outage a 503 (`/integration/v1` keeps its documented 500); a body
/// that does not arrive in time a 408, a larger one a 413, one of another
/// media type a 415 (outside OAuth's own error shape); an operation that
/// takes `TOKEN` may answer 401 and 403; a required string of a request is
/// never empty.
struct Conventions;

/// Tags of the operations that speak OAuth's error shape.
const OAUTH_SHAPED_TAGS: &[&str] = &["OAuth Tokens", "Dynamic client registration", "OAuth Metadata"];

impl utoipa::Modify for Conventions {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::schema::{Schema, SchemaType, Type};
        use utoipa::openapi::{RefOr, ResponseBuilder};
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations =
                [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
            for operation in operations.into_iter().flatten() {
                // The OAuth endpoints answer every refusal in RFC 6749's
                // shape, a body of another media type included (400).
                let oauth_shaped =
                    operation.tags.iter().flatten().any(|t| OAUTH_SHAPED_TAGS.contains(&t.as_str()));
                let with_token = operation.security.iter().flatten().any(|requirement| {
                    serde_json::to_value(requirement).is_ok_and(|v| v.get("token").is_some())
                });
                let mut answers =
                    vec![("400", "A parameter or the query is malformed or holds control characters")];
                if path.starts_with("/integration/v1/") {
                    answers.push(("500", "The server failed, or its database is out of reach"));
                } else if path != "/healthz" {
                    answers.push((
                        "503",
                        "The database is out of reach for a moment; try again after Retry-After",
                    ));
                }
                if operation.request_body.is_some() {
                    answers.push(("408", "The body did not arrive in time"));
                    answers.push(("413", "The body is too large"));
                    if !oauth_shaped {
                        answers.push(("415", "The body is not of a media type this operation takes"));
                    }
                }
                if with_token {
                    answers.push(("401", "Not authenticated"));
                    answers.push(("403", "The caller's role or the token's scopes do not allow this"));
                }
                for (status, description) in answers {
                    let responses = &mut operation.responses.responses;
                    responses
                        .entry(status.to_string())
                        .or_insert_with(|| RefOr::T(ResponseBuilder::new().description(description).build()));
                }
            }
        }
        let Some(components) = openapi.components.as_mut() else { return };
        for (name, schema) in components.schemas.iter_mut() {
            let RefOr::T(Schema::Object(object)) = schema else { continue };
            if !name.ends_with("Request") {
                continue;
            }
            let required = object.required.clone();
            for (field, property) in object.properties.iter_mut() {
                if let RefOr::T(Schema::Object(property)) = property
                    && required.contains(field)
                    && property.schema_type == SchemaType::Type(Type::String)
                    && property.min_length.is_none()
                {
                    property.min_length = Some(1);
                }
            }
        }
    }
}

const API_AUTHENTICATION: &str = "/openapi/api_authentication/";
const OAUTH2: &str = "/openapi/oauth2/";
const ADMIN: &str = "/openapi/admin/";
const ACCOUNT: &str = "/openapi/account/";

pub fn routes(app: Arc<App>) -> Router<Arc<App>> {
    let ui: Router<Arc<App>> = SwaggerUi::new(format!("{API_AUTHENTICATION}ui"))
        .url(format!("{API_AUTHENTICATION}openapi.json"), ApiAuthenticationDoc::openapi())
        .into();
    let oauth2_ui: Router<Arc<App>> = SwaggerUi::new(format!("{OAUTH2}ui"))
        .url(format!("{OAUTH2}openapi.json"), OAuth2Doc::openapi())
        .into();
    let admin_ui: Router<Arc<App>> =
        SwaggerUi::new(format!("{ADMIN}ui")).url(format!("{ADMIN}openapi.json"), AdminDoc::openapi()).into();
    let account_ui: Router<Arc<App>> = SwaggerUi::new(format!("{ACCOUNT}ui"))
        .url(format!("{ACCOUNT}openapi.json"), AccountDoc::openapi())
        .into();
    Router::new()
        .route(
            API_AUTHENTICATION,
            get(|state, headers| {
                document(state, headers, API_AUTHENTICATION, ApiAuthenticationDoc::openapi())
            }),
        )
        .route(OAUTH2, get(|state, headers| document(state, headers, OAUTH2, OAuth2Doc::openapi())))
        .route(ADMIN, get(|state, headers| document(state, headers, ADMIN, AdminDoc::openapi())))
        .route(ACCOUNT, get(|state, headers| document(state, headers, ACCOUNT, AccountDoc::openapi())))
        .merge(
            ui.merge(oauth2_ui)
                .merge(admin_ui)
                .merge(account_ui)
                .route_layer(middleware::from_fn_with_state(app, swagger_enabled)),
        )
}

/// The document at `base` as JSON; a browser asking for HTML goes to the UI
/// instead while it is enabled.
async fn document(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    base: &str,
    doc: utoipa::openapi::OpenApi,
) -> Response {
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    if wants_html && swagger_is_enabled(&app).await {
        return Redirect::to(&format!("{base}ui/")).into_response();
    }
    axum::Json(doc).into_response()
}

async fn swagger_is_enabled(app: &App) -> bool {
    app.setting(ENABLE_SWAGGER).await.map(|s| s.as_bool()).unwrap_or(false)
}

async fn swagger_enabled(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    if swagger_is_enabled(&app).await {
        // Like every other page: never framed (a framed "Try it out" could be
        // clickjacked into minting tokens), never sniffed.
        let mut response = next.run(request).await;
        let headers = response.headers_mut();
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("frame-ancestors 'none'; base-uri 'none'; object-src 'none'"),
        );
        headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
        response
    } else {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "the Swagger UI is off; a server admin turns it on with alation.feature_flags.enable_swagger",
        )
        .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Routes of the router that serve no JSON API of keyward's own: pages
    /// and their forms, the answers of other servers (the gateway, the
    /// connections' proxy), metrics as text, and a route of a unit test.
    const NOT_JSON_APIS: &[&str] = &[
        "/",
        "/metrics",
        "/static/copy.js",
        "/admin/{}/",
        "/oauth/v1/authorize/",
        "/oauth/v1/login/",
        "/login/sso/{}/",
        "/login/sso/{}/callback/",
        "/oauth/v1/connections/callback/",
        "/oauth/v1/connections/start/",
        "/r/{}",
        "/r/{}/",
        "/r/{}/{}",
        "/api/v2/connections/{}/proxy/{}",
        "/boom",
        // Documented as the gateway's resources' own: /…/r/{name}.
        "/.well-known/oauth-protected-resource/{}",
    ];

    /// `/a/{id}/` as `/a/{}/`: parameter names may differ.
    fn shape(path: &str) -> String {
        let mut out = String::new();
        let mut in_param = false;
        for c in path.chars() {
            match c {
                '{' => {
                    in_param = true;
                    out.push_str("{}");
                }
                '}' => in_param = false,
                _ if !in_param => out.push(c),
                _ => {}
            }
        }
        out
    }

    /// Every route the router serves (read from its source, so a new route
    /// cannot be forgotten) with every method is in one of the documents,
    /// unless it serves no JSON API.
    #[test]
    fn every_json_route_is_in_a_document() {
        let mut documented = std::collections::BTreeSet::new();
        for doc in [
            ApiAuthenticationDoc::openapi(),
            OAuth2Doc::openapi(),
            AdminDoc::openapi(),
            AccountDoc::openapi(),
        ] {
            for (path, item) in doc.paths.paths {
                let methods = [
                    ("get", item.get.is_some()),
                    ("post", item.post.is_some()),
                    ("put", item.put.is_some()),
                    ("patch", item.patch.is_some()),
                    ("delete", item.delete.is_some()),
                ];
                for (method, present) in methods {
                    if present {
                        documented.insert((shape(&path), method));
                    }
                }
            }
        }
        let constants = [
            (
                "dynamic_registration::REGISTRATION_PATH",
                super::super::dynamic_registration::REGISTRATION_PATH,
            ),
            ("account::ACCOUNT_PATH", super::super::account::ACCOUNT_PATH),
            ("console::CONSOLE_PATH", super::super::console::CONSOLE_PATH),
            ("console::PASSWORD_PATH", super::super::console::PASSWORD_PATH),
        ];
        let pages = [
            super::super::account::ACCOUNT_PATH,
            super::super::console::CONSOLE_PATH,
            super::super::console::PASSWORD_PATH,
        ];
        let mut missing = Vec::new();
        let mut seen = 0;
        for route in include_str!("mod.rs").split(".route(").skip(1) {
            let route = route.split(".route(").next().unwrap_or("").trim_start();
            let path = match route.strip_prefix('"') {
                Some(rest) => rest.split('"').next().unwrap_or("").to_string(),
                None => {
                    let name: String =
                        route.chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':').collect();
                    match constants.iter().find(|(n, _)| *n == name) {
                        Some((_, value)) => value.to_string(),
                        None => panic!("a route at a constant this test does not know: {name}"),
                    }
                }
            };
            if NOT_JSON_APIS.contains(&shape(&path).as_str()) || pages.contains(&path.as_str()) {
                continue;
            }
            seen += 1;
            let head = &route[..route.len().min(300)];
            for method in ["get", "post", "put", "patch", "delete"] {
                let calls = [
                    format!("({method}("),
                    format!(" {method}("),
                    format!(".{method}("),
                    format!("::{method}("),
                ];
                if calls.iter().any(|c| head.contains(c.as_str()))
                    && !documented.contains(&(shape(&path), method))
                {
                    missing.push(format!("{method} {path}"));
                }
            }
        }
        assert!(seen >= 40, "the routes were not found in mod.rs ({seen})");
        assert!(missing.is_empty(), "JSON routes in no OpenAPI document: {missing:?}");
    }
}
