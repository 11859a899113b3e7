//! The browser side of delegated OAuth: `/oauth/v1/authorize/` (GET shows
//! login or consent; POST takes the consent), `/oauth/v1/login/`. Pages are
//! server-rendered (askama escapes everything), carry CSRF tokens, cannot be
//! framed, and are never cached.

use crate::app::{App, AuthorizationRequest, AuthorizeError, AuthorizeParams};
use crate::domain::User;
use crate::domain::registration::Registration;
use askama::Template;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;
use std::sync::Arc;

pub const SESSION_COOKIE: &str = "kw_session";
const LOGIN_COOKIE: &str = "kw_login";
const AUTHORIZE_PATH: &str = "/oauth/v1/authorize/";
use crate::app::START_PATH;

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    client_name: &'a str,
    /// "Sign in with <name>" links: (href, name).
    providers: Vec<(String, String)>,
    csrf: String,
    return_to: String,
    error: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "consent.html")]
struct ConsentPage<'a> {
    client_name: &'a str,
    username: &'a str,
    redirect_host: String,
    scopes: Vec<(String, String)>,
    csrf: String,
    request: &'a str,
    /// The client registered itself (RFC 7591): its name is its own claim.
    self_registered: bool,
    /// Access goes to a program on this very computer.
    loopback: bool,
    /// The host of the client's metadata document (URL client ids).
    document_host: Option<String>,
    /// Where the access may be used (resource indicators), if not keyward.
    audiences: &'a [String],
}

#[derive(Template)]
#[template(path = "connect.html")]
struct ConnectPage<'a> {
    agent: &'a str,
    self_registered: bool,
    provider: &'a str,
    username: &'a str,
    csrf: String,
    state: &'a str,
}

#[derive(Template)]
#[template(path = "connected.html")]
struct ConnectedPage<'a> {
    name: &'a str,
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    message: &'a str,
    /// Shown on the way from an application (authorize, sign-in for it):
    /// the person is told that the application learned nothing.
    in_app_flow: bool,
}

/// The value of cookie `name`.
pub(super) fn cookie<'a>(app: &App, headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let name = cookie_name(app, name);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A cookie's name on the wire: under an https issuer with the `__Host-`
/// prefix, which browsers take only from this very host (`Secure`,
/// `Path=/`, no `Domain`), so that a sibling subdomain cannot plant one of
/// its choosing (login CSRF by cookie tossing).
fn cookie_name<'a>(app: &App, name: &'a str) -> std::borrow::Cow<'a, str> {
    if over_https(app) { format!("__Host-{name}").into() } else { name.into() }
}

/// Whether browsers reach keyward over https (its issuer says so).
fn over_https(app: &App) -> bool {
    app.issuer.starts_with("https://")
}

/// The origin of a URI (`scheme://host[:port]`), for the CSP.
fn origin(uri: &str) -> String {
    url::Url::parse(uri).map(|u| u.origin().ascii_serialization()).unwrap_or_default()
}

/// A page: HTML with the headers every page that grants access needs.
pub(super) fn page(status: StatusCode, html: String, form_target: Option<&str>) -> Response {
    let form_action = match form_target.map(origin) {
        Some(o) if !o.is_empty() && o != "null" => format!("'self' {o}"),
        _ => "'self'".to_string(),
    };
    let csp = format!(
        "default-src 'none'; style-src 'unsafe-inline'; form-action {form_action}; frame-ancestors 'none'; \
         base-uri 'none'"
    );
    let mut response = (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response();
    let headers = response.headers_mut();
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    if let Ok(v) = HeaderValue::from_str(&csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    response
}

/// A 303 to `location`, or an error page when it cannot be a header value
/// (axum's `Redirect::to` panics on one).
pub(super) fn see_other(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(v) => (StatusCode::SEE_OTHER, [(header::LOCATION, v)]).into_response(),
        Err(_) => error_page(StatusCode::BAD_REQUEST, "the address to continue at is not valid"),
    }
}

pub(super) fn error_page(status: StatusCode, message: &str) -> Response {
    let html = ErrorPage { message, in_app_flow: true }.render().unwrap_or_else(|_| "Cannot continue".into());
    page(status, html, None)
}

/// An error page of keyward's own pages (the console, single sign-on),
/// which leads back to keyward's start page.
pub(super) fn own_error_page(status: StatusCode, message: &str) -> Response {
    let html =
        ErrorPage { message, in_app_flow: false }.render().unwrap_or_else(|_| "Cannot continue".into());
    page(status, html, None)
}

pub(super) fn set_cookie(app: &App, name: &str, value: &str, max_age: i64) -> HeaderValue {
    let secure = if over_https(app) { "; Secure" } else { "" };
    let name = cookie_name(app, name);
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    ))
    .expect("cookie values are base64url")
}

