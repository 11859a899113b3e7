//! The protected-resource gateway: any MCP server or REST API declared as a
//! resource with an upstream URL is served at `<issuer>/r/<name>/…`, behind
//! keyward's tokens. keyward answers the RFC 9728 metadata and the RFC 6750
//! challenges, checks `aud` and scopes, and passes the request on with the
//! caller's identity in headers, never with the caller's token (MCP forbids
//! token passthrough). Also the admin API of resources.

use super::auth::CallerExt;
use super::error::ApiError;
use super::extract::{ApiJson, ApiPath};
use crate::app::{App, GatewayRefusal, ResourceDeclaration};
use crate::domain::proxy::{PROXY_METHODS, proxy_target};
use crate::domain::resource::{GATEWAY_PREFIX, ProtectedResource};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::Arc;

type AppState = State<Arc<App>>;

pub const METADATA_PREFIX: &str = "/.well-known/oauth-protected-resource";

/// How long the upstream may take to start its answer.
const UPSTREAM_HEAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Request headers passed upstream besides the connection proxy's (content
/// negotiation and conditions): the MCP streamable-HTTP transport's own.
/// Never `Authorization` or cookies.
const MCP_REQUEST_HEADERS: &[&str] = &["last-event-id", "mcp-protocol-version", "mcp-session-id"];

/// Response headers passed back (the upstream's own challenges are not:
/// keyward is the one that speaks OAuth here).
const FORWARDED_RESPONSE_HEADERS: &[&str] = &[
    "cache-control",
    "content-language",
    "content-type",
    "etag",
    "last-modified",
    "location",
    "mcp-session-id",
    "retry-after",
];

/// The largest request body passed on. Bodies are streamed, never held, so
/// this bounds what an upstream must accept, not keyward's memory.
pub const GATEWAY_MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// How long a request body may take, from the request on: the upstream may
/// answer before reading it, and the caller must not hold the connection
/// (and the upstream's) for ever by trickling.
pub const GATEWAY_BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// How far a caller's body got on its way upstream (0 while it is read),
/// and a signal when it failed (too large, too slow): the request is then
/// over, whatever the upstream does.
#[derive(Default)]
struct BodyProgress {
    state: std::sync::atomic::AtomicU8,
    failed: tokio::sync::Notify,
}

impl BodyProgress {
    const ENDED: u8 = 1;
    const TOO_LARGE: u8 = 2;
    const TOO_SLOW: u8 = 3;
    /// The caller's framing was broken (a bad chunk): its fault, not the
    /// upstream's.
    const MALFORMED: u8 = 4;

    fn set(&self, state: u8) {
        self.state.store(state, std::sync::atomic::Ordering::SeqCst);
        if state != Self::ENDED {
            self.failed.notify_one();
        }
    }

