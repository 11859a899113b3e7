//! The admin console under `/admin/` (SPEC §1.2, "Admin Settings"):
//! server-rendered pages over the same [`App`] operations as the admin
//! API, behind the same role gates, with CSRF tokens on every form.
//!
//! Every page is one [`Page`] model rendered by one template: a table of
//! things with per-row actions and a form to make a new one. A page module
//! builds its model from the app (`view`) and carries out its forms
//! (`act`); this file signs the browser in, checks its role and the form's
//! token, and renders.

mod clients;
mod identity;
mod server;

use super::authorize::{
    PageForm, SESSION_COOKIE, internal, login_page, own_error_page, see_other, set_cookie, signed_in_session,
};
use crate::app::{App, AppError};
use crate::domain::{Role, User};
use askama::Template;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

pub const CONSOLE_PATH: &str = "/admin/";
pub const PASSWORD_PATH: &str = "/account/password";

/// A console page: its path segment, its menu label, the role it needs.
struct PageSpec {
    slug: &'static str,
    label: &'static str,
    role: Role,
}

/// The menu, in the reference's words ("Admin Settings > Authentication >
/// OAuth Client Applications").
const PAGES: &[PageSpec] = &[
    PageSpec { slug: "", label: "Overview", role: Role::CatalogAdmin },
    PageSpec { slug: "users", label: "Users and roles", role: Role::ServerAdmin },
    PageSpec { slug: "oauth_clients", label: "OAuth Client Applications", role: Role::ServerAdmin },
    PageSpec { slug: "sso", label: "Single sign-on", role: Role::ServerAdmin },
    PageSpec { slug: "connectors", label: "Connectors (outbound OAuth)", role: Role::CatalogAdmin },
    PageSpec { slug: "data_products", label: "Data products", role: Role::ServerAdmin },
    PageSpec { slug: "settings", label: "Server settings", role: Role::ServerAdmin },
    PageSpec { slug: "keys", label: "Signing and master keys", role: Role::ServerAdmin },
    PageSpec { slug: "audit", label: "Audit log", role: Role::ServerAdmin },
];

/// Whether `return_to` is a console page a sign-in may continue at.
pub(super) fn is_console_path(return_to: &str) -> bool {
    return_to.strip_prefix(CONSOLE_PATH).is_some_and(|rest| {
        let slug = rest.strip_suffix('/').unwrap_or(rest);
        PAGES.iter().any(|p| p.slug == slug)
    })
}

pub(super) struct NavItem {
    href: String,
    label: &'static str,
    current: bool,
}

pub(super) struct Notice {
    text: String,
    error: bool,
    /// A link to follow next (a connection's authorization).
    href: Option<String>,
}

/// A secret shown this once.
pub(super) struct Shown {
    what: String,
    value: String,
    note: String,
}

#[derive(Default)]
pub(super) struct Section {
    heading: String,
    text: Option<String>,
    table: Option<Table>,
    links: Vec<(String, String)>,
    form: Option<Form>,
}

pub(super) struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Row>,
    empty: &'static str,
}

pub(super) struct Row {
    cells: Vec<String>,
    actions: Vec<Action>,
}

