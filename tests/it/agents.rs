//! Credentials for agents: the RFC 8693 exchange of a user's access token
//! for their connection's provider token (another keyward is the
//! provider), the connect link an agent hands a user who must authorize
//! first, provider tokens kept from their owners by default, and the
//! outbound refresh-token lifetime enforced before the provider does.
//! ID-JAG (the jwt-bearer grant) is in sso.rs, beside the fake IdP.

use crate::connections::{CONNECTIONS, authorized_connection, start_in_browser_as};
use crate::delegated_oauth::{
    APP_CALLBACK, Browser, authorize_url, confidential, exchange, hidden, location, param,
};
use crate::harness::{Backend, TestServer, api_error, json_with_status, oauth_error};
use crate::on_both_backends;
use keyward::domain::Role;
use keyward::domain::settings::{CONNECTION_OWNER_READS, CONNECTION_WEBHOOK_URL};
use keyward::store::AuditQuery;
use reqwest::Method;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

on_both_backends!(
    an_agent_exchanges_a_users_token_for_their_connection_token,
    a_user_without_a_connection_gets_a_connect_link_that_works,
    provider_tokens_stay_in_keyward_unless_allowed,
    an_expiring_refresh_token_asks_the_user_before_it_dies,
);

const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";

/// An M2M client an admin allowed to exchange tokens: (id, secret).
async fn agent(s: &TestServer) -> (String, String) {
    let (id, secret) = s.m2m_client("viewer", 600).await;
    let admin = s.admin_token().await;
    let r = s.patch_m2m_client(&id, &admin, json!({"token_exchange": true})).await;
    assert_eq!(json_with_status(r, 200).await["token_exchange"], true);
    (id, secret)
}

/// A delegated client at `s`: (id, secret).
async fn app_client(s: &TestServer) -> (String, String) {
    let (id, secret) = s.register_client(confidential(APP_CALLBACK)).await;
    (id, secret.unwrap())
}

/// `username`'s access token from the app (a JWT, through the browser flow).
async fn user_jwt(s: &TestServer, app: &(String, String), username: &str, password: &str) -> String {
    user_jwt_asking(s, app, username, password, "&scope=api").await
}

/// The same, asking with `extra` (scope, resource).
async fn user_jwt_asking(
    s: &TestServer,
    app: &(String, String),
    username: &str,
    password: &str,
    extra: &str,
) -> String {
    let (url, verifier) = authorize_url(s, &app.0, APP_CALLBACK, extra);
    let browser = Browser::new();
    let signed_in = browser.sign_in(s, &url, username, password).await;
    assert_eq!(signed_in.status(), 303);
    let page = browser.get(&s.url(&location(&signed_in))).await;
    let back = if page.status() == 303 {
        location(&page)
    } else {
        browser.consent(s, &page.text().await.unwrap(), "approve").await
    };
    let code = param(&back, "code").expect("a code");
    let r = exchange(s, &app.0, &app.1, &code, APP_CALLBACK, Some(&verifier)).await;
    json_with_status(r, 200).await["access_token"].as_str().unwrap().to_string()
}

/// A token exchange by `agent` with `extra` fields.
async fn exchange_as(s: &TestServer, agent: &(String, String), extra: &[(&str, &str)]) -> reqwest::Response {
    let mut form = vec![("grant_type", EXCHANGE), ("client_id", &agent.0), ("client_secret", &agent.1)];
    form.extend_from_slice(extra);
    s.token_request(&form).await
}

async fn exchange_for(
    s: &TestServer,
    agent: &(String, String),
    subject: &str,
    target: (&str, &str),
) -> reqwest::Response {
    exchange_as(s, agent, &[("subject_token", subject), ("subject_token_type", ACCESS_TOKEN), target]).await
}

