//! Console pages of the server itself: the overview, data products, the
//! runtime settings, keys and the audit log.

use super::{Action, Done, Field, Form, Page, Request, Row, Section, Table, when};
use crate::app::AppError;
use crate::domain::settings::SettingKind;
use crate::domain::vault::{DataProduct, Warehouse};
use crate::store::AuditQuery;

pub(super) async fn overview(r: &Request<'_>) -> Result<Page, AppError> {
    let app = r.app;
    let keys = app.keys.current();
    let mut facts = vec![
        Row { cells: vec!["Issuer".into(), app.issuer.clone()], actions: vec![] },
        Row {
            cells: vec![
                "Metadata (RFC 8414)".into(),
                format!("{}/.well-known/oauth-authorization-server", app.issuer),
            ],
            actions: vec![],
        },
        Row {
            cells: vec!["Token endpoint".into(), format!("{}/oauth/v2/token/", app.issuer)],
            actions: vec![],
        },
        Row {
            cells: vec![
                "Signing key".into(),
                format!("{} ({})", keys.signing_key().kid, keys.signing_key().alg.as_str()),
            ],
            actions: vec![],
        },
        Row { cells: vec!["Database".into(), format!("{:?}", app.store.backend())], actions: vec![] },
    ];
    if r.user.role.satisfies(crate::domain::Role::ServerAdmin) {
        let users = app.store.list_users(1001, 0).await?.len();
        let clients = app.store.list_m2m_clients().await?.len() + app.store.list_oauth_clients().await?.len();
        facts.push(Row {
            cells: vec!["Users".into(), if users > 1000 { "over 1000".into() } else { users.to_string() }],
            actions: vec![],
        });
        facts.push(Row {
            cells: vec!["OAuth client applications".into(), clients.to_string()],
            actions: vec![],
        });
    }
    Ok(Page {
        intro: Some(
            "keyward: the platform's authorization server, connector OAuth client and credential vault."
                .into(),
        ),
        sections: vec![Section {
            heading: "This server".into(),
            table: Some(Table { headers: vec!["", ""], rows: facts, empty: "" }),
            ..Default::default()
        }],
    })
}

pub(super) async fn data_products(r: &Request<'_>) -> Result<Page, AppError> {
    let rows = r
        .app
        .data_products()
        .await?
        .into_iter()
        .map(|dp| {
            let Warehouse::Postgresql { host, port, database } = &dp.warehouse;
            Row {
                cells: vec![
                    dp.dp_id.clone(),
                    dp.name.clone(),
                    format!("postgresql://{host}:{port}/{database}"),
                ],
                actions: vec![Action::new("Delete", "delete", vec![("dp_id", dp.dp_id.clone())]).danger()],
            }
        })
        .collect();
    Ok(Page {
        intro: Some(
            "Data products whose warehouse logins users keep in keyward's vault (Account Settings). keyward \
             stores where the warehouse is, never a shared credential."
                .into(),
        ),
        sections: vec![
            Section {
                heading: "Data products".into(),
                table: Some(Table {
                    headers: vec!["Id", "Name", "Warehouse"],
                    rows,
                    empty: "No data product yet.",
                }),
                ..Default::default()
            },
            Section {
                heading: "Add a data product".into(),
                form: Some(Form {
                    method: "post",
                    action: Some("create"),
                    submit: "Add data product",
                    fields: vec![
                        Field::text("dp_id", "Id").required().hint("Letters, digits and - _ . :"),
                        Field::text("name", "Name").required(),
                        Field::text("host", "PostgreSQL host").required(),
                        Field::new("port", "Port", "number").range(1, 65535).value("5432"),
                        Field::text("database", "Database").required(),
                    ],
                }),
                ..Default::default()
            },
        ],
    })
}