/// An authorization request's query: each parameter at most once (but
/// `resource`, which RFC 8707 lets repeat).
fn parse_request(query: &str) -> Result<AuthorizeParams, String> {
    let pairs =
        super::extract::form_pairs(query.as_bytes()).map_err(|refusal| format!("the query {refusal}"))?;
    let mut p = AuthorizeParams::default();
    for (key, value) in pairs {
        let value = value.into_owned();
        let slot = match key.as_ref() {
            "response_type" => &mut p.response_type,
            "client_id" => &mut p.client_id,
            "redirect_uri" => &mut p.redirect_uri,
            "state" => &mut p.state,
            "scope" => &mut p.scope,
            "code_challenge" => &mut p.code_challenge,
            "code_challenge_method" => &mut p.code_challenge_method,
            "resource" => {
                p.resource.push(value);
                continue;
            }
            _ => continue,
        };
        if slot.is_some() {
            return Err(format!("the parameter {key} is given more than once"));
        }
        *slot = Some(value);
    }
    Ok(p)
}

async fn validated(app: &App, query: &str) -> Result<AuthorizationRequest, Response> {
    if query.len() > 8 * 1024 {
        return Err(error_page(StatusCode::BAD_REQUEST, "the request is too long"));
    }
    let params = parse_request(query).map_err(|m| error_page(StatusCode::BAD_REQUEST, &m))?;
    app.validate_authorization_request(&params).await.map_err(|e| match e {
        AuthorizeError::Page(message) => error_page(StatusCode::BAD_REQUEST, &message),
        AuthorizeError::Redirect(url) => see_other(&url),
        AuthorizeError::Unavailable => internal(crate::app::AppError::Unavailable),
    })
}

/// Who the session cookie signs in, if anyone; the page to show instead
/// when that cannot be told now.
pub(super) type SignInLookup<T> = Result<Option<(T, String)>, Response>;

pub(super) async fn signed_in(app: &App, headers: &HeaderMap) -> SignInLookup<User> {
    Ok(signed_in_session(app, headers).await?.map(|(s, session)| (s.user, session)))
}

/// The session cookie's sign-in, with what it still asks of its user. A
/// store that cannot be read is a page saying to try again, never the
/// login page (which would say the session ended).
pub(super) async fn signed_in_session(app: &App, headers: &HeaderMap) -> SignInLookup<crate::app::SignedIn> {
    let Some(session) = cookie(app, headers, SESSION_COOKIE) else { return Ok(None) };
    match app.session_user(session).await {
        Ok(signed_in) => Ok(signed_in.map(|s| (s, session.to_string()))),
        Err(e) => {
            tracing::error!(error = %e, "a session could not be read");
            Err(try_again(own_error_page(StatusCode::SERVICE_UNAVAILABLE, crate::domain::oauth::UNAVAILABLE)))
        }
    }
}

/// Where a sign-in continues: an authorization request of this server, or
/// the start of a connection's authorization. Nothing else (no open redirect).
pub(super) enum Continuation<'a> {
    Authorize(&'a str),
    /// `/`, or a page of the admin console.
    Console,
    /// The account page.
    Account,
    /// With the link's `state`.
    ConnectionStart(String),
}

pub(super) fn continuation(return_to: &str) -> Option<Continuation<'_>> {
    if return_to == super::account::ACCOUNT_PATH {
        return Some(Continuation::Account);
    }
    if return_to == "/" || super::console::is_console_path(return_to) {
        return Some(Continuation::Console);
    }
    if let Some(query) = return_to.strip_prefix(AUTHORIZE_PATH).and_then(|r| r.strip_prefix('?')) {
        return Some(Continuation::Authorize(query));
    }
    let query = return_to.strip_prefix(START_PATH)?.strip_prefix('?')?;
    start_state(query).map(Continuation::ConnectionStart)
}