/// keyward with the admin's authorized connection to a provider (another
/// keyward): (keyward, provider, connection id, admin token, outbound client id).
async fn with_a_connection(backend: Backend) -> (TestServer, TestServer, String, String, String) {
    let s = TestServer::start(backend).await;
    let provider = TestServer::start_at(backend, "127.0.0.2").await;
    let (connection, _) = authorized_connection(&s, &provider, 60_000).await;
    let admin = s.admin_token().await;
    let outbound = view_of(&s, &admin, &connection).await["outbound_client_id"].as_str().unwrap().to_string();
    (s, provider, connection, admin, outbound)
}

/// A connection as the API shows it to `token`.
async fn view_of(s: &TestServer, token: &str, connection: &str) -> Value {
    json_with_status(s.get(&format!("{CONNECTIONS}{connection}/"), token).send().await.unwrap(), 200).await
}

async fn audit_of(s: &TestServer, action: &str) -> Vec<keyward::domain::audit::AuditRecord> {
    s.app.audit.flush().await;
    let q = AuditQuery { action: Some(action.into()), limit: 100, ..Default::default() };
    s.app.store.audit_events(&q).await.unwrap()
}

async fn an_agent_exchanges_a_users_token_for_their_connection_token(backend: Backend) {
    let (s, provider, connection, _, outbound) = with_a_connection(backend).await;
    let agent = agent(&s).await;
    let app = app_client(&s).await;
    let subject = user_jwt(&s, &app, "admin", crate::harness::ADMIN_PASSWORD).await;

    // By outbound client, by connection id, by the connection's URL, by the API's URL.
    let at_keyward = format!("{}{CONNECTIONS}{connection}/", s.app.issuer);
    let api = format!("{}/", provider.base);
    for target in [
        ("audience", outbound.as_str()),
        ("audience", &connection),
        ("resource", &at_keyward),
        ("resource", &api),
    ] {
        let got = json_with_status(exchange_for(&s, &agent, &subject, target).await, 200).await;
        assert_eq!(got["issued_token_type"], ACCESS_TOKEN, "{target:?}");
        assert_eq!(got["token_type"], "Bearer");
        assert!(got.get("refresh_token").is_none());
        // The provider token's real expiry: a minute, less what has passed.
        let expires_in = got["expires_in"].as_i64().unwrap();
        assert!((50..=60).contains(&expires_in), "{expires_in}");
        // It is the provider's token, and it works there.
        let provider_token = got["access_token"].as_str().unwrap();
        assert_eq!(provider.app.introspect(provider_token).await.unwrap()["active"], true);
        let r =
            provider.http.get(provider.url(CONNECTIONS)).bearer_auth(provider_token).send().await.unwrap();
        assert_eq!(r.status(), 200, "the provider accepts the exchanged token");
    }
    let exchanged = audit_of(&s, "connection.token_exchanged").await;
    assert_eq!(exchanged.len(), 4);
    assert_eq!(exchanged[0].actor, format!("client:{}", agent.0));
    assert_eq!(exchanged[0].detail["subject_token_client_id"], app.0);
    assert_eq!(exchanged[0].detail["for_user"], s.user_named("admin").await.id);

    // Refusals, each with the code a client library understands.
    let target = ("audience", outbound.as_str());
    let (stranger, stranger_secret) = s.m2m_client("viewer", 600).await;
    let r = exchange_for(&s, &(stranger.clone(), stranger_secret.clone()), &subject, target).await;
    assert!(oauth_error(r, 400, "unauthorized_client").await.contains("token_exchange"));
    let r = exchange_for(&s, &(agent.0.clone(), "wrong".into()), &subject, target).await;
    oauth_error(r, 401, "invalid_client").await;
    // No client at all; a field twice.
    let form =
        [("grant_type", EXCHANGE), ("subject_token", &subject), ("subject_token_type", ACCESS_TOKEN), target];
    oauth_error(s.token_request(&form).await, 401, "invalid_client").await;
    let twice = [
        ("subject_token", subject.as_str()),
        ("subject_token", subject.as_str()),
        ("subject_token_type", ACCESS_TOKEN),
        target,
    ];
    assert!(
        oauth_error(exchange_as(&s, &agent, &twice).await, 400, "invalid_request")
            .await
            .contains("more than once")
    );
    // Only a server admin allows an agent.
    let catalog_admin = s.token_for_role(Role::CatalogAdmin).await;
    let r = s.patch_m2m_client(&stranger, &catalog_admin, json!({"token_exchange": true})).await;
    api_error(r, 403, "forbidden").await;
    assert!(!s.app.m2m_client(&stranger).await.unwrap().token_exchange);
    let r = exchange_as(
        &s,
        &agent,
        &[
            ("subject_token", &subject),
            ("subject_token_type", "urn:ietf:params:oauth:token-type:id_token"),
            target,
        ],
    )
    .await;
    oauth_error(r, 400, "invalid_request").await;
    let refresh_type = "urn:ietf:params:oauth:token-type:refresh_token";
    let r = exchange_as(
        &s,
        &agent,
        &[
            ("subject_token", &subject),
            ("subject_token_type", ACCESS_TOKEN),
            ("requested_token_type", refresh_type),
            target,
        ],
    )
    .await;
    oauth_error(r, 400, "invalid_request").await;
    let r = exchange_as(
        &s,
        &agent,
        &[
            ("subject_token", &subject),
            ("subject_token_type", ACCESS_TOKEN),
            ("actor_token", &subject),
            target,
        ],
    )
    .await;
    oauth_error(r, 400, "invalid_request").await;
    let r = exchange_as(&s, &agent, &[("subject_token_type", ACCESS_TOKEN), target]).await;
    oauth_error(r, 400, "invalid_request").await;
    // The agent's own token speaks for no user.
    let own = s.client_jwt(&agent.0, &agent.1).await;
    let r = exchange_for(&s, &agent, &own, target).await;
    assert!(oauth_error(r, 400, "invalid_grant").await.contains("client's own"));
    for forged in ["", "x.y.z", &format!("{subject}x")] {
        let r = exchange_for(&s, &agent, forged, target).await;
        let expected = if forged.is_empty() { "invalid_request" } else { "invalid_grant" };
        oauth_error(r, 400, expected).await;
    }
    // Targets: none, two, unknown, or another user's connection.
    let r =
        exchange_as(&s, &agent, &[("subject_token", &subject), ("subject_token_type", ACCESS_TOKEN)]).await;
    oauth_error(r, 400, "invalid_target").await;
    let r = exchange_as(
        &s,
        &agent,
        &[("subject_token", &subject), ("subject_token_type", ACCESS_TOKEN), target, ("resource", &api)],
    )
    .await;
    oauth_error(r, 400, "invalid_target").await;
    let r = exchange_for(&s, &agent, &subject, ("audience", "obc_nothing")).await;
    oauth_error(r, 400, "invalid_target").await;
    let r = exchange_for(&s, &agent, &subject, ("resource", "https://api.unknown.example/")).await;
    oauth_error(r, 400, "invalid_target").await;
    s.app
        .create_user(keyward::domain::Actor::System, "carol", Some("carol-password-1"), Role::Viewer)
        .await
        .unwrap();
    let carol = user_jwt(&s, &app, "carol", "carol-password-1").await;
    let r = exchange_for(&s, &agent, &carol, ("audience", &connection)).await;
    assert!(oauth_error(r, 400, "invalid_target").await.contains("no connection"));
    // Only tokens for keyward's own APIs with `api` are exchanged: one made
    // for another server (which could replay it) or narrower is refused.
    let mcp_only = user_jwt_asking(&s, &app, "admin", crate::harness::ADMIN_PASSWORD, "&scope=mcp").await;
    let r = exchange_for(&s, &agent, &mcp_only, target).await;
    assert!(oauth_error(r, 400, "invalid_grant").await.contains("api scope"));
    s.declare(crate::gateway::demo("http://127.0.0.1:9/")).await;
    let resource = format!(
        "&scope=tools:read&resource={}",
        url::form_urlencoded::byte_serialize(s.url("/r/demo").as_bytes()).collect::<String>()
    );
    let for_demo = user_jwt_asking(&s, &app, "admin", crate::harness::ADMIN_PASSWORD, &resource).await;
    let r = exchange_for(&s, &agent, &for_demo, target).await;
    assert!(oauth_error(r, 400, "invalid_grant").await.contains("(aud)"));
    // The platform's own client-credentials token is never exchanged.
    let (_machine_provider, machine, _) =
        crate::connections::provider_and_outbound(&s, backend, json!({})).await;
    let r = exchange_for(&s, &agent, &subject, ("audience", &machine)).await;
    assert!(oauth_error(r, 400, "invalid_target").await.contains("client credentials"));
    // A revoked subject token is refused.
    let revoke = [("token", subject.as_str()), ("client_id", &app.0), ("client_secret", &app.1)];
    assert_eq!(s.http.post(s.url("/oauth/v2/revoke/")).form(&revoke).send().await.unwrap().status(), 200);
    let r = exchange_for(&s, &agent, &subject, target).await;
    assert!(oauth_error(r, 400, "invalid_grant").await.contains("revoked"));
    // The grant is advertised.
    let metadata = json_with_status(
        s.http.get(s.url("/.well-known/oauth-authorization-server")).send().await.unwrap(),
        200,
    )
    .await;
    assert!(metadata["grant_types_supported"].as_array().unwrap().contains(&json!(EXCHANGE)));
    // Nothing an agent exchanged is stored in the clear.
    assert!(!crate::harness::database_dump(&s).contains(&subject));
}

