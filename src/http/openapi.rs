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
    ),
    modifiers(&AdminAuthentication, &Conventions)
)]
pub struct OAuth2Doc;

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
    }
}

/// What every operation of every document may also answer, and what every
/// request schema means, said once here rather than on each handler:
/// a body of another media type is a 415 and a larger one a 413; an
/// authenticated operation may answer 400 (both `TOKEN` and
/// `Authorization` sent), 401 and 403; a required string of a request is
/// never empty.
struct Conventions;

impl utoipa::Modify for Conventions {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::schema::{Schema, SchemaType, Type};
        use utoipa::openapi::{RefOr, ResponseBuilder};
        for item in openapi.paths.paths.values_mut() {
            let operations =
                [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
            for operation in operations.into_iter().flatten() {
                let mut answers = Vec::new();
                if operation.request_body.is_some() {
                    answers.push(("413", "The body is too large"));
                    answers.push(("415", "The body is not of a media type this operation takes"));
                }
                if operation.security.as_ref().is_some_and(|s| !s.is_empty()) {
                    answers.push(("400", "Malformed request, or both TOKEN and Authorization sent"));
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

pub fn routes(app: Arc<App>) -> Router<Arc<App>> {
    let ui: Router<Arc<App>> = SwaggerUi::new(format!("{API_AUTHENTICATION}ui"))
        .url(format!("{API_AUTHENTICATION}openapi.json"), ApiAuthenticationDoc::openapi())
        .into();
    let oauth2_ui: Router<Arc<App>> = SwaggerUi::new(format!("{OAUTH2}ui"))
        .url(format!("{OAUTH2}openapi.json"), OAuth2Doc::openapi())
        .into();
    Router::new()
        .route(
            API_AUTHENTICATION,
            get(|state, headers| {
                document(state, headers, API_AUTHENTICATION, ApiAuthenticationDoc::openapi())
            }),
        )
        .route(OAUTH2, get(|state, headers| document(state, headers, OAUTH2, OAuth2Doc::openapi())))
        .merge(ui.merge(oauth2_ui).route_layer(middleware::from_fn_with_state(app, swagger_enabled)))
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