/// A button on a row: a small form posting `action` with `hidden` fields
/// (and an optional input, say a new role).
pub(super) struct Action {
    label: String,
    action: &'static str,
    hidden: Vec<(&'static str, String)>,
    input: Option<Field>,
    danger: bool,
}

pub(super) struct Form {
    method: &'static str,
    action: Option<&'static str>,
    submit: &'static str,
    fields: Vec<Field>,
}

pub(super) struct Field {
    id: String,
    name: &'static str,
    label: String,
    /// An `<input>` type, or `select`, `textarea`, `checkbox`.
    kind: &'static str,
    value: String,
    options: Vec<(String, String)>,
    min: Option<String>,
    max: Option<String>,
    hint: Option<String>,
    required: bool,
}

impl Field {
    fn new(name: &'static str, label: &str, kind: &'static str) -> Field {
        Field {
            id: format!("f-{name}"),
            name,
            label: label.to_string(),
            kind,
            value: String::new(),
            options: Vec::new(),
            min: None,
            max: None,
            hint: None,
            required: false,
        }
    }
    fn text(name: &'static str, label: &str) -> Field {
        Field::new(name, label, "text")
    }
    fn required(mut self) -> Field {
        self.required = true;
        self
    }
    fn value(mut self, v: impl Into<String>) -> Field {
        self.value = v.into();
        self
    }
    fn hint(mut self, h: impl Into<String>) -> Field {
        self.hint = Some(h.into());
        self
    }
    fn range(mut self, min: i64, max: i64) -> Field {
        self.min = Some(min.to_string());
        self.max = Some(max.to_string());
        self
    }
    fn select(name: &'static str, label: &str, options: Vec<(String, String)>) -> Field {
        Field { options, ..Field::new(name, label, "select") }
    }
    /// A per-row input: ids must be unique on the page.
    fn for_row(mut self, row: &str) -> Field {
        self.id = format!("f-{}-{}", self.name, row.replace(|c: char| !c.is_ascii_alphanumeric(), "-"));
        self
    }
}

fn role_options() -> Vec<(String, String)> {
    Role::ALL.iter().map(|r| (r.as_str().to_string(), r.as_str().to_string())).collect()
}

impl Action {
    fn new(label: &str, action: &'static str, hidden: Vec<(&'static str, String)>) -> Action {
        Action { label: label.to_string(), action, hidden, input: None, danger: false }
    }
    fn danger(mut self) -> Action {
        self.danger = true;
        self
    }
    fn with_input(mut self, input: Field) -> Action {
        self.input = Some(input);
        self
    }
}

/// What a page module produces.
#[derive(Default)]
pub(super) struct Page {
    intro: Option<String>,
    sections: Vec<Section>,
}

/// What a form did: a message, a secret to show once, or a link to follow.
pub(super) enum Done {
    Message(String),
    Secret { what: String, value: String, note: String },
    Link { text: String, href: String },
}

#[derive(Template)]
#[template(path = "console.html")]
struct ConsoleTemplate<'a> {
    title: &'static str,
    username: &'a str,
    role: Role,
    nav: Vec<NavItem>,
    intro: Option<String>,
    notice: Option<Notice>,
    shown: Option<Shown>,
    sections: Vec<Section>,
    csrf: String,
}

/// The form fields of a console request, and who sent them.
pub(super) struct Request<'a> {
    pub app: &'a App,
    pub user: &'a User,
    pub form: PageForm,
    pub query: HashMap<String, String>,
}

impl Request<'_> {
    fn field(&self, name: &str) -> &str {
        self.form.field(name)
    }
    fn checked(&self, name: &str) -> bool {
        self.field(name) == "true"
    }
    fn actor(&self) -> crate::domain::Actor {
        crate::domain::Actor::User(self.user.id)
    }
}

fn spec(slug: &str) -> Option<&'static PageSpec> {
    PAGES.iter().find(|p| p.slug == slug)
}

async fn view(page: &PageSpec, r: &Request<'_>) -> Result<Page, AppError> {
    match page.slug {
        "" => server::overview(r).await,
        "users" => identity::users(r).await,
        "sso" => identity::sso(r).await,
        "oauth_clients" => clients::oauth_clients(r).await,
        "connectors" => clients::connectors(r).await,
        "data_products" => server::data_products(r).await,
        "settings" => server::settings(r).await,
        "keys" => server::keys(r).await,
        _ => server::audit(r).await,
    }
}

async fn act(page: &PageSpec, r: &Request<'_>) -> Result<Done, AppError> {
    match page.slug {
        "users" => identity::users_act(r).await,
        "sso" => identity::sso_act(r).await,
        "oauth_clients" => clients::oauth_clients_act(r).await,
        "connectors" => clients::connectors_act(r).await,
        "data_products" => server::data_products_act(r).await,
        "settings" => server::settings_act(r).await,
        "keys" => server::keys_act(r).await,
        _ => Err(AppError::Invalid("unknown action".into())),
    }
}

