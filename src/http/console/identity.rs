//! Console pages of who may sign in: users and their roles, and the
//! single sign-on providers.

use super::{Action, Done, Field, Form, Page, Request, Row, Section, Table, role_options, when};
use crate::app::{AppError, UserPatch};
use crate::domain::sso::SsoProviderInput;
use crate::domain::{AuthSource, Role};
use std::collections::BTreeMap;

const USERS_PER_PAGE: i64 = 50;

fn page_number(r: &Request<'_>) -> i64 {
    r.query.get("page").and_then(|p| p.parse::<i64>().ok()).filter(|p| (1..=100_000).contains(p)).unwrap_or(1)
}

fn role(r: &Request<'_>, name: &str) -> Result<Role, AppError> {
    r.field(name).parse().map_err(|e: crate::domain::role::UnknownRole| AppError::Invalid(e.to_string()))
}

fn user_id(r: &Request<'_>) -> Result<i64, AppError> {
    r.field("id").parse().map_err(|_| AppError::Invalid("choose a user".into()))
}

pub(super) async fn users(r: &Request<'_>) -> Result<Page, AppError> {
    let page = page_number(r);
    let users = r.app.store.list_users(USERS_PER_PAGE + 1, (page - 1) * USERS_PER_PAGE).await?;
    let more = users.len() as i64 > USERS_PER_PAGE;
    let rows = users
        .into_iter()
        .take(USERS_PER_PAGE as usize)
        .map(|u| {
            let id = u.id.to_string();
            let hidden = || vec![("id", id.clone())];
            let toggle = if u.disabled {
                Action::new("Enable", "enable", hidden())
            } else {
                Action::new("Disable", "disable", hidden()).danger()
            };
            Row {
                cells: vec![
                    id.clone(),
                    u.username.clone(),
                    u.role.to_string(),
                    match u.auth_source {
                        AuthSource::Password => "password".into(),
                        AuthSource::Sso => "single sign-on".into(),
                    },
                    if u.disabled { "disabled".into() } else { "active".into() },
                    when(u.created_at),
                ],
                actions: vec![
                    Action::new("Change role", "set_role", hidden()).with_input(
                        Field::select("role", &format!("New role of {}", u.username), role_options())
                            .value(u.role.as_str())
                            .for_row(&id),
                    ),
                    toggle,
                    Action::new("Delete", "delete", hidden()).danger(),
                ],
            }
        })
        .collect();
    let mut links = Vec::new();
    if page > 1 {
        links.push((format!("?page={}", page - 1), "← Previous".to_string()));
    }
    if more {
        links.push((format!("?page={}", page + 1), "Next →".to_string()));
    }
    Ok(Page {
        intro: Some(
            "Who may sign in, and with what role. Disabling a user or setting a password ends their \
             sign-ins, tokens and grants."
                .into(),
        ),
        sections: vec![
            Section {
                heading: "Users".into(),
                table: Some(Table {
                    headers: vec!["Id", "Username", "Role", "Signs in with", "Status", "Created"],
                    rows,
                    empty: "No users on this page.",
                }),
                links,
                ..Default::default()
            },
            Section {
                heading: "Add a user".into(),
                text: Some(
                    "Leave the password empty for a user who signs in through single sign-on only.".into(),
                ),
                form: Some(Form {
                    method: "post",
                    action: Some("create"),
                    submit: "Add user",
                    fields: vec![
                        Field::text("username", "Username").required().hint("Often an e-mail address."),
                        Field::select("role", "Role", role_options()).value("viewer"),
                        Field::new(
                            "password",
                            "Password (8 characters or more, not a common one)",
                            "password",
                        ),
                    ],
                }),
                ..Default::default()
            },
        ],
    })
}

pub(super) async fn users_act(r: &Request<'_>) -> Result<Done, AppError> {
    let app = r.app;
    match r.field("action") {
        "create" => {
            let password = Some(r.field("password")).filter(|p| !p.is_empty());
            let user =
                app.create_user(r.actor(), r.field("username").trim(), password, role(r, "role")?).await?;
            Ok(Done::Message(format!("User {} added as {}.", user.username, user.role)))
        }
        "set_role" => {
            let patch = UserPatch { role: Some(role(r, "role")?), ..Default::default() };
            let user = app.update_user(r.actor(), user_id(r)?, patch).await?;
            Ok(Done::Message(format!("{} is now {}.", user.username, user.role)))
        }
        action @ ("enable" | "disable") => {
            let patch = UserPatch { disabled: Some(action == "disable"), ..Default::default() };
            let user = app.update_user(r.actor(), user_id(r)?, patch).await?;
            Ok(Done::Message(format!("{} is {action}d.", user.username)))
        }
        "delete" => {
            let id = user_id(r)?;
            if id == r.user.id {
                return Err(AppError::Invalid("you cannot delete yourself here".into()));
            }
            app.delete_user(r.actor(), id).await?;
            Ok(Done::Message("The user is deleted.".into()))
        }
        _ => Err(AppError::Invalid("unknown action".into())),
    }
}

fn role_choice(with_refuse: &str) -> Vec<(String, String)> {
    let mut options = vec![(String::new(), with_refuse.to_string())];
    options.extend(role_options());
    options
}

