//! Console pages of applications: OAuth client applications (machines
//! acting for themselves, apps acting for users) and connectors (other
//! companies' OAuth apps keyward is a client of).

use super::{Action, Done, Field, Form, Page, Request, Row, Section, Table, role_options};
use crate::app::{AppError, ClientPatch, ClientRegistration};
use crate::domain::Caller;
use crate::domain::client::{ACCESS_TOKEN_DURATION_MAX, ACCESS_TOKEN_DURATION_MIN};
use crate::domain::delegated::REDIRECT_PRESETS;
use serde_json::json;

fn duration(seconds: i64) -> String {
    match seconds {
        s if s % 3600 == 0 => format!("{} h", s / 3600),
        s if s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

fn client_id<'a>(r: &'a Request<'_>) -> &'a str {
    r.field("client_id")
}

pub(super) async fn oauth_clients(r: &Request<'_>) -> Result<Page, AppError> {
    let (m2m, delegated) =
        tokio::try_join!(async { r.app.store.list_m2m_clients().await.map_err(AppError::from) }, async {
            r.app.store.list_oauth_clients().await.map_err(AppError::from)
        },)?;
    let m2m_rows = m2m
        .into_iter()
        .map(|c| {
            let hidden = || vec![("client_id", c.client_id.clone())];
            let toggle = if c.disabled {
                Action::new("Enable", "m2m_enable", hidden())
            } else {
                Action::new("Disable", "m2m_disable", hidden()).danger()
            };
            Row {
                cells: vec![
                    c.name.clone(),
                    c.client_id.clone(),
                    c.role.to_string(),
                    duration(c.access_token_duration),
                    match (c.disabled, c.token_exchange) {
                        (true, _) => "disabled".into(),
                        (false, true) => "active, exchanges users' tokens".into(),
                        (false, false) => "active".into(),
                    },
                ],
                actions: vec![
                    Action::new("Rotate secret", "m2m_rotate", hidden()),
                    if c.token_exchange {
                        Action::new("Stop token exchange", "m2m_exchange_off", hidden())
                    } else {
                        Action::new("Allow token exchange", "m2m_exchange_on", hidden())
                    },
                    toggle,
                    Action::new("Delete", "m2m_delete", hidden()).danger(),
                ],
            }
        })
        .collect();
    let delegated_rows = delegated
        .into_iter()
        .map(|c| {
            let hidden = || vec![("client_id", c.client_id.clone())];
            let mut actions = Vec::new();
            if c.grant_type == crate::domain::delegated::ClientType::Confidential {
                actions.push(Action::new("Rotate secret", "app_rotate", hidden()));
            }
            actions.push(Action::new("Delete", "app_delete", hidden()).danger());
            Row {
                cells: vec![
                    c.name.clone(),
                    c.client_id.clone(),
                    c.grant_type.as_str().to_string(),
                    c.registration.as_str().to_string(),
                    c.redirect_uris.join(" "),
                    format!("{} / {}", duration(c.access_token_lifetime), duration(c.refresh_token_lifetime)),
                ],
                actions,
            }
        })
        .collect();
    let mut presets = vec![(String::new(), "none".to_string())];
    presets.extend(REDIRECT_PRESETS.iter().map(|(name, label, _)| (name.to_string(), label.to_string())));
    let token = r.app.issuer.clone() + "/oauth/v2/token/";
    Ok(Page {
        intro: Some(format!(
            "Applications that get tokens from keyward. Machines present their client id and secret at {token} \
             (client credentials) and get a signed JWT; apps acting for users send them through sign-in and \
             consent (authorization code with PKCE)."
        )),
        sections: vec![
            Section {
                heading: "Machine-to-machine (client credentials)".into(),
                table: Some(Table {
                    headers: vec!["Name", "Client id", "Role", "Token duration", "Status"],
                    rows: m2m_rows,
                    empty: "No machine-to-machine application yet.",
                }),
                ..Default::default()
            },
            Section {
                heading: "Create a machine-to-machine application".into(),
                form: Some(Form {
                    method: "post",
                    action: Some("m2m_create"),
                    submit: "Create application",
                    fields: vec![
                        Field::text("name", "Name").required(),
                        Field::new("access_token_duration", "Token duration (minutes)", "number")
                            .range(ACCESS_TOKEN_DURATION_MIN / 60, ACCESS_TOKEN_DURATION_MAX / 60)
                            .value("60")
                            .required()
                            .hint("From 5 minutes to 72 hours (4320 minutes)."),
                        Field::select("role", "Role", role_options()).value("viewer"),
                    ],
                }),
                ..Default::default()
            },
            Section {
                heading: "Apps acting for users (authorization code)".into(),
                table: Some(Table {
                    headers: vec![
                        "Name",
                        "Client id",
                        "Type",
                        "Registered by",
                        "Redirect URIs",
                        "Access / refresh",
                    ],
                    rows: delegated_rows,
                    empty: "No app acts for users yet.",
                }),
                ..Default::default()
            },
            Section {
                heading: "Register an app".into(),
                form: Some(Form {
                    method: "post",
                    action: Some("app_register"),
                    submit: "Register app",
                    fields: vec![
                        Field::text("name", "Name").required(),
                        Field::select("preset", "Known client", presets).hint(
                            "Adds that client's redirect URIs (VS Code, Claude, ChatGPT, MCP Inspector).",
                        ),
                        Field::new("redirect_uris", "Redirect URIs", "textarea").hint("One per line."),
                        Field::select(
                            "grant_type",
                            "Type",
                            vec![
                                ("confidential".into(), "confidential (a server that keeps a secret)".into()),
                                ("public".into(), "public (a desktop, mobile or browser app)".into()),
                            ],
                        ),
                        Field::new("access_token_lifetime", "Access token lifetime (hours)", "number")
                            .range(1, 72)
                            .value("1"),
                        Field::new("refresh_token_lifetime", "Refresh token lifetime (days)", "number")
                            .range(3, 180)
                            .value("30"),
                        Field::new("pkce_enabled", "Require PKCE (always on for public apps)", "checkbox")
                            .value("true"),
                    ],
                }),
                ..Default::default()
            },
        ],
    })
}

fn number(r: &Request<'_>, name: &str, what: &str) -> Result<i64, AppError> {
    r.field(name).trim().parse().map_err(|_| AppError::Invalid(format!("{what} must be a whole number")))
}

pub(super) async fn oauth_clients_act(r: &Request<'_>) -> Result<Done, AppError> {
    let app = r.app;
    let secret = |what: &str, id: &str, value: String| Done::Secret {
        what: what.to_string(),
        value,
        note: format!("It belongs to client id {id}."),
    };
    match r.field("action") {
        "m2m_create" => {
            let minutes = number(r, "access_token_duration", "the token duration")?;
            let role = r
                .field("role")
                .parse()
                .map_err(|e: crate::domain::role::UnknownRole| AppError::Invalid(e.to_string()))?;
            let created = app
                .create_m2m_client(r.actor(), r.field("name").trim(), minutes.saturating_mul(60), role)
                .await?;
            Ok(secret("Client secret", &created.client.client_id, created.client_secret))
        }
        "m2m_rotate" => {
            let rotated = app.rotate_m2m_client_secret(r.actor(), client_id(r)).await?;
            Ok(secret("New client secret", &rotated.client.client_id, rotated.client_secret))
        }
        action @ ("m2m_enable" | "m2m_disable") => {
            let patch = ClientPatch { disabled: Some(action == "m2m_disable"), ..Default::default() };
            let client = app.update_m2m_client(r.actor(), client_id(r), patch).await?;
            Ok(Done::Message(format!(
                "{} is {}.",
                client.name,
                if client.disabled { "disabled" } else { "enabled" }
            )))
        }
        action @ ("m2m_exchange_on" | "m2m_exchange_off") => {
            let patch =
                ClientPatch { token_exchange: Some(action == "m2m_exchange_on"), ..Default::default() };
            let client = app.update_m2m_client(r.actor(), client_id(r), patch).await?;
            Ok(Done::Message(if client.token_exchange {
                format!(
                    "{} may now exchange a user's access token for that user's connection tokens (RFC 8693).",
                    client.name
                )
            } else {
                format!("{} may no longer exchange tokens.", client.name)
            }))
        }
        "m2m_delete" => {
            app.delete_m2m_client(r.actor(), client_id(r)).await?;
            Ok(Done::Message("The application is deleted; its tokens stop working.".into()))
        }
        "app_register" => {
            let hours = number(r, "access_token_lifetime", "the access token lifetime")?;
            let days = number(r, "refresh_token_lifetime", "the refresh token lifetime")?;
            let registration: ClientRegistration = serde_json::from_value(json!({
                "name": r.field("name").trim(),
                "redirect_uris": r.field("redirect_uris").lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>(),
                "redirect_uri_presets": Some(r.field("preset")).filter(|p| !p.is_empty()).into_iter().collect::<Vec<_>>(),
                "grant_type": r.field("grant_type"),
                "access_token_lifetime": hours.saturating_mul(3600),
                "refresh_token_lifetime": days.saturating_mul(86_400),
                "pkce_enabled": r.checked("pkce_enabled"),
            }))
            .map_err(|e| AppError::Invalid(format!("the form is not valid: {e}")))?;
            let (client, client_secret) = app.register_oauth_client(r.actor(), registration).await?;
            Ok(match client_secret {
                Some(value) => secret("Client secret", &client.client_id, value),
                None => Done::Message(format!(
                    "{} is registered with client id {}.",
                    client.name, client.client_id
                )),
            })
        }
        "app_rotate" => {
            let value = app.rotate_oauth_client_secret(r.actor(), client_id(r)).await?;
            Ok(secret("New client secret", client_id(r), value))
        }
        "app_delete" => {
            app.delete_oauth_client(r.actor(), client_id(r)).await?;
            Ok(Done::Message("The app is deleted; its grants and tokens end.".into()))
        }
        _ => Err(AppError::Invalid("unknown action".into())),
    }
}

pub(super) async fn connectors(r: &Request<'_>) -> Result<Page, AppError> {
    let clients = r.app.outbound_clients().await?;
    let rows = clients
        .into_iter()
        .map(|c| {
            let hidden = || vec![("id", c.id.clone())];
            let mut actions = Vec::new();
            if c.settings.grant_type == crate::domain::outbound::OutboundGrant::AuthorizationCode {
                actions.push(Action::new("Authorize", "authorize", hidden()));
            }
            actions.push(Action::new("Delete", "delete", hidden()).danger());
            Row {
                cells: vec![
                    c.settings.name.clone(),
                    c.id.clone(),
                    match c.settings.grant_type {
                        crate::domain::outbound::OutboundGrant::AuthorizationCode => {
                            "authorization code".into()
                        }
                        crate::domain::outbound::OutboundGrant::ClientCredentials => {
                            "client credentials".into()
                        }
                    },
                    c.settings.token_url.clone(),
                    c.settings.api_base_url.clone(),
                ],
                actions,
            }
        })
        .collect();
    Ok(Page {
        intro: Some(format!(
            "Other companies' OAuth apps. keyward is their client: users authorize a connection once, and keyward \
             keeps its tokens fresh and adds them to calls. Register {} as the redirect URI at the provider.",
            r.app.connection_callback_url()
        )),
        sections: vec![
            Section {
                heading: "OAuth profiles".into(),
                text: Some(
                    "Authorize connects your own account (it appears on your Account Settings page).".into(),
                ),
                table: Some(Table {
                    headers: vec!["Name", "Id", "Grant", "Token URL", "API base URL"],
                    rows,
                    empty: "No connector yet.",
                }),
                ..Default::default()
            },
            Section {
                heading: "Add an OAuth profile".into(),
                form: Some(Form {
                    method: "post",
                    action: Some("create"),
                    submit: "Add profile",
                    fields: vec![
                        Field::text("name", "Name").required(),
                        Field::select(
                            "grant_type",
                            "Grant",
                            vec![
                                ("authorization_code".into(), "authorization code (users authorize)".into()),
                                ("client_credentials".into(), "client credentials (the app itself)".into()),
                            ],
                        ),
                        Field::text("client_id", "Client id").required(),
                        Field::new("client_secret", "Client secret", "password")
                            .hint("Kept encrypted; never shown again."),
                        Field::new("authorization_url", "Authorization URL", "url")
                            .hint("For the authorization code grant."),
                        Field::new("token_url", "Token URL", "url").required(),
                        Field::text("scopes", "Scopes").hint("Separated by spaces."),
                        Field::select(
                            "token_endpoint_auth",
                            "Client authentication",
                            vec![
                                ("basic".into(), "HTTP Basic".into()),
                                ("post".into(), "in the form body".into()),
                            ],
                        ),
                        Field::new("api_base_url", "API base URL", "url")
                            .required()
                            .hint("Connections may call only below this URL."),
                        Field::new("pkce_enabled", "Use PKCE", "checkbox").value("true"),
                    ],
                }),
                ..Default::default()
            },
        ],
    })
}

pub(super) async fn connectors_act(r: &Request<'_>) -> Result<Done, AppError> {
    let app = r.app;
    match r.field("action") {
        "create" => {
            let optional = |name: &str| Some(r.field(name).trim()).filter(|v| !v.is_empty());
            let body: super::super::outbound::CreateOutboundRequest = serde_json::from_value(json!({
                "name": r.field("name").trim(),
                "grant_type": r.field("grant_type"),
                "client_id": r.field("client_id").trim(),
                "client_secret": optional("client_secret"),
                "authorization_url": optional("authorization_url"),
                "token_url": r.field("token_url").trim(),
                "scopes": r.field("scopes").split_whitespace().collect::<Vec<_>>(),
                "token_endpoint_auth": r.field("token_endpoint_auth"),
                "pkce_enabled": r.checked("pkce_enabled"),
                "api_base_url": r.field("api_base_url").trim(),
            }))
            .map_err(|e| AppError::Invalid(format!("the form is not valid: {e}")))?;
            let (settings, secret) = body.into_settings();
            let created = app.create_outbound_client(r.actor(), settings, secret.as_deref()).await?;
            Ok(Done::Message(format!("{} is added (id {}).", created.settings.name, created.id)))
        }
        "authorize" => {
            let caller = Caller::signed_in(r.user);
            let client = app.outbound_client(r.field("id")).await?;
            let connection = app.create_connection(&caller, &client.id, &client.settings.name).await?;
            let href = app.start_connection_authorization(&caller, &connection.id).await?;
            Ok(Done::Link {
                text: format!(
                    "A connection to {} is ready to authorize at the provider.",
                    client.settings.name
                ),
                href,
            })
        }
        "delete" => {
            app.delete_outbound_client(r.actor(), r.field("id")).await?;
            Ok(Done::Message("The profile is deleted, with its connections.".into()))
        }
        _ => Err(AppError::Invalid("unknown action".into())),
    }
}