pub(super) async fn data_products_act(r: &Request<'_>) -> Result<Done, AppError> {
    match r.field("action") {
        "create" => {
            let port = r
                .field("port")
                .trim()
                .parse()
                .map_err(|_| AppError::Invalid("the port must be 1 to 65535".into()))?;
            let dp = DataProduct {
                dp_id: r.field("dp_id").trim().to_string(),
                name: r.field("name").trim().to_string(),
                warehouse: Warehouse::Postgresql {
                    host: r.field("host").trim().to_string(),
                    port,
                    database: r.field("database").trim().to_string(),
                },
            };
            let dp = r.app.create_data_product(r.actor(), dp).await?;
            Ok(Done::Message(format!("Data product {} is added.", dp.dp_id)))
        }
        "delete" => {
            r.app.delete_data_product(r.actor(), r.field("dp_id")).await?;
            Ok(Done::Message("The data product is deleted, with the credentials users kept for it.".into()))
        }
        _ => Err(AppError::Invalid("unknown action".into())),
    }
}

fn kind_text(kind: &SettingKind) -> String {
    match kind {
        SettingKind::Integer { min, max, unit } => format!("{min} to {max} {unit}"),
        SettingKind::Bool => "true or false".into(),
        SettingKind::Choice(options) => format!("one of {}", options.join(", ")),
        SettingKind::Url => "an https URL, or empty".into(),
        SettingKind::Hosts => "host names, or empty".into(),
    }
}

pub(super) async fn settings(r: &Request<'_>) -> Result<Page, AppError> {
    let rows = r
        .app
        .all_settings()
        .await?
        .into_iter()
        .map(|s| {
            let key = s.spec.key;
            let input = match s.spec.kind {
                SettingKind::Bool => Field::select(
                    "value",
                    &format!("New value of {key}"),
                    vec![("true".into(), "true".into()), ("false".into(), "false".into())],
                ),
                SettingKind::Choice(options) => Field::select(
                    "value",
                    &format!("New value of {key}"),
                    options.iter().map(|o| (o.to_string(), o.to_string())).collect(),
                ),
                SettingKind::Integer { min, max, .. } => {
                    Field::new("value", &format!("New value of {key}"), "number").range(min, max)
                }
                SettingKind::Url | SettingKind::Hosts => Field::text("value", &format!("New value of {key}")),
            }
            .value(s.value.clone())
            .for_row(key);
            let mut actions =
                vec![Action::new("Save", "set", vec![("key", key.to_string())]).with_input(input)];
            if !s.is_default {
                actions.push(Action::new("Reset to default", "reset", vec![("key", key.to_string())]));
            }
            Row {
                cells: vec![
                    key.to_string(),
                    s.spec.description.to_string(),
                    kind_text(&s.spec.kind),
                    if s.is_default { format!("{} (default)", s.value) } else { s.value.clone() },
                ],
                actions,
            }
        })
        .collect();
    Ok(Page {
        intro: Some(
            "Settings every node reads from the database: a change applies everywhere at once.".into(),
        ),
        sections: vec![Section {
            heading: "Runtime settings".into(),
            table: Some(Table { headers: vec!["Key", "What it does", "Allowed", "Value"], rows, empty: "" }),
            ..Default::default()
        }],
    })
}

pub(super) async fn settings_act(r: &Request<'_>) -> Result<Done, AppError> {
    let key = r.field("key");
    match r.field("action") {
        "set" => {
            let v = r.app.set_setting(r.actor(), key, r.field("value")).await?;
            Ok(Done::Message(format!("{key} is now {}.", v.value)))
        }
        "reset" => {
            let v = r.app.reset_setting(r.actor(), key).await?;
            Ok(Done::Message(format!("{key} is back to its default, {}.", v.value)))
        }
        _ => Err(AppError::Invalid("unknown action".into())),
    }
}

