//! `/account/auth` (SPEC §1.3, "Account Settings > Authentication"): a
//! signed-in user's refresh tokens — create (shown once, with a copy
//! button), list with status, expiry and last use, revoke — and API access
//! tokens made from them, by the same rules as `/integration/v1`. Users who
//! sign in through SSO have no password: this page is how they get tokens.

use super::authorize::{
    PageForm, SESSION_COOKIE, error_page, internal, login_page, page, see_other, set_cookie, signed_in,
    signed_in_session,
};
use crate::app::{App, AppError};
use crate::domain::api_token::TokenStatus;
use crate::domain::{Caller, User};
use crate::domain::{from_micros, now, to_micros};
use askama::Template;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;
use std::sync::Arc;

pub const ACCOUNT_PATH: &str = "/account/auth";

/// One row of the refresh-token table.
struct TokenRow {
    id: i64,
    name: String,
    status: &'static str,
    active: bool,
    expires: String,
    last_used: String,
}

/// A secret shown this once.
struct Shown {
    what: &'static str,
    value: String,
}

/// One remembered consent: an app the user allowed.
struct ConsentRow {
    client_id: String,
    scope: String,
    since: String,
}

/// Stored warehouse credentials (never the password).
struct CredentialRow {
    dp_id: String,
    username: String,
    updated: String,
}

/// One of the user's sign-ins.
struct SignInRow {
    id: String,
    method: String,
    addr: String,
    since: String,
    last_seen: String,
    current: bool,
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage<'a> {
    username: &'a str,
    tokens: Vec<TokenRow>,
    consents: Vec<ConsentRow>,
    connections: Vec<crate::app::ConnectionView>,
    credentials: Vec<CredentialRow>,
    data_products: Vec<crate::domain::vault::DataProduct>,
    sign_ins: Vec<SignInRow>,
    has_password: bool,
    shown: Option<Shown>,
    message: Option<String>,
    /// A connection's authorization link to follow (a link, not a form's
    /// redirect: the page's `form-action` is keyward alone).
    authorize_link: Option<String>,
    csrf: String,
}

fn day(us: i64) -> String {
    let t = from_micros(us);
    format!("{:04}-{:02}-{:02} {:02}:{:02} UTC", t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute())
}

/// The sign-in page that continues at the account page.
pub(super) async fn account_login_page(app: &App, headers: &HeaderMap, error: Option<&str>) -> Response {
    login_page(app, "your account", None, ACCOUNT_PATH.to_string(), headers, error).await
}

async fn render(
    app: &App,
    user: &User,
    session: &str,
    shown: Option<Shown>,
    message: Option<String>,
) -> Response {
    render_with_link(app, user, session, shown, message, None).await
}

async fn render_with_link(
    app: &App,
    user: &User,
    session: &str,
    shown: Option<Shown>,
    message: Option<String>,
    authorize_link: Option<String>,
) -> Response {
    let caller = Caller::signed_in(user);
    let (records, consents, connections, credentials, data_products, sign_ins) = match tokio::try_join!(
        app.refresh_tokens_of(user.id),
        app.consents(user.id),
        app.connections(&caller),
        app.credentials_of(&caller),
        app.data_products(),
        app.sign_ins(user.id, session),
    ) {
        Ok(all) => all,
        Err(e) => return internal(e),
    };
    let credentials = credentials
        .into_iter()
        .map(|c| CredentialRow {
            dp_id: c.dp_id,
            username: c.username,
            updated: day(to_micros(c.updated_at)),
        })
        .collect();
    let consents = consents
        .into_iter()
        .map(|(client_id, scope, at)| ConsentRow { client_id, scope, since: day(at) })
        .collect();
    let at = to_micros(now());
    let tokens = records
        .into_iter()
        .map(|r| {
            let status = TokenStatus::of(r.revoked_at, r.expires_at, at);
            TokenRow {
                id: r.id,
                name: r.name,
                status: status.as_str(),
                active: status == TokenStatus::Active,
                expires: day(r.expires_at),
                last_used: r.last_used_at.map(day).unwrap_or_else(|| "never".into()),
            }
        })
        .collect();
    let sign_ins = sign_ins
        .into_iter()
        .map(|(s, current)| SignInRow {
            id: s.id_hash,
            method: s.method,
            addr: s.client_addr.unwrap_or_default(),
            since: day(s.created_at),
            last_seen: day(s.last_seen_at),
            current,
        })
        .collect();
    let html = AccountPage {
        sign_ins,
        has_password: user.auth_source == crate::domain::AuthSource::Password,
        username: &user.username,
        tokens,
        consents,
        connections,
        credentials,
        data_products,
        shown,
        message,
        authorize_link,
        csrf: app.csrf_token("account", session),
    }
    .render()
    .unwrap_or_default();
    scripted_page(StatusCode::OK, html)
}

/// A page that runs keyward's own scripts (the copy button), and nothing else.
pub(super) fn scripted_page(status: StatusCode, html: String) -> Response {
    let mut response = page(status, html, None);
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    response
}

/// GET `/account/auth`.
pub async fn account(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    match signed_in_session(&app, &headers).await {
        Err(page) => page,
        Ok(Some((s, _))) if s.must_change_password => see_other(super::console::PASSWORD_PATH),
        Ok(Some((s, session))) => render(&app, &s.user, &session, None, None).await,
        Ok(None) => account_login_page(&app, &headers, None).await,
    }
}