    fn get(&self) -> u8 {
        self.state.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// `stream`, failing once more than `max` bytes came through or once
/// `deadline` passes; `progress` says which, or that it was read to its end.
fn capped(
    stream: impl futures_util::Stream<Item = Result<bytes::Bytes, axum::Error>> + Send + 'static,
    max: usize,
    deadline: tokio::time::Instant,
    progress: Arc<BodyProgress>,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static {
    use futures_util::StreamExt;
    futures_util::stream::unfold(Some((Box::pin(stream), 0usize)), move |state| {
        let progress = progress.clone();
        async move {
            let failed = |why: &str, state: u8| {
                progress.set(state);
                Some((Err(std::io::Error::other(why.to_string())), None))
            };
            let (mut stream, seen) = state?;
            match tokio::time::timeout_at(deadline, stream.next()).await {
                Err(_) => failed("the body took too long", BodyProgress::TOO_SLOW),
                Ok(None) => {
                    progress.set(BodyProgress::ENDED);
                    None
                }
                Ok(Some(Err(_))) => failed("the body is malformed", BodyProgress::MALFORMED),
                Ok(Some(Ok(chunk))) if seen + chunk.len() > max => {
                    failed("the body is too large", BodyProgress::TOO_LARGE)
                }
                Ok(Some(Ok(chunk))) => {
                    let seen = seen + chunk.len();
                    Some((Ok(chunk), Some((stream, seen))))
                }
            }
        }
    })
}

/// `response` marked as the connection's last: the caller's body was not
/// read to its end, and a connection left with part of a body in it cannot
/// carry another request (the server would close it without a word).
fn closing(mut response: Response) -> Response {
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// The identity headers keyward sets; a caller's own are dropped.
const IDENTITY_HEADER_PREFIX: &str = "x-keyward-";

fn metadata_url(app: &App, name: &str) -> String {
    format!("{}{METADATA_PREFIX}{GATEWAY_PREFIX}{name}", app.issuer)
}

/// `WWW-Authenticate: Bearer …` (RFC 6750 §3, RFC 9728 §5.1).
fn challenge(
    app: &App,
    resource: &ProtectedResource,
    error: Option<&str>,
    description: &str,
    scope: &[String],
) -> HeaderValue {
    let mut value = format!(r#"Bearer resource_metadata="{}""#, metadata_url(app, &resource.name));
    if !scope.is_empty() {
        value.push_str(&format!(r#", scope="{}""#, scope.join(" ")));
    }
    if let Some(error) = error {
        value.push_str(&format!(r#", error="{error}", error_description="{description}""#));
    }
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
}

fn refusal(app: &App, resource: &ProtectedResource, refused: GatewayRefusal) -> Response {
    let (status, error, description, scope) = match refused {
        GatewayRefusal::Unavailable => {
            return ApiError::from(crate::app::AppError::Unavailable).into_response();
        }
        GatewayRefusal::Unauthenticated { error, description } => {
            (StatusCode::UNAUTHORIZED, error, description.to_string(), resource.required_scopes.clone())
        }
        GatewayRefusal::InsufficientScope(missing) => (
            StatusCode::FORBIDDEN,
            Some("insufficient_scope"),
            format!("the access token lacks the scopes {}", missing.join(" ")),
            resource.required_scopes.clone(),
        ),
    };
    let body = json!({"error": error.unwrap_or("invalid_request"), "error_description": description});
    let mut response = (status, Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, challenge(app, resource, error, &description, &scope));
    response
}

fn not_found() -> Response {
    ApiError::new(StatusCode::NOT_FOUND, "no resource is served at this path").into_response()
}

/// `<resource name>` and the raw rest of a path below the gateway prefix.
fn split_gateway_path(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix(GATEWAY_PREFIX)?;
    Some(rest.split_once('/').unwrap_or((rest, "")))
}

/// The resource served at `/r/<name>`: a 404 when there is none, a 503
/// when it cannot be read now (never a 404 for that).
async fn served_resource(app: &App, name: &str) -> Result<Arc<ProtectedResource>, Response> {
    if name.is_empty() || name.len() > crate::domain::resource::NAME_MAX {
        return Err(not_found());
    }
    match app.resource_record(name).await {
        Ok(found) => found.filter(|r| r.upstream_url.is_some()).ok_or_else(not_found),
        Err(e) => Err(ApiError::from(e).into_response()),
    }
}

/// RFC 9728 metadata of a gateway resource; also answered for any path
/// below it (clients append their MCP endpoint's path).
#[utoipa::path(get, path = "/.well-known/oauth-protected-resource/r/{name}", tag = "OAuth Metadata",
    params(("name" = String, Path, description = "The resource's name")),
    responses((status = 200, description = "RFC 9728 protected resource metadata", body = Object),
        (status = 404, description = "No resource is served at this path")))]
pub async fn protected_resource_metadata(State(app): AppState, uri: axum::http::Uri) -> Response {
    let path = uri.path().strip_prefix(METADATA_PREFIX).unwrap_or("");
    let Some((name, _)) = split_gateway_path(path) else { return not_found() };
    let resource = match served_resource(&app, name).await {
        Ok(resource) => resource,
        Err(response) => return response,
    };
    let scopes: Vec<&str> = resource.scopes.iter().map(|s| s.name.as_str()).collect();
    Json(json!({
        "resource": resource.resource,
        "authorization_servers": [app.issuer],
        "scopes_supported": scopes,
        "bearer_methods_supported": ["header"],
        "resource_name": resource.display_name,
    }))
    .into_response()
}

/// How much of an unread body a refusal still reads, and for how long, so
/// that the connection can serve the caller's next request (the first
/// request of an MCP client is refused for want of a token, its retry
/// follows at once).
const UNREAD_BODY_DRAIN_BYTES: usize = 64 * 1024;
const UNREAD_BODY_DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// Any request to `<issuer>/r/<name>/…`.
pub async fn forward(State(app): AppState, request: axum::extract::Request) -> Response {
    let (parts, body) = request.into_parts();
    let mut body = Some(body);
    let progress = Arc::new(BodyProgress::default());
    let response = forward_parts(&app, &parts, &mut body, progress.clone()).await;
    match body {
        Some(unread) => answered_before_the_body(&parts.headers, unread, response).await,
        // Passed on, but not to its end when the answer came (the upstream
        // failed, or answered first): this connection ends with it.
        None if progress.get() != BodyProgress::ENDED => closing(response),
        None => response,
    }
}

/// An answer given without reading the request's body. Left unread, the
/// server would close the connection after answering without saying so,
/// and a client sending its next request on it would see it cut. So a
/// small body is read (and dropped); a larger or slower one, or one the
/// client waits to be asked for (`Expect: 100-continue`: reading it would
/// ask for it), gets `Connection: close` instead.
async fn answered_before_the_body(
    headers: &axum::http::HeaderMap,
    body: axum::body::Body,
    response: Response,
) -> Response {
    use axum::body::HttpBody as _;
    if body.is_end_stream() {
        return response;
    }
    let waits_to_be_asked = headers.get(header::EXPECT).is_some();
    if waits_to_be_asked || body.size_hint().lower() > UNREAD_BODY_DRAIN_BYTES as u64 {
        return closing(response);
    }
    let drained =
        tokio::time::timeout(UNREAD_BODY_DRAIN_TIME, axum::body::to_bytes(body, UNREAD_BODY_DRAIN_BYTES))
            .await;
    match drained {
        Ok(Ok(_)) => response,
        _ => closing(response),
    }
}

/// The answer to a gateway request; takes `body` only to pass it upstream.
async fn forward_parts(
    app: &App,
    parts: &axum::http::request::Parts,
    body: &mut Option<axum::body::Body>,
    progress: Arc<BodyProgress>,
) -> Response {
    let Some((name, rest)) = split_gateway_path(parts.uri.path()) else { return not_found() };
    let resource = match served_resource(app, name).await {
        Ok(resource) => resource,
        Err(response) => return response,
    };
    let bearer = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let (claims, caller) = match app.gateway_check(&resource, bearer).await {
        Ok(checked) => checked,
        Err(refused) => return refusal(app, &resource, refused),
    };
    if !PROXY_METHODS.contains(&parts.method.as_str()) {
        return super::error::method_not_passed_on();
    }
    let upstream_url = resource.upstream_url.as_deref().unwrap_or_default();
    let target = if rest.is_empty() {
        url::Url::parse(upstream_url)
            .map(|mut u| {
                u.set_query(parts.uri.query());
                u
            })
            .map_err(|_| "the upstream URL is not valid".to_string())
    } else {
        proxy_target(upstream_url, rest, parts.uri.query())
    };
    let target = match target {
        Ok(t) => t,
        Err(why) => return ApiError::bad_request(why).into_response(),
    };
    // A declared length over the cap is refused before the upstream is
    // called; an undeclared one is cut off there (the upstream sees the
    // request fail).
    let declared =
        parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > GATEWAY_MAX_BODY_BYTES as u64) {
        return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "the body is too large").into_response();
    }
    let deadline = tokio::time::Instant::now() + GATEWAY_BODY_TIMEOUT;
    let identity = identity_headers(&claims, &caller);
    let Ok(method) = reqwest::Method::from_bytes(parts.method.as_str().as_bytes()) else {
        return ApiError::bad_request("unsupported method").into_response();
    };
    // Every answer before this one leaves the body to `forward`.
    let Some(body) = body.take() else {
        return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the request was already passed on")
            .into_response();
    };
    let mut upstream = app.gateway_http().request(method, target);
    if axum::body::HttpBody::is_end_stream(&body) {
        // Nothing to pass on (a GET, say): the upstream gets no body, not an
        // empty chunked one, and the caller's connection stays open for its
        // next request.
        progress.set(BodyProgress::ENDED);
    } else {
        let capped = capped(body.into_data_stream(), GATEWAY_MAX_BODY_BYTES, deadline, progress.clone());
        upstream = upstream.body(reqwest::Body::wrap_stream(capped));
    }
    for (name, value) in &parts.headers {
        if crate::app::FORWARDED_REQUEST_HEADERS.contains(&name.as_str())
            || MCP_REQUEST_HEADERS.contains(&name.as_str())
        {
            upstream = upstream.header(name.as_str(), value.as_bytes());
        }
    }
    for (name, value) in identity {
        upstream = upstream.header(name, value);
    }
    // The answer's head must come within the deadline; its body (a stream of
    // events, say) may take as long as the upstream keeps it open.
    let answer = tokio::select! {
        answer = tokio::time::timeout(UPSTREAM_HEAD_TIMEOUT, upstream.send()) => answer.map(|sent| sent.map_err(Some)),
        // The body failed: the upstream's answer no longer matters.
        () = progress.failed.notified() => Ok(Err(None)),
    };
    let response = match answer {
        Ok(Ok(r)) => r,
        Err(_) => {
            return ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "the resource's server did not answer in time",
            )
            .into_response();
        }
        // The caller's body, not the upstream, failed the request.
        Ok(Err(_)) if progress.get() == BodyProgress::TOO_LARGE => {
            let message = format!("the body is larger than {GATEWAY_MAX_BODY_BYTES} bytes");
            return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, message).into_response();
        }
        Ok(Err(_)) if progress.get() == BodyProgress::MALFORMED => {
            return ApiError::bad_request("the body's framing is malformed").into_response();
        }
        Ok(Err(_)) if progress.get() == BodyProgress::TOO_SLOW => {
            let message =
                format!("the body did not arrive within {} seconds", GATEWAY_BODY_TIMEOUT.as_secs());
            return ApiError::new(StatusCode::REQUEST_TIMEOUT, message).into_response();
        }
        Ok(Err(e)) => {
            let e = e.map(|e| e.without_url().to_string()).unwrap_or_default();
            tracing::warn!(resource = %resource.name, error = %e, "gateway upstream unreachable");
            return ApiError::new(StatusCode::BAD_GATEWAY, "the resource's server could not be reached")
                .into_response();
        }
    };
    // Streamed as it comes (server-sent events of MCP's transport included).
    super::passed_on(response, FORWARDED_RESPONSE_HEADERS).unwrap_or_else(|_| {
        ApiError::new(StatusCode::BAD_GATEWAY, "the answer could not be passed on").into_response()
    })
}

/// Who the request is for, as the upstream learns it: the subject, the
/// client, the scopes, and a user's name and role.
fn identity_headers(
    claims: &crate::domain::token::AccessTokenClaims,
    caller: &crate::domain::Caller,
) -> Vec<(String, String)> {
    let mut headers = vec![
        (format!("{IDENTITY_HEADER_PREFIX}subject"), claims.sub.clone()),
        (format!("{IDENTITY_HEADER_PREFIX}client-id"), claims.client_id.clone()),
        (format!("{IDENTITY_HEADER_PREFIX}scope"), claims.scope.clone()),
        (format!("{IDENTITY_HEADER_PREFIX}role"), claims.role.as_str().to_string()),
    ];
    // The user as the token check just read them (a machine has no name).
    if let crate::domain::Principal::User { username, .. } = &caller.principal {
        headers.push((format!("{IDENTITY_HEADER_PREFIX}username"), username.clone()));
    }
    headers
}

// The admin API of resources (server_admin).

#[derive(serde::Deserialize)]
pub struct NewResource {
    name: String,
    #[serde(flatten)]
    declaration: Value,
}

fn declaration(v: Value) -> Result<ResourceDeclaration, ApiError> {
    serde_json::from_value(v).map_err(|e| ApiError::bad_request(format!("invalid resource: {e}")))
}

#[utoipa::path(post, path = "/admin/api/resources/", tag = "Protected resources", request_body(content = Object, description = "`name` and the declaration (display_name, scopes, required_scopes, upstream_url, …)"),
    security(("token" = []), ("bearer" = [])), responses((status = 201, description = "Declared", body = Object), (status = 409, description = "The name is taken")))]
pub async fn create_resource(
    State(app): AppState,
    caller: CallerExt,
    ApiJson(r): ApiJson<NewResource>,
) -> Result<(StatusCode, Json<ProtectedResource>), ApiError> {
    let d = declaration(r.declaration)?;
    Ok((StatusCode::CREATED, Json(app.put_resource(caller.actor(), &r.name, d, false).await?)))
}

#[utoipa::path(put, path = "/admin/api/resources/{name}/", tag = "Protected resources", params(("name" = String, Path)), request_body(content = Object, description = "The declaration"),
    security(("token" = []), ("bearer" = [])), responses((status = 200, description = "The resource as replaced", body = Object), (status = 404, description = "No such resource")))]