pub(super) async fn keys(r: &Request<'_>) -> Result<Page, AppError> {
    let keys = r.app.keys.current();
    let mut kids: Vec<_> = keys.verifiers.iter().collect();
    kids.sort_by_key(|(kid, _)| kid.as_str());
    let rows = kids
        .into_iter()
        .map(|(kid, v)| Row {
            cells: vec![
                kid.clone(),
                v.alg.as_str().to_string(),
                if *kid == keys.signing_key().kid { "signing".into() } else { "verifying only".into() },
            ],
            actions: vec![],
        })
        .collect();
    Ok(Page {
        intro: Some(
            "Access tokens are JWTs signed by the current key and published at /.well-known/jwks.json. The \
             master key (outside the database) wraps the keys that protect stored secrets."
                .into(),
        ),
        sections: vec![
            Section {
                heading: "Signing keys".into(),
                table: Some(Table { headers: vec!["Key id", "Algorithm", "Use"], rows, empty: "" }),
                form: Some(Form {
                    method: "post",
                    action: Some("rotate"),
                    submit: "Rotate the signing key",
                    fields: vec![],
                }),
                text: Some(
                    "Rotating makes a new signing key; the old one keeps verifying for the overlap set in \
                     keyward.oauth.signing_key_rotation_overlap."
                        .into(),
                ),
                ..Default::default()
            },
            Section {
                heading: "Master key".into(),
                text: Some(format!(
                    "Fingerprint {}. Rotate it with `keyward master-key rotate` on the server.",
                    r.app.master_key.fingerprint()
                )),
                ..Default::default()
            },
        ],
    })
}

pub(super) async fn keys_act(r: &Request<'_>) -> Result<Done, AppError> {
    match r.field("action") {
        "rotate" => {
            let (kid, alg) = r.app.rotate_signing_key(r.actor(), None).await?;
            Ok(Done::Message(format!("New signing key {kid} ({}).", alg.as_str())))
        }
        _ => Err(AppError::Invalid("unknown action".into())),
    }
}

const AUDIT_PAGE: i64 = 50;

pub(super) async fn audit(r: &Request<'_>) -> Result<Page, AppError> {
    let filter = |name: &str| {
        r.query.get(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty() && v.len() <= 200)
    };
    let query = AuditQuery {
        action: filter("action"),
        actor: filter("actor"),
        before_id: filter("before").and_then(|b| b.parse().ok()),
        limit: AUDIT_PAGE,
    };
    let events = r.app.store.audit_events(&query).await?;
    let oldest = (events.len() as i64 == AUDIT_PAGE).then(|| events.last().map(|e| e.id)).flatten();
    let rows = events
        .into_iter()
        .map(|e| Row {
            cells: vec![
                when(e.at),
                e.actor,
                e.action,
                e.target.unwrap_or_default(),
                e.outcome,
                e.client_addr.unwrap_or_default(),
                if e.detail.as_object().is_some_and(|o| o.is_empty()) {
                    String::new()
                } else {
                    e.detail.to_string()
                },
            ],
            actions: vec![],
        })
        .collect();
    let mut links = Vec::new();
    if let Some(before) = oldest {
        let mut next = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [("action", &query.action), ("actor", &query.actor)] {
            if let Some(v) = v {
                next.append_pair(k, v);
            }
        }
        next.append_pair("before", &before.to_string());
        links.push((format!("?{}", next.finish()), "Older events →".to_string()));
    }
    Ok(Page {
        intro: Some("Every change and sign-in, newest first.".into()),
        sections: vec![
            Section {
                heading: "Filter".into(),
                form: Some(Form {
                    method: "get",
                    action: None,
                    submit: "Filter",
                    fields: vec![
                        Field::text("action", "Action")
                            .value(query.action.clone().unwrap_or_default())
                            .hint("e.g. login.failed, client.created"),
                        Field::text("actor", "Actor")
                            .value(query.actor.clone().unwrap_or_default())
                            .hint("e.g. user:1, client:m2m_…, system"),
                    ],
                }),
                ..Default::default()
            },
            Section {
                heading: "Events".into(),
                table: Some(Table {
                    headers: vec!["When", "Actor", "Action", "Target", "Outcome", "From", "Detail"],
                    rows,
                    empty: "No event matches.",
                }),
                links,
                ..Default::default()
            },
        ],
    })
}