/// GET `/`: a browser signs in, then goes to the console (admins) or to
/// its account page (everyone else).
pub async fn home(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    match signed_in_session(&app, &headers).await {
        Err(page) => page,
        Ok(None) => login_page(&app, "keyward", None, "/".to_string(), &headers, None).await,
        Ok(Some((s, _))) if s.must_change_password => see_other(super::console::PASSWORD_PATH),
        Ok(Some((s, _))) if s.user.role.satisfies(crate::domain::Role::CatalogAdmin) => {
            see_other(super::console::CONSOLE_PATH)
        }
        Ok(Some(_)) => see_other(ACCOUNT_PATH),
    }
}

/// POST `/account/auth`: one of the page's forms.
pub async fn account_action(
    State(app): State<Arc<App>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: PageForm,
) -> Response {
    let signed_in = match signed_in(&app, &headers).await {
        Ok(signed_in) => signed_in,
        Err(page) => return page,
    };
    let Some((user, session)) = signed_in else {
        return account_login_page(&app, &headers, Some("Your session has ended; sign in again.")).await;
    };
    if !app.csrf_matches("account", &session, form.field("csrf")) {
        return error_page(StatusCode::FORBIDDEN, "the form expired or came from elsewhere; reload the page");
    }
    let id =
        || form.field("id").parse::<i64>().map_err(|_| AppError::Invalid("choose a refresh token".into()));
    let outcome = match form.field("action") {
        "create_refresh_token" => app
            .issue_refresh_token(user.id, form.field("name").trim(), Some(addr.ip()))
            .await
            .map(|(token, _)| (Some(Shown { what: "refresh token", value: token }), None)),
        "create_api_access_token" => match id() {
            Ok(id) => app
                .api_access_token_from(user.id, id)
                .await
                .map(|(token, _)| (Some(Shown { what: "API access token", value: token }), None)),
            Err(e) => Err(e),
        },
        "revoke_refresh_token" => match id() {
            Ok(id) => app
                .revoke_refresh_token(user.id, id)
                .await
                .map(|()| (None, Some("The refresh token and its API access tokens are revoked.".into()))),
            Err(e) => Err(e),
        },
        "withdraw_consent" => app.revoke_consent(user.id, form.field("client_id")).await.map(|withdrawn| {
            let message = if withdrawn == 0 {
                "You had not allowed that app: nothing to withdraw."
            } else {
                "Consent withdrawn; the app's tokens are revoked."
            };
            (None, Some(message.into()))
        }),
        "revoke_connection" => app
            .revoke_connection(&Caller::signed_in(&user), form.field("id"))
            .await
            .map(|_| (None, Some("The connection is revoked.".into()))),
        "authorize_connection" => {
            return match app.start_connection_authorization(&Caller::signed_in(&user), form.field("id")).await
            {
                Ok(url) => render_with_link(&app, &user, &session, None, None, Some(url)).await,
                Err(e) => {
                    let mut response = render(&app, &user, &session, None, Some(e.to_string())).await;
                    *response.status_mut() = StatusCode::BAD_REQUEST;
                    response
                }
            };
        }
        // Stored sealed; never shown back.
        "store_credentials" => app
            .store_credentials(
                &Caller::signed_in(&user),
                form.field("dp_id"),
                form.field("state"),
                form.field("username"),
                form.field("password"),
                false,
            )
            .await
            .map(|_| (None, Some("Warehouse credentials stored.".into()))),
        "delete_credentials" => app
            .delete_credentials(&Caller::signed_in(&user), form.field("dp_id"))
            .await
            .map(|()| (None, Some("Warehouse credentials deleted.".into()))),
        "end_sign_in" => app
            .end_sign_in(user.id, form.field("session"))
            .await
            .map(|()| (None, Some("That sign-in is ended.".into()))),
        "sign_out" => {
            if let Err(e) = app.end_session(&session).await {
                return internal(e);
            }
            let mut response = see_other(ACCOUNT_PATH);
            response.headers_mut().append(header::SET_COOKIE, set_cookie(&app, SESSION_COOKIE, "", 0));
            return response;
        }
        _ => return error_page(StatusCode::BAD_REQUEST, "unknown action"),
    };
    match outcome {
        Ok((shown, message)) => render(&app, &user, &session, shown, message).await,
        Err(
            e @ (AppError::Invalid(_)
            | AppError::NotFound(_)
            | AppError::Conflict(_)
            | AppError::TokenInactive { .. }),
        ) => {
            let mut response = render(&app, &user, &session, None, Some(e.to_string())).await;
            *response.status_mut() = StatusCode::BAD_REQUEST;
            response
        }
        Err(e) => internal(e),
    }
}

/// The copy button's script (served by keyward, so that the page's CSP can
/// stay `script-src 'self'`).
pub async fn copy_script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        COPY_JS,
    )
        .into_response()
}

const COPY_JS: &str = "document.querySelectorAll('[data-copy]').forEach(function (b) {\n\
  b.hidden = false;\n\
  b.addEventListener('click', function () {\n\
    var field = document.getElementById(b.getAttribute('data-copy'));\n\
    field.select();\n\
    (navigator.clipboard ? navigator.clipboard.writeText(field.value) : Promise.reject())\n\
      .then(function () { b.textContent = 'Copied'; }, function () { document.execCommand('copy'); b.textContent = 'Copied'; });\n\
  });\n\
});\n";