pub async fn replace_resource(
    State(app): AppState,
    caller: CallerExt,
    ApiPath(name): ApiPath<String>,
    ApiJson(d): ApiJson<ResourceDeclaration>,
) -> Result<Json<ProtectedResource>, ApiError> {
    Ok(Json(app.put_resource(caller.actor(), &name, d, true).await?))
}

#[utoipa::path(get, path = "/admin/api/resources/", tag = "Protected resources", 
    security(("token" = []), ("bearer" = [])), responses((status = 200, description = "The protected resources", body = [Object])))]
pub async fn list_resources(State(app): AppState) -> Result<Json<Vec<ProtectedResource>>, ApiError> {
    Ok(Json(app.resources().await?))
}

#[utoipa::path(get, path = "/admin/api/resources/{name}/", tag = "Protected resources", params(("name" = String, Path)),
    security(("token" = []), ("bearer" = [])), responses((status = 200, description = "The resource", body = Object), (status = 404, description = "No such resource")))]
pub async fn get_resource(
    State(app): AppState,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<ProtectedResource>, ApiError> {
    Ok(Json(app.resource(&name).await?))
}

#[utoipa::path(delete, path = "/admin/api/resources/{name}/", tag = "Protected resources", params(("name" = String, Path)),
    security(("token" = []), ("bearer" = [])), responses((status = 204, description = "Deleted"), (status = 404, description = "No such resource")))]
pub async fn delete_resource(
    State(app): AppState,
    caller: CallerExt,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    app.delete_resource(caller.actor(), &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