async fn a_user_without_a_connection_gets_a_connect_link_that_works(backend: Backend) {
    // The admin's connection makes the outbound client; dave has none.
    let (s, provider, _, admin, outbound) = with_a_connection(backend).await;
    let dave = s
        .app
        .create_user(keyward::domain::Actor::System, "dave", Some("dave-password-1"), Role::Viewer)
        .await
        .unwrap();
    let agent = agent(&s).await;
    let app = app_client(&s).await;
    let subject = user_jwt(&s, &app, "dave", "dave-password-1").await;
    // Agents asking at the same moment make one connection for dave.
    let asked = (0..50).map(|_| {
        let form = [
            ("grant_type", EXCHANGE.to_string()),
            ("client_id", agent.0.clone()),
            ("client_secret", agent.1.clone()),
            ("subject_token", subject.clone()),
            ("subject_token_type", ACCESS_TOKEN.to_string()),
            ("audience", outbound.clone()),
        ];
        let request = s.http.post(s.url("/oauth/v2/token/")).form(&form);
        async move { request.send().await.unwrap() }
    });
    for r in crate::connections::futures_join_all(asked).await {
        assert_eq!(json_with_status(r, 400).await["error"], "authorization_required");
    }
    assert_eq!(s.app.store.connections_of(dave.id).await.unwrap().len(), 1);

    let r = exchange_for(&s, &agent, &subject, ("audience", &outbound)).await;
    assert_eq!(r.headers()["cache-control"], "no-store");
    let refused = json_with_status(r, 400).await;
    assert_eq!(refused["error"], "authorization_required", "{refused}");
    let link = refused["connect_uri"].as_str().unwrap().to_string();
    let pending = refused["connection_id"].as_str().unwrap().to_string();
    assert!(link.starts_with(&s.url(keyward::app::START_PATH)), "{link}");
    assert_eq!(refused["expires_in"], 600);
    // The pending connection is dave's, visible to him.
    let dave_token = s.token_for(&dave).await;
    let listed = json_with_status(s.get(CONNECTIONS, &dave_token).send().await.unwrap(), 200).await;
    assert_eq!(listed[0]["id"], pending.as_str());
    assert_eq!(listed[0]["status"], "pending");
    // Asked again, the agent gets a new link for the same connection.
    let again =
        json_with_status(exchange_for(&s, &agent, &subject, ("audience", &outbound)).await, 400).await;
    assert_eq!(again["connection_id"], pending.as_str());

    // The link leads nowhere in someone else's browser.
    let admins_browser = Browser::new();
    let r = admins_browser.get(&link).await;
    let html = r.text().await.unwrap();
    let signed_in = admins_browser.sign_in(&s, &link, "admin", crate::harness::ADMIN_PASSWORD).await;
    assert_eq!(signed_in.status(), 303, "{html}");
    assert_eq!(admins_browser.get(&link).await.status(), 403);
    // In dave's, he is told which agent asks for which provider, and
    // confirms (a forged or cancelled answer changes nothing).
    let browser = Browser::new();
    let signed_in = browser.sign_in(&s, &link, "dave", "dave-password-1").await;
    assert_eq!(signed_in.status(), 303);
    let page = browser.get(&link).await;
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains(&provider.base), "the confirmation may lead on to the provider: {csp}");
    let html = page.text().await.unwrap();
    assert!(html.contains("test client") && html.contains("Keyward provider"), "{html}");
    let confirm = |csrf: String, decision: &'static str| {
        let form = [("state", hidden(&html, "state")), ("csrf", csrf), ("decision", decision.to_string())];
        browser.client().post(s.url(keyward::app::START_PATH)).form(&form).send()
    };
    assert_eq!(confirm("forged".into(), "continue").await.unwrap().status(), 403);
    let cancelled = confirm(hidden(&html, "csrf"), "cancel").await.unwrap();
    assert_eq!(cancelled.status(), 200);
    assert!(cancelled.text().await.unwrap().contains("Nothing was connected"));
    let r = admins_browser
        .client()
        .post(s.url(keyward::app::START_PATH))
        .form(&[
            ("state", hidden(&html, "state")),
            ("csrf", hidden(&html, "csrf")),
            ("decision", "continue".to_string()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "another user's session cannot answer for dave");
    // Cancelled, the link is used up, and the refusal recorded.
    assert_eq!(browser.get(&link).await.status(), 400);
    assert_eq!(audit_of(&s, "connection.authorization_declined").await.len(), 1);
    // An app holding dave's token cannot skip the question by asking for
    // the link itself: it is named too.
    let r = s
        .http
        .get(s.url(&format!("{CONNECTIONS}{pending}/authorize/")))
        .bearer_auth(&subject)
        .send()
        .await
        .unwrap();
    let by_app = json_with_status(r, 200).await["authorization_url"].as_str().unwrap().to_string();
    let page = browser.get(&by_app).await;
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Reporting App"));
    // The agent's other link, confirmed this time.
    let link = again["connect_uri"].as_str().unwrap().to_string();
    let html = browser.get(&link).await.text().await.unwrap();
    let confirm = |csrf: String, decision: &'static str| {
        let form = [("state", hidden(&html, "state")), ("csrf", csrf), ("decision", decision.to_string())];
        browser.client().post(s.url(keyward::app::START_PATH)).form(&form).send()
    };
    let continued = confirm(hidden(&html, "csrf"), "continue").await.unwrap();
    assert_eq!(continued.status(), 303);
    let to_provider = location(&continued);
    assert!(to_provider.starts_with(&provider.base), "{to_provider}");
    // On its way: the link no longer asks, and cannot be cancelled now.
    assert_eq!(browser.get(&link).await.status(), 400);
    assert_eq!(confirm(hidden(&html, "csrf"), "cancel").await.unwrap().status(), 400);
    let back = browser.authorize(&provider, &to_provider).await;
    assert_eq!(browser.get(&back).await.status(), 200);
    let got = view_of(&s, &dave_token, &pending).await;
    assert_eq!(got["status"], "active");
    // Single use.
    assert_eq!(browser.get(&link).await.status(), 400);
    // Now the agent gets dave's token.
    let got = json_with_status(exchange_for(&s, &agent, &subject, ("audience", &outbound)).await, 200).await;
    assert_eq!(provider.app.introspect(got["access_token"].as_str().unwrap()).await.unwrap()["active"], true);
    // A revoked connection needs dave again.
    let r =
        s.send(Method::POST, &format!("{CONNECTIONS}{pending}/revoke/"), &dave_token).send().await.unwrap();
    json_with_status(r, 200).await;
    let again =
        json_with_status(exchange_for(&s, &agent, &subject, ("audience", &outbound)).await, 400).await;
    assert_eq!(
        (again["error"].as_str(), again["connection_id"].as_str()),
        (Some("authorization_required"), Some(pending.as_str()))
    );
    let started = audit_of(&s, "connection.authorization_started").await;
    assert!(started.iter().any(|e| e.actor == format!("client:{}", agent.0)));
    // An agent no longer allowed: its links lead nowhere.
    let fresh = again["connect_uri"].as_str().unwrap();
    let r = s.patch_m2m_client(&agent.0, &admin, json!({"token_exchange": false})).await;
    json_with_status(r, 200).await;
    let r = browser.get(fresh).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("may no longer use it"));
}