pub(super) async fn sso(r: &Request<'_>) -> Result<Page, AppError> {
    let providers = r.app.sso_providers().await?;
    let rows = providers
        .into_iter()
        .map(|view| {
            let p = &view.provider;
            let hidden = || vec![("id", p.id.clone())];
            let toggle = if p.enabled {
                Action::new("Turn off", "disable", hidden()).danger()
            } else {
                Action::new("Turn on", "enable", hidden())
            };
            let roles = if p.group_roles.is_empty() {
                "—".to_string()
            } else {
                p.group_roles.iter().map(|(g, r)| format!("{g} → {r}")).collect::<Vec<_>>().join(", ")
            };
            Row {
                cells: vec![
                    format!("Sign in with {}", p.display_name),
                    p.issuer.clone(),
                    p.client_id.clone(),
                    p.default_role.map_or("refuse new users".into(), |r| format!("new users: {r}")),
                    roles,
                    view.redirect_uri.clone(),
                    match (p.enabled, p.id_jag) {
                        (true, true) => "on, with identity assertions".into(),
                        (true, false) => "on".into(),
                        (false, _) => "off".into(),
                    },
                ],
                actions: vec![toggle, Action::new("Delete", "delete", hidden()).danger()],
            }
        })
        .collect();
    Ok(Page {
        intro: Some(
            "Users sign in through their company's identity provider (Okta, Entra ID, Google, Keycloak, any \
             OpenID Connect issuer). Register keyward at the provider with the redirect URI shown, then add \
             the provider here."
                .into(),
        ),
        sections: vec![
            Section {
                heading: "Providers".into(),
                table: Some(Table {
                    headers: vec!["Button", "Issuer", "Client id", "First sign-in", "Groups → roles", "Redirect URI", "State"],
                    rows,
                    empty: "No single sign-on provider yet: only passwords sign in.",
                }),
                ..Default::default()
            },
            Section {
                heading: "Add a provider".into(),
                form: Some(Form {
                    method: "post",
                    action: Some("create"),
                    submit: "Add provider",
                    fields: vec![
                        Field::text("id", "Id").required().hint(format!(
                            "Lowercase letters, digits and dashes. The redirect URI to register at the provider is {}/login/sso/<id>/callback/",
                            r.app.issuer
                        )),
                        Field::text("display_name", "Name on the button").required().hint("\"Sign in with <name>\""),
                        Field::new("issuer", "Issuer URL", "url")
                            .required()
                            .hint("keyward reads <issuer>/.well-known/openid-configuration."),
                        Field::text("client_id", "Client id").required(),
                        Field::new("client_secret", "Client secret", "password").hint("Kept encrypted; never shown again."),
                        Field::text("scopes", "Scopes").value("openid email profile"),
                        Field::text("username_claim", "Claim to use as the username").value("email"),
                        Field::text("groups_claim", "Claim listing the user's groups").hint("Optional, e.g. groups."),
                        Field::new("group_roles", "Groups to roles", "textarea")
                            .hint("One per line: group = role, e.g. keyward-admins = server_admin."),
                        Field::select("default_role", "Role of a user's first sign-in", role_choice("refuse (an admin adds users first)"))
                            .value("viewer"),
                        Field::new("id_jag", "Accept its identity assertions (ID-JAG) for agents", "checkbox")
                            .hint("MCP enterprise-managed authorization: apps get tokens for linked users without a browser."),
                    ],
                }),
                ..Default::default()
            },
        ],
    })
}

/// `group = role` lines.
fn group_roles(text: &str) -> Result<BTreeMap<String, Role>, AppError> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|line| {
            let (group, role) = line
                .rsplit_once('=')
                .ok_or_else(|| AppError::Invalid(format!("{line:?} is not 'group = role'")))?;
            let role = role
                .trim()
                .parse()
                .map_err(|e: crate::domain::role::UnknownRole| AppError::Invalid(e.to_string()))?;
            Ok((group.trim().to_string(), role))
        })
        .collect()
}

pub(super) async fn sso_act(r: &Request<'_>) -> Result<Done, AppError> {
    let app = r.app;
    let id = r.field("id");
    match r.field("action") {
        "create" => {
            let optional = |name: &str| Some(r.field(name).trim().to_string()).filter(|v| !v.is_empty());
            let input = SsoProviderInput {
                display_name: r.field("display_name").to_string(),
                issuer: r.field("issuer").trim().to_string(),
                client_id: r.field("client_id").trim().to_string(),
                client_secret: optional("client_secret"),
                scopes: optional("scopes").map(|s| s.split_whitespace().map(str::to_owned).collect()),
                username_claim: optional("username_claim"),
                groups_claim: optional("groups_claim"),
                group_roles: group_roles(r.field("group_roles"))?,
                default_role: match r.field("default_role") {
                    "" => None,
                    _ => Some(role(r, "default_role")?),
                },
                enabled: true,
                id_jag: r.checked("id_jag"),
            };
            let view = app.put_sso_provider(r.actor(), id.trim(), input, false).await?;
            Ok(Done::Message(format!(
                "Provider added: the sign-in page now offers \"Sign in with {}\". Its redirect URI is {}",
                view.provider.display_name, view.redirect_uri
            )))
        }
        action @ ("enable" | "disable") => {
            let p = app.sso_provider(id).await?.provider;
            let input = SsoProviderInput {
                display_name: p.display_name,
                issuer: p.issuer,
                client_id: p.client_id,
                client_secret: None,
                scopes: Some(p.scopes),
                username_claim: Some(p.username_claim),
                groups_claim: p.groups_claim,
                group_roles: p.group_roles,
                default_role: p.default_role,
                enabled: action == "enable",
                id_jag: p.id_jag,
            };
            app.put_sso_provider(r.actor(), id, input, true).await?;
            Ok(Done::Message(format!(
                "Provider {id} is turned {}.",
                if action == "enable" { "on" } else { "off" }
            )))
        }
        "delete" => {
            app.delete_sso_provider(r.actor(), id).await?;
            Ok(Done::Message(format!(
                "Provider {id} is deleted; its users stay, without a way to sign in through it."
            )))
        }
        _ => Err(AppError::Invalid("unknown action".into())),
    }
}