/// The page `slug` for a signed-in user, or the response that stands in
/// for it (sign-in, the password change, a refusal).
async fn gate(
    app: &App,
    headers: &HeaderMap,
    slug: &str,
) -> Result<(&'static PageSpec, User, String), Response> {
    let Some(page) = spec(slug) else {
        return Err(own_error_page(StatusCode::NOT_FOUND, "there is no such page in the console"));
    };
    let Some((signed_in, session)) = signed_in_session(app, headers).await? else {
        let return_to = format!("{CONSOLE_PATH}{}{}", page.slug, if page.slug.is_empty() { "" } else { "/" });
        return Err(login_page(app, "the admin console", None, return_to, headers, None).await);
    };
    if signed_in.must_change_password {
        return Err(see_other(PASSWORD_PATH));
    }
    if !signed_in.user.role.satisfies(page.role) {
        return Err(own_error_page(
            StatusCode::FORBIDDEN,
            &format!("this page needs the {} role; you are {}", page.role, signed_in.user.role),
        ));
    }
    Ok((page, signed_in.user, session))
}

async fn render(
    app: &App,
    page: &'static PageSpec,
    r: &Request<'_>,
    session: &str,
    done: Option<Result<Done, AppError>>,
) -> Response {
    let (mut notice, mut shown) = (None, None);
    let mut status = StatusCode::OK;
    match done {
        None => {}
        Some(Ok(Done::Message(text))) => notice = Some(Notice { text, error: false, href: None }),
        Some(Ok(Done::Secret { what, value, note })) => shown = Some(Shown { what, value, note }),
        Some(Ok(Done::Link { text, href })) => notice = Some(Notice { text, error: false, href: Some(href) }),
        Some(Err(e @ (AppError::Internal(_) | AppError::Startup(_)))) => return internal(e),
        Some(Err(e)) => {
            status = match e {
                AppError::Conflict(_) => StatusCode::CONFLICT,
                AppError::NotFound(_) => StatusCode::NOT_FOUND,
                AppError::Forbidden(_) => StatusCode::FORBIDDEN,
                AppError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
                _ => StatusCode::BAD_REQUEST,
            };
            notice = Some(Notice { text: e.to_string(), error: true, href: None });
        }
    }
    let mut model = match view(page, r).await {
        Ok(m) => m,
        Err(e) => return internal(e),
    };
    // Two forms may share field names; their ids must differ.
    for form in model.sections.iter_mut().filter_map(|s| s.form.as_mut()) {
        let prefix = form.action.unwrap_or("filter");
        for field in &mut form.fields {
            field.id = format!("{prefix}-{}", field.name);
        }
    }
    let nav = PAGES
        .iter()
        .filter(|p| r.user.role.satisfies(p.role))
        .map(|p| NavItem {
            href: format!("{CONSOLE_PATH}{}{}", p.slug, if p.slug.is_empty() { "" } else { "/" }),
            label: p.label,
            current: p.slug == page.slug,
        })
        .collect();
    let html = ConsoleTemplate {
        title: page.label,
        username: &r.user.username,
        role: r.user.role,
        nav,
        intro: model.intro,
        notice,
        shown,
        sections: model.sections,
        csrf: app.csrf_token("console", session),
    }
    .render()
    .unwrap_or_default();
    super::account::scripted_page(status, html)
}

/// A page's query; a repeated field keeps its last value.
fn query_map(query: Option<String>) -> Result<HashMap<String, String>, super::extract::FormRefusal> {
    let query = query.unwrap_or_default();
    Ok(super::extract::form_pairs(query.as_bytes())?.into_owned().take(20).collect())
}

/// GET `/admin/` and `/admin/<page>/`.
pub async fn show(
    State(app): State<Arc<App>>,
    slug: Option<Path<String>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let slug = slug.map(|Path(s)| s).unwrap_or_default();
    let (page, user, session) = match gate(&app, &headers, &slug).await {
        Ok(g) => g,
        Err(response) => return response,
    };
    if query.as_ref().is_some_and(|q| q.len() > 4096) {
        return own_error_page(StatusCode::BAD_REQUEST, "the address is too long");
    }
    let query = match query_map(query) {
        Ok(query) => query,
        Err(refusal) => return own_error_page(StatusCode::BAD_REQUEST, &format!("the address {refusal}")),
    };
    let r = Request { app: &app, user: &user, form: PageForm(HashMap::new()), query };
    render(&app, page, &r, &session, None).await
}