async fn provider_tokens_stay_in_keyward_unless_allowed(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (provider, outbound, _) = crate::connections::provider_and_outbound(&s, backend, json!({})).await;
    s.set(CONNECTION_OWNER_READS, "false").await;
    let admin = s.admin_token().await;
    let id = crate::connections::connect(&s, &admin, &outbound).await;
    let token_path = format!("{CONNECTIONS}{id}/token/");
    let refused = api_error(s.get(&token_path, &admin).send().await.unwrap(), 403, "forbidden").await;
    assert!(refused.contains("owners_read_tokens") && refused.contains("proxy"), "{refused}");
    // The proxy still uses it, and never shows it.
    let r = s.get(&format!("{CONNECTIONS}{id}/proxy/.well-known/jwks.json"), &admin).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // A service identity reads it, audited with the user it belongs to.
    let (service, secret) = s.m2m_client("viewer", 600).await;
    s.app
        .update_m2m_client(
            keyward::domain::Actor::System,
            &service,
            keyward::app::ClientPatch { is_service: Some(true), ..Default::default() },
        )
        .await
        .unwrap();
    let service_jwt = s.client_jwt(&service, &secret).await;
    let got = s.http.get(s.url(&token_path)).bearer_auth(&service_jwt).send().await.unwrap();
    let token = json_with_status(got, 200).await;
    assert_eq!(
        provider.app.introspect(token["access_token"].as_str().unwrap()).await.unwrap()["active"],
        true
    );
    let reads = audit_of(&s, "connection.token_read_by_service").await;
    assert_eq!(reads.len(), 1);
    assert_eq!(reads[0].detail["for_user"], s.user_named("admin").await.id);
    // Allowed by an admin, the owner reads it too, audited.
    s.set(CONNECTION_OWNER_READS, "true").await;
    json_with_status(s.get(&token_path, &admin).send().await.unwrap(), 200).await;
    assert_eq!(audit_of(&s, "connection.token_read").await.len(), 1);
    // The API never echoes a token in a connection's view or list.
    for path in [format!("{CONNECTIONS}{id}/"), CONNECTIONS.to_string()] {
        let body = s.get(&path, &admin).send().await.unwrap().text().await.unwrap();
        assert!(!body.contains(token["access_token"].as_str().unwrap()), "{path}");
    }
}