/// The `state` of a start link's query.
fn start_state(query: &str) -> Option<String> {
    super::extract::form_pairs(query.as_bytes())
        .ok()?
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .filter(|s| !s.is_empty() && s.len() <= 100)
}

/// The sign-in page before a connection's start link: its form may lead
/// (through the start link) to the provider.
async fn connection_login_page(app: &App, state: &str, headers: &HeaderMap, error: Option<&str>) -> Response {
    let return_to = format!(
        "{START_PATH}?{}",
        form_urlencoded::Serializer::new(String::new()).append_pair("state", state).finish()
    );
    let provider = app.connection_provider_origin(state).await;
    login_page(app, CONNECTION_SIGN_IN, provider.as_deref(), return_to, headers, error).await
}

/// The sign-in page, continuing at `return_to`; `for_whom` names what the
/// user signs in for, `form_target` is where the page may later post.
pub(super) async fn login_page(
    app: &App,
    for_whom: &str,
    form_target: Option<&str>,
    return_to: String,
    headers: &HeaderMap,
    error: Option<&str>,
) -> Response {
    let (login_cookie, fresh) = match cookie(app, headers, LOGIN_COOKIE) {
        Some(c) if c.len() <= 64 && !c.is_empty() => (c.to_string(), false),
        _ => (crate::crypto::random_string::<24>(), true),
    };
    let continue_at =
        form_urlencoded::Serializer::new(String::new()).append_pair("return_to", &return_to).finish();
    let providers = app
        .sign_in_providers()
        .await
        .into_iter()
        .map(|(id, name)| (format!("/login/sso/{id}/?{continue_at}"), name))
        .collect();
    let csrf = app.csrf_token("login", &login_cookie);
    let html =
        LoginPage { client_name: for_whom, providers, csrf, return_to, error }.render().unwrap_or_default();
    let status = if error.is_some() { StatusCode::UNAUTHORIZED } else { StatusCode::OK };
    let mut response = page(status, html, form_target);
    if fresh {
        response.headers_mut().append(header::SET_COOKIE, set_cookie(app, LOGIN_COOKIE, &login_cookie, 3600));
    }
    response
}

async fn authorize_login_page(
    app: &App,
    request: &AuthorizationRequest,
    query: &str,
    headers: &HeaderMap,
    error: Option<&str>,
) -> Response {
    let return_to = format!("{AUTHORIZE_PATH}?{query}");
    login_page(app, &request.client.name, Some(&request.redirect_uri), return_to, headers, error).await
}

/// What a person signing in for a connection is told they sign in to.
const CONNECTION_SIGN_IN: &str = "keyward, to connect an account";

/// GET: validate, then sign in, then consent (or straight back to the
/// client when this consent is remembered).
pub async fn authorize(
    State(app): State<Arc<App>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let query = query.unwrap_or_default();
    let request = match validated(&app, &query).await {
        Ok(r) => r,
        Err(response) => return response,
    };
    let signed_in = match signed_in(&app, &headers).await {
        Ok(signed_in) => signed_in,
        Err(page) => return page,
    };
    let Some((user, session)) = signed_in else {
        return authorize_login_page(&app, &request, &query, &headers, None).await;
    };
    match app.has_consent(&user, &request).await {
        Ok(true) => match app.approve(&user, &request, false).await {
            Ok(url) => see_other(&url),
            Err(e) => internal(e),
        },
        Ok(false) => {
            let scopes = match app.describe_scopes(&request.scope, &request.resources).await {
                Ok(scopes) => scopes,
                Err(e) => return internal(e),
            };
            let html = ConsentPage {
                client_name: &request.client.name,
                username: &user.username,
                redirect_host: url::Url::parse(&request.redirect_uri)
                    .map(|u| match u.host_str() {
                        Some(host) => host.to_owned(),
                        None => format!("{}:", u.scheme()),
                    })
                    .unwrap_or_default(),
                self_registered: request.client.registration == Registration::Dynamic,
                document_host: (request.client.registration == Registration::MetadataDocument)
                    .then(|| url::Url::parse(&request.client.client_id).ok()?.host_str().map(str::to_owned))
                    .flatten(),
                audiences: &request.resources,
                loopback: url::Url::parse(&request.redirect_uri).is_ok_and(|u| {
                    u.scheme() == "http" && matches!(u.host_str(), Some("127.0.0.1" | "[::1]" | "localhost"))
                }),
                scopes,
                // Bound to this very request: the form cannot be replayed
                // with another one (other scopes) under the same token.
                csrf: app.csrf_token(&consent_purpose(&query, &request), &session),
                request: &query,
            }
            .render()
            .unwrap_or_default();
            page(StatusCode::OK, html, Some(&request.redirect_uri))
        }
        Err(e) => internal(e),
    }
}