/// POST `/admin/` and `/admin/<page>/`: one of the page's forms.
pub async fn submit(
    State(app): State<Arc<App>>,
    slug: Option<Path<String>>,
    ConnectInfo(_addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: PageForm,
) -> Response {
    let slug = slug.map(|Path(s)| s).unwrap_or_default();
    let (page, user, session) = match gate(&app, &headers, &slug).await {
        Ok(g) => g,
        Err(response) => return response,
    };
    if !app.csrf_matches("console", &session, form.field("csrf")) {
        return own_error_page(
            StatusCode::FORBIDDEN,
            "the form expired or came from elsewhere; reload the page",
        );
    }
    if form.field("action") == "sign_out" {
        if let Err(e) = app.end_session(&session).await {
            return internal(e);
        }
        let mut response = see_other("/");
        response.headers_mut().append(header::SET_COOKIE, set_cookie(&app, SESSION_COOKIE, "", 0));
        return response;
    }
    let r = Request { app: &app, user: &user, form, query: HashMap::new() };
    let done = act(page, &r).await;
    render(&app, page, &r, &session, Some(done)).await
}

/// A day and time, to the minute, in UTC.
fn when(t: time::OffsetDateTime) -> String {
    format!("{:04}-{:02}-{:02} {:02}:{:02} UTC", t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute())
}

#[derive(Template)]
#[template(path = "password.html")]
struct PasswordPage<'a> {
    username: &'a str,
    forced: bool,
    error: Option<&'a str>,
    csrf: String,
}

fn password_form(
    app: &App,
    signed_in: &crate::app::SignedIn,
    session: &str,
    error: Option<&str>,
) -> Response {
    let html = PasswordPage {
        username: &signed_in.user.username,
        forced: signed_in.must_change_password,
        error,
        csrf: app.csrf_token("password", session),
    }
    .render()
    .unwrap_or_default();
    let status = if error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    super::authorize::page(status, html, None)
}

/// GET `/account/password`.
pub async fn password_page(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    match signed_in_session(&app, &headers).await {
        Err(page) => page,
        Ok(Some((s, _))) if s.user.auth_source != crate::domain::AuthSource::Password => own_error_page(
            StatusCode::BAD_REQUEST,
            "you sign in through single sign-on: keyward has no password of yours",
        ),
        Ok(Some((s, session))) => password_form(&app, &s, &session, None),
        Ok(None) => {
            login_page(&app, "your account", None, super::account::ACCOUNT_PATH.into(), &headers, None).await
        }
    }
}

/// POST `/account/password`.
pub async fn change_password(
    State(app): State<Arc<App>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: PageForm,
) -> Response {
    let signed_in = match signed_in_session(&app, &headers).await {
        Ok(signed_in) => signed_in,
        Err(page) => return page,
    };
    let Some((signed_in, session)) = signed_in else {
        return own_error_page(StatusCode::UNAUTHORIZED, "you are not signed in (any more); sign in again");
    };
    if !app.csrf_matches("password", &session, form.field("csrf")) {
        return own_error_page(
            StatusCode::FORBIDDEN,
            "the form expired or came from elsewhere; reload the page",
        );
    }
    if form.field("new") != form.field("confirm") {
        return password_form(&app, &signed_in, &session, Some("The two new passwords differ."));
    }
    match app.change_own_password(&signed_in.user, form.field("current"), form.field("new"), addr.ip()).await
    {
        Ok(sign_in) => super::authorize::signed_in_at(&app, &sign_in, "/"),
        Err(AppError::TooManyRequests { retry_after }) => {
            let message = format!("Too many failed attempts. Try again in {retry_after} seconds.");
            let mut response = password_form(&app, &signed_in, &session, Some(&message));
            *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
            response
        }
        Err(e @ (AppError::Invalid(_) | AppError::Conflict(_))) => {
            password_form(&app, &signed_in, &session, Some(&e.to_string()))
        }
        Err(e) => internal(e),
    }
}