/// A webhook receiver: the events it got, in order.
async fn webhook(s: &TestServer) -> Arc<Mutex<Vec<Value>>> {
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let record = received.clone();
    let hook = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| {
            let record = record.clone();
            async move {
                record.lock().unwrap().push(serde_json::from_str(&body).unwrap());
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, hook).await.unwrap() });
    s.set(CONNECTION_WEBHOOK_URL, &format!("http://{addr}/hook")).await;
    received
}

async fn wait_for_event(received: &Arc<Mutex<Vec<Value>>>, event: &str) -> Value {
    for _ in 0..200 {
        if let Some(found) = received.lock().unwrap().iter().find(|e| e["event"] == event).cloned() {
            return found;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("no {event} webhook among {:?}", received.lock().unwrap());
}

async fn an_expiring_refresh_token_asks_the_user_before_it_dies(backend: Backend) {
    let s = TestServer::start(backend).await;
    let received = webhook(&s).await;
    let provider = TestServer::start_at(backend, "127.0.0.2").await;
    let (connection, _) = authorized_connection(&s, &provider, 60_000).await;
    let active = wait_for_event(&received, "connection.active").await;
    assert_eq!(
        (active["connection_id"].as_str(), active["status"].as_str()),
        (Some(connection.as_str()), Some("active"))
    );
    let admin = s.admin_token().await;
    let view = view_of(&s, &admin, &connection).await;
    let outbound = view["outbound_client_id"].as_str().unwrap().to_string();
    // Two minutes of refresh token lifetime from now on: within the next
    // sweep's reach once a new refresh token comes.
    let r = s
        .send(Method::PATCH, &format!("/admin/api/outbound_clients/{outbound}/"), &admin)
        .json(&json!({"refresh_token_lifetime_ms": 90_000}))
        .send()
        .await
        .unwrap();
    json_with_status(r, 200).await;
    // A sweep with no refresh token known to expire changes nothing.
    s.app.sweep_connections().await.unwrap();
    let view = view_of(&s, &admin, &connection).await;
    assert_eq!(view["status"], "active");
    // Authorized again under the new lifetime: its refresh token dies in
    // 90 s, before the round after next, so the sweep asks the user now.
    let started = json_with_status(
        s.get(&format!("{CONNECTIONS}{connection}/authorize/"), &admin).send().await.unwrap(),
        200,
    )
    .await;
    let browser = Browser::new();
    let to_provider = start_in_browser_as(
        &browser,
        &s,
        started["authorization_url"].as_str().unwrap(),
        "admin",
        crate::harness::ADMIN_PASSWORD,
    )
    .await;
    let back = browser.authorize(&provider, &to_provider).await;
    assert_eq!(browser.get(&back).await.status(), 200);
    // Two nodes sweeping at once: one change, one notice.
    let other = s.another_node().await;
    let (a, b) = tokio::join!(s.app.sweep_connections(), other.app.sweep_connections());
    a.unwrap();
    b.unwrap();
    let view = view_of(&s, &admin, &connection).await;
    assert_eq!(view["status"], "needs_reauth");
    assert!(view["status_detail"].as_str().unwrap().contains("refresh_token_lifetime_ms"), "{view}");
    let notice = wait_for_event(&received, "connection.needs_reauth").await;
    assert_eq!(notice["connection_id"], connection.as_str());
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let notices = received.lock().unwrap().iter().filter(|e| e["event"] == "connection.needs_reauth").count();
    assert_eq!(notices, 1);
    // Meanwhile the access token it holds still works.
    let token = json_with_status(
        s.get(&format!("{CONNECTIONS}{connection}/token/"), &admin).send().await.unwrap(),
        200,
    )
    .await;
    assert_eq!(
        provider.app.introspect(token["access_token"].as_str().unwrap()).await.unwrap()["active"],
        true
    );
    // Revoked: the webhook says so too.
    let r = s.send(Method::POST, &format!("{CONNECTIONS}{connection}/revoke/"), &admin).send().await.unwrap();
    assert_eq!(json_with_status(r, 200).await["status"], "revoked");
    wait_for_event(&received, "connection.revoked").await;
}