/// `page` (a 503's) with the `Retry-After` of an outage.
fn try_again(page: Response) -> Response {
    super::error::retry_after(page, crate::domain::oauth::UNAVAILABLE_RETRY_AFTER)
}

pub(super) fn internal(e: crate::app::AppError) -> Response {
    if let crate::app::AppError::TooManyRequests { retry_after } = e {
        return error_page(
            StatusCode::TOO_MANY_REQUESTS,
            &format!("this app has too many authorizations under way; try again in {retry_after} seconds"),
        );
    }
    if matches!(e, crate::app::AppError::Unavailable) {
        return try_again(error_page(StatusCode::SERVICE_UNAVAILABLE, crate::domain::oauth::UNAVAILABLE));
    }
    tracing::error!(error = %e, "authorization failed");
    error_page(StatusCode::INTERNAL_SERVER_ERROR, "something went wrong; try again")
}

/// A page's form: form-encoded (so that the edge screen has read it), each
/// field at most once.
pub(super) fn form_fields(
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<std::collections::HashMap<String, String>, Response> {
    let is_form = super::extract::has_media_type(headers, "application/x-www-form-urlencoded");
    if !is_form {
        return Err(error_page(StatusCode::UNSUPPORTED_MEDIA_TYPE, "the form must be sent as a form"));
    }
    super::extract::unique_fields(body)
        .map_err(|refusal| error_page(StatusCode::BAD_REQUEST, &format!("the form {refusal}")))
}

/// A page's form, as a handler's last argument; refused with an error
/// page when it is not a form or repeats a field.
pub(super) struct PageForm(pub std::collections::HashMap<String, String>);

impl PageForm {
    /// A field's value; empty when the form has none.
    pub(super) fn field(&self, name: &str) -> &str {
        self.0.get(name).map(String::as_str).unwrap_or("")
    }
}

impl<S: Send + Sync> axum::extract::FromRequest<S> for PageForm {
    type Rejection = Response;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, Response> {
        let headers = request.headers().clone();
        let body = Bytes::from_request(request, state).await.map_err(IntoResponse::into_response)?;
        form_fields(&headers, &body).map(PageForm)
    }
}

/// POST `/oauth/v1/login/`.
pub async fn login(
    State(app): State<Arc<App>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: PageForm,
) -> Response {
    let return_to = form.field("return_to");
    // Checked before the password, so that a sign-in never ends in an
    // answer that cannot be sent.
    let Some(next) = continuation(return_to).filter(|_| HeaderValue::from_str(return_to).is_ok()) else {
        return error_page(StatusCode::BAD_REQUEST, "the sign-in form is not valid");
    };
    let request = match next {
        Continuation::Authorize(query) => match validated(&app, query).await {
            Ok(r) => Some((r, query)),
            Err(response) => return response,
        },
        Continuation::ConnectionStart(_) | Continuation::Account | Continuation::Console => None,
    };
    let again = async |error: &str| match (&request, &next) {
        (Some((request, query)), _) => {
            authorize_login_page(&app, request, query, &headers, Some(error)).await
        }
        (None, Continuation::ConnectionStart(state)) => {
            connection_login_page(&app, state, &headers, Some(error)).await
        }
        (None, Continuation::Account) => {
            super::account::account_login_page(&app, &headers, Some(error)).await
        }
        (None, Continuation::Console) => {
            login_page(&app, "keyward", None, return_to.to_string(), &headers, Some(error)).await
        }
        (None, Continuation::Authorize(_)) => error_page(StatusCode::BAD_REQUEST, "start again"),
    };
    let csrf_ok = cookie(&app, &headers, LOGIN_COOKIE)
        .is_some_and(|c| app.csrf_matches("login", c, form.field("csrf")));
    if !csrf_ok {
        return error_page(
            StatusCode::FORBIDDEN,
            "the sign-in form expired or came from elsewhere; start again",
        );
    }
    match app.start_session(form.field("username"), form.field("password"), addr.ip()).await {
        Ok(sign_in) => signed_in_at(&app, &sign_in, return_to),
        Err(crate::app::AppError::TooManyRequests { retry_after }) => {
            let mut response =
                again(&format!("Too many failed attempts. Try again in {retry_after} seconds.")).await;
            *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
            response
        }
        Err(crate::app::AppError::Unauthorized(_)) => again("Wrong username or password.").await,
        Err(e) => internal(e),
    }
}

/// A 303 to `location` that sets the session cookie of `sign_in`.
pub(super) fn signed_in_at(app: &App, sign_in: &crate::app::SignIn, location: &str) -> Response {
    let mut response = see_other(location);
    let cookie = set_cookie(app, SESSION_COOKIE, &sign_in.token, sign_in.max_age_seconds);
    response.headers_mut().append(header::SET_COOKIE, cookie);
    response
}

/// POST `/oauth/v1/authorize/`: the consent form.
pub async fn consent(State(app): State<Arc<App>>, headers: HeaderMap, form: PageForm) -> Response {
    let request = match validated(&app, form.field("request")).await {
        Ok(r) => r,
        Err(response) => return response,
    };
    let signed_in = match signed_in(&app, &headers).await {
        Ok(signed_in) => signed_in,
        Err(page) => return page,
    };
    let Some((user, session)) = signed_in else {
        return error_page(StatusCode::UNAUTHORIZED, "you are not signed in (any more); start again");
    };
    if !app.csrf_matches(&consent_purpose(form.field("request"), &request), &session, form.field("csrf")) {
        return error_page(
            StatusCode::FORBIDDEN,
            "the consent form expired, came from elsewhere, or the app changed since it was shown; start again",
        );
    }
    match form.field("decision") {
        "approve" => match app.approve(&user, &request, true).await {
            Ok(url) => see_other(&url),
            Err(e) => internal(e),
        },
        "deny" => match app.deny(&request) {
            Some(url) => see_other(&url),
            None => error_page(StatusCode::BAD_REQUEST, "the redirect_uri is not a valid URL"),
        },
        _ => error_page(StatusCode::BAD_REQUEST, "choose Allow or Deny"),
    }
}

/// What a consent form's anti-forgery token is bound to: the request and
/// what the page showed of it. Scopes and the name can also come from the
/// client (a self-registered client's registration, a metadata document),
/// which may change between showing the page and approving it.
fn consent_purpose(query: &str, request: &AuthorizationRequest) -> String {
    format!("consent:{query}\n{}\n{}", request.scope, request.client.name)
}

/// GET `/oauth/v1/connections/callback/`: a provider sends the user back
/// after authorizing a connection.
pub async fn connection_callback(
    State(app): State<Arc<App>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let query = query.unwrap_or_default();
    // An answer that is not UTF-8, or names a field twice, is no answer
    // to act on.
    let params = match super::extract::unique_fields(query.as_bytes()) {
        Ok(params) => params,
        Err(refusal) => {
            return error_page(StatusCode::BAD_REQUEST, &format!("the provider's answer {refusal}"));
        }
    };
    let Some(state) = params.get("state") else {
        return error_page(StatusCode::BAD_REQUEST, "the provider's answer has no state");
    };
    let user = match signed_in(&app, &headers).await {
        Ok(signed_in) => signed_in.map(|(user, _)| user),
        Err(page) => return page,
    };
    match app
        .complete_connection_authorization(
            state,
            params.get("code").map(String::as_str),
            params.get("error").map(String::as_str),
            cookie(&app, &headers, CONNECT_COOKIE),
            user.as_ref(),
        )
        .await
    {
        Ok(connection) => {
            let html = ConnectedPage { name: &connection.name }.render().unwrap_or_default();
            page(StatusCode::OK, html, None)
        }
        Err(crate::app::AppError::Internal(e)) => internal(crate::app::AppError::Internal(e)),
        Err(e) => {
            let status = match e {
                crate::app::AppError::Upstream(_) => StatusCode::BAD_GATEWAY,
                crate::app::AppError::Conflict(_) => StatusCode::CONFLICT,
                crate::app::AppError::Forbidden(_) => StatusCode::FORBIDDEN,
                _ => StatusCode::BAD_REQUEST,
            };
            error_page(status, &e.to_string())
        }
    }
}

/// The cookie that binds a connection's authorization to one browser.
const CONNECT_COOKIE: &str = "kw_connect";

/// GET `/oauth/v1/connections/start/?state=…`: the owner's browser sets
/// out to the provider from here, signed in to keyward (the sign-in page
/// comes first if it is not) and carrying a cookie that only it has.
pub async fn connection_start(
    State(app): State<Arc<App>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let query = query.unwrap_or_default();
    let Some(state) = start_state(&query) else {
        return error_page(StatusCode::BAD_REQUEST, "the link has no state");
    };
    let signed_in = match signed_in(&app, &headers).await {
        Ok(signed_in) => signed_in,
        Err(page) => return page,
    };
    let Some((user, session)) = signed_in else {
        return connection_login_page(&app, &state, &headers, None).await;
    };
    match app.connect_request(&state, &user).await {
        // The owner started it: on to the provider.
        Ok(None) => to_provider(&app, &state, &user).await,
        // An agent asked for it: the owner confirms first, seeing who asked.
        Ok(Some(request)) => {
            let html = ConnectPage {
                agent: &request.agent,
                self_registered: request.self_registered,
                provider: &request.provider,
                username: &user.username,
                csrf: app.csrf_token(&connect_purpose(&state), &session),
                state: &state,
            }
            .render()
            .unwrap_or_default();
            page(StatusCode::OK, html, Some(&request.provider_origin))
        }
        Err(e) => start_refused(e),
    }
}

/// POST `/oauth/v1/connections/start/`: the owner's answer to an agent's
/// connect link.
pub async fn connection_start_confirmed(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    form: PageForm,
) -> Response {
    let state = form.field("state").to_string();
    let signed_in = match signed_in(&app, &headers).await {
        Ok(signed_in) => signed_in,
        Err(page) => return page,
    };
    let Some((user, session)) = signed_in else {
        return error_page(StatusCode::UNAUTHORIZED, "you are not signed in (any more); open the link again");
    };
    if !app.csrf_matches(&connect_purpose(&state), &session, form.field("csrf")) {
        return error_page(
            StatusCode::FORBIDDEN,
            "the form expired or came from elsewhere; open the link again",
        );
    }
    if let Err(e) = app.connect_request(&state, &user).await {
        return start_refused(e);
    }
    match form.field("decision") {
        "continue" => to_provider(&app, &state, &user).await,
        "cancel" => match app.decline_connection_authorization(&state, &user).await {
            Ok(true) => error_page(StatusCode::OK, "Nothing was connected. You can close this window."),
            Ok(false) => error_page(
                StatusCode::BAD_REQUEST,
                "this link was already followed or has expired; revoke the connection on your account page if \
                 you do not want it",
            ),
            Err(e) => internal(e),
        },
        _ => error_page(StatusCode::BAD_REQUEST, "choose Continue or Cancel"),
    }
}

/// What a connect form's anti-forgery token is bound to: its link.
fn connect_purpose(state: &str) -> String {
    format!("connect:{state}")
}

/// Binds the authorization to this browser and sends it to the provider.
async fn to_provider(app: &App, state: &str, user: &User) -> Response {
    match app.bind_connection_browser(state, user).await {
        Ok((provider_url, cookie)) => {
            let mut response = see_other(&provider_url);
            response.headers_mut().append(header::SET_COOKIE, set_cookie(app, CONNECT_COOKIE, &cookie, 600));
            response
        }
        Err(e) => start_refused(e),
    }
}

fn start_refused(e: crate::app::AppError) -> Response {
    match e {
        crate::app::AppError::Invalid(m) => error_page(StatusCode::BAD_REQUEST, &m),
        crate::app::AppError::Forbidden(m) => error_page(StatusCode::FORBIDDEN, &m),
        e => internal(e),
    }
}
