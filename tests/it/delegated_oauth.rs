//! Delegated OAuth (SPEC §1.1, §3): registration, authorization code + PKCE
//! through the login and consent pages, refresh rotation, and each security
//! invariant. Flows are driven by the `oauth2` crate and a cookie-keeping
//! HTTP client standing in for the browser.

use crate::harness::{
    ADMIN_PASSWORD, Backend, TestServer, api_error, json_with_status, oauth_error, oauth2_http as send,
};
use crate::on_both_backends;
use keyward::domain::Actor;
use oauth2::basic::BasicClient;
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, PkceCodeChallenge, RedirectUrl,
    Scope, TokenResponse, TokenUrl,
};
use reqwest::Method;
use serde_json::{Value, json};

pub(crate) const REGISTER: &str = "/oauth/v1/register/";
pub(crate) const APP_CALLBACK: &str = "https://app.example/oauth/callback";

/// A browser: keeps cookies, does not follow redirects.
pub struct Browser {
    http: reqwest::Client,
}

fn html_unescape(s: &str) -> String {
    s.replace("&#38;", "&")
        .replace("&amp;", "&")
        .replace("&#34;", "\"")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
}

/// The value of hidden input `name` in a page.
pub(crate) fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).unwrap_or_else(|| panic!("no {name} field in {html}")) + marker.len();
    let end = start + html[start..].find('"').unwrap();
    html_unescape(&html[start..end])
}

pub(crate) fn location(r: &reqwest::Response) -> String {
    r.headers()
        .get("location")
        .unwrap_or_else(|| panic!("no redirect: {}", r.status()))
        .to_str()
        .unwrap()
        .to_string()
}

/// A query parameter of a URL.
pub(crate) fn param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url).unwrap().query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// Where a browser's forms go: one server, or one node of several.
pub trait Site {
    fn url(&self, path: &str) -> String;
}

impl Site for TestServer {
    fn url(&self, path: &str) -> String {
        TestServer::url(self, path)
    }
}

impl Browser {
    pub fn new() -> Self {
        Browser {
            http: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        }
    }

    /// The browser's HTTP client (its cookies), for requests a form cannot make.
    pub fn client(&self) -> &reqwest::Client {
        &self.http
    }

    pub async fn get(&self, url: &str) -> reqwest::Response {
        self.http.get(url).send().await.unwrap()
    }

    /// Signs in on the login page `authorize_url` shows; the response that follows.
    pub async fn sign_in(
        &self,
        s: &impl Site,
        authorize_url: &str,
        username: &str,
        password: &str,
    ) -> reqwest::Response {
        let page = self.get(authorize_url).await;
        assert_eq!(page.status(), 200, "login page");
        let html = page.text().await.unwrap();
        assert!(html.contains("Sign in"), "{html}");
        let form = [
            ("username", username),
            ("password", password),
            ("csrf", &hidden(&html, "csrf")),
            ("return_to", &hidden(&html, "return_to")),
        ];
        self.http.post(s.url("/oauth/v1/login/")).form(&form).send().await.unwrap()
    }

    /// Signs in, approves consent, and returns the redirect back to the app.
    /// Signs in (unless this browser already is), approves consent (unless
    /// it is remembered), and returns the redirect back to the app.
    pub async fn authorize(&self, s: &impl Site, authorize_url: &str) -> String {
        let mut next = self.get(authorize_url).await;
        if next.status() == 200 {
            let html = next.text().await.unwrap();
            if !html.contains("Sign in") {
                assert!(html.contains("Allow"), "consent page: {html}");
                return self.consent(s, &html, "approve").await;
            }
            let r = self.sign_in(s, authorize_url, "admin", ADMIN_PASSWORD).await;
            assert_eq!(r.status(), 303, "signed in");
            next = self.get(&s.url(&location(&r))).await;
        }
        if next.status() == 303 {
            return location(&next); // consent remembered
        }
        assert_eq!(next.status(), 200);
        let html = next.text().await.unwrap();
        assert!(html.contains("Allow"), "consent page: {html}");
        self.consent(s, &html, "approve").await
    }

    pub async fn consent(&self, s: &impl Site, html: &str, decision: &str) -> String {
        let form = [
            ("csrf", hidden(html, "csrf")),
            ("request", hidden(html, "request")),
            ("decision", decision.to_string()),
        ];
        let r = self.http.post(s.url("/oauth/v1/authorize/")).form(&form).send().await.unwrap();
        assert_eq!(r.status(), 303, "consent answered");
        location(&r)
    }
}

impl TestServer {
    /// Registers a delegated client; (client_id, client_secret).
    pub async fn register_client(&self, body: Value) -> (String, Option<String>) {
        let token = self.admin_token().await;
        let r = self.send(Method::POST, REGISTER, &token).json(&body).send().await.unwrap();
        let created = json_with_status(r, 201).await;
        (
            created["client_id"].as_str().unwrap().to_string(),
            created["client_secret"].as_str().map(str::to_string),
        )
    }

    fn oauth2_client(
        &self,
        id: &str,
        secret: Option<&str>,
        redirect: &str,
    ) -> oauth2::Client<
        oauth2::basic::BasicErrorResponse,
        oauth2::basic::BasicTokenResponse,
        oauth2::basic::BasicTokenIntrospectionResponse,
        oauth2::StandardRevocableToken,
        oauth2::basic::BasicRevocationErrorResponse,
        oauth2::EndpointSet,
        oauth2::EndpointNotSet,
        oauth2::EndpointNotSet,
        oauth2::EndpointNotSet,
        oauth2::EndpointSet,
    > {
        let mut client = BasicClient::new(ClientId::new(id.to_string()))
            .set_auth_uri(AuthUrl::new(self.url("/oauth/v1/authorize/")).unwrap())
            .set_token_uri(TokenUrl::new(self.url("/oauth/v1/token/")).unwrap())
            .set_redirect_uri(RedirectUrl::new(redirect.to_string()).unwrap());
        match secret {
            Some(secret) => client = client.set_client_secret(ClientSecret::new(secret.to_string())),
            None => client = client.set_auth_type(AuthType::RequestBody),
        }
        client
    }
}

/// An authorization request for `api` and a refresh token, with PKCE.
fn with_refresh_token(
    request: oauth2::AuthorizationRequest<'_>,
    challenge: PkceCodeChallenge,
) -> oauth2::AuthorizationRequest<'_> {
    request
        .add_scope(Scope::new("api".into()))
        .add_scope(Scope::new("offline_access".into()))
        .set_pkce_challenge(challenge)
}

pub(crate) fn confidential(redirect: &str) -> Value {
    json!({"name": "Reporting App", "redirect_uris": [redirect], "grant_type": "confidential",
           "refresh_token_lifetime": 2592000, "access_token_lifetime": 3600, "pkce_enabled": true})
}

pub(crate) fn public(redirect: &str) -> Value {
    json!({"name": "Desktop App", "redirect_uris": [redirect], "grant_type": "public",
           "refresh_token_lifetime": 259200, "access_token_lifetime": 7200, "pkce_enabled": false})
}

async fn registration(backend: Backend) {
    let s = TestServer::start(backend).await;
    let token = s.admin_token().await;
    // The reference's example payload.
    let r = s.send(Method::POST, REGISTER, &token).json(&json!({
        "name": "My Application", "redirect_uris": ["https://your-app.com/oauth/callback"], "grant_type": "confidential",
        "refresh_token_lifetime": 2592000, "access_token_lifetime": 3600, "pkce_enabled": true
    })).send().await.unwrap();
    assert_eq!(r.headers()["cache-control"], "no-store");
    let created = json_with_status(r, 201).await;
    let id = created["client_id"].as_str().unwrap().to_string();
    assert!(created["client_secret"].as_str().unwrap().starts_with("kwcs_"));
    // Public clients: no secret, PKCE forced on; presets expand.
    let mut body = public("http://127.0.0.1/callback");
    body["redirect_uri_presets"] = json!(["vscode", "claude", "chatgpt"]);
    let created_public =
        json_with_status(s.send(Method::POST, REGISTER, &token).json(&body).send().await.unwrap(), 201).await;
    assert!(created_public.get("client_secret").is_none());
    assert_eq!(created_public["pkce_enabled"], true);
    let uris = created_public["redirect_uris"].to_string();
    for known in [
        "https://vscode.dev/redirect",
        "https://claude.ai/api/mcp/auth_callback",
        "https://claude.com/api/mcp/auth_callback",
        "https://chatgpt.com/connector_platform_oauth_redirect",
    ] {
        assert!(uris.contains(known), "{known}");
    }
    let presets =
        json_with_status(s.get("/oauth/v1/register/presets/", &token).send().await.unwrap(), 200).await;
    let names: Vec<&str> = presets.as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["vscode", "claude", "claude-code", "chatgpt", "mcp-inspector"]);

    let list = json_with_status(s.get(REGISTER, &token).send().await.unwrap(), 200).await;
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert!(!list.to_string().contains("kwcs_"));
    let path = format!("{REGISTER}{id}/");
    let mut replaced = confidential("https://your-app.com/new-callback");
    replaced["name"] = json!("Renamed");
    let got =
        json_with_status(s.send(Method::PUT, &path, &token).json(&replaced).send().await.unwrap(), 200).await;
    assert_eq!(
        (got["name"].clone(), got["redirect_uris"].clone()),
        (json!("Renamed"), json!(["https://your-app.com/new-callback"]))
    );
    let rotated = json_with_status(
        s.send(Method::POST, &format!("{path}rotate_secret/"), &token).send().await.unwrap(),
        200,
    )
    .await;
    assert!(rotated["client_secret"].as_str().unwrap().starts_with("kwcs_"));
    assert_eq!(s.send(Method::DELETE, &path, &token).send().await.unwrap().status(), 204);
    api_error(s.get(&path, &token).send().await.unwrap(), 404, "not_found").await;
}

async fn registration_refuses_bad_input(backend: Backend) {
    let s = TestServer::start(backend).await;
    let token = s.admin_token().await;
    let post = |body: Value| s.send(Method::POST, REGISTER, &token).json(&body).send();
    for (field, value, expected) in [
        ("refresh_token_lifetime", json!(259199), "259200"),
        ("refresh_token_lifetime", json!(15552001), "15552000"),
        ("access_token_lifetime", json!(3599), "3600"),
        ("access_token_lifetime", json!(259201), "259200"),
    ] {
        let mut body = confidential(APP_CALLBACK);
        body[field] = value;
        let d = api_error(post(body).await.unwrap(), 400, "invalid_request").await;
        assert!(d.contains(field) && d.contains(expected), "{field}: {d}");
    }
    for uri in ["http://app.example/cb", "https://app.example/cb#x", "/relative", "javascript:alert(1)"] {
        let d = api_error(post(confidential(uri)).await.unwrap(), 400, "invalid_request").await;
        assert!(d.contains("redirect URI"), "{uri}: {d}");
    }
    let mut body = confidential(APP_CALLBACK);
    body["grant_type"] = json!("implicit");
    api_error(post(body).await.unwrap(), 400, "invalid_request").await;
    let mut body = confidential(APP_CALLBACK);
    body["redirect_uri_presets"] = json!(["netscape"]);
    api_error(post(body).await.unwrap(), 400, "invalid_request").await;
    api_error(post(json!({"name": "x"})).await.unwrap(), 400, "invalid_request").await;
    let (public_id, _) = s.register_client(public("http://127.0.0.1/cb")).await;
    let r =
        s.send(Method::POST, &format!("{REGISTER}{public_id}/rotate_secret/"), &token).send().await.unwrap();
    api_error(r, 400, "invalid_request").await;
    let r = s
        .send(Method::PUT, &format!("{REGISTER}{public_id}/"), &token)
        .json(&confidential(APP_CALLBACK))
        .send()
        .await
        .unwrap();
    api_error(r, 400, "invalid_request").await;
    let viewer = s.token_for_role(keyward::domain::Role::CatalogAdmin).await;
    api_error(
        s.send(Method::POST, REGISTER, &viewer).json(&confidential(APP_CALLBACK)).send().await.unwrap(),
        403,
        "forbidden",
    )
    .await;
    assert_eq!(
        json_with_status(s.get(REGISTER, &token).send().await.unwrap(), 200).await.as_array().unwrap().len(),
        1
    );
}

async fn confidential_flow_with_the_oauth2_crate(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (id, secret) = s.register_client(confidential(APP_CALLBACK)).await;
    let client = s.oauth2_client(&id, secret.as_deref(), APP_CALLBACK);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state) = with_refresh_token(client.authorize_url(CsrfToken::new_random), challenge).url();
    let browser = Browser::new();
    let back = browser.authorize(&s, url.as_str()).await;
    assert!(back.starts_with(APP_CALLBACK), "{back}");
    assert_eq!(param(&back, "state").as_deref(), Some(state.secret().as_str()));
    assert_eq!(param(&back, "iss").as_deref(), Some(s.app.issuer.as_str()), "RFC 9207 iss");
    let code = param(&back, "code").unwrap();

    let token = client
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(verifier)
        .request_async(&send)
        .await
        .expect("code exchanged");
    assert_eq!(token.expires_in().unwrap().as_secs(), 3600);
    let access = token.access_token().secret().clone();
    let intro = s.app.introspect(&access).await.unwrap();
    let admin = s.user_named("admin").await;
    assert_eq!(intro["sub"], admin.id.to_string());
    assert_eq!(intro["client_id"], id.as_str());
    assert_eq!(intro["scope"], "api offline_access");
    assert_eq!(intro["role"], "server_admin");
    json_with_status(s.http.get(s.url("/admin/api/users/")).bearer_auth(&access).send().await.unwrap(), 200)
        .await;

    // Refresh rotates.
    let refresh = token.refresh_token().unwrap().clone();
    let refreshed = client.exchange_refresh_token(&refresh).request_async(&send).await.expect("refreshed");
    let new_refresh = refreshed.refresh_token().unwrap().clone();
    assert_ne!(new_refresh.secret(), refresh.secret());
    // The second authorization skips the consent page: it is remembered.
    let (challenge, _) = PkceCodeChallenge::new_random_sha256();
    let (url, _) = with_refresh_token(client.authorize_url(CsrfToken::new_random), challenge).url();
    let again = browser.get(url.as_str()).await;
    assert_eq!(again.status(), 303);
    assert!(location(&again).starts_with(APP_CALLBACK));
}

async fn public_client_with_a_loopback_port(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (id, _) = s.register_client(public("http://127.0.0.1/callback")).await;
    // RFC 8252 §7.3: the app listens on whatever port it got.
    let redirect = "http://127.0.0.1:54321/callback";
    let client = s.oauth2_client(&id, None, redirect);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, _) = with_refresh_token(client.authorize_url(CsrfToken::new_random), challenge).url();
    let back = Browser::new().authorize(&s, url.as_str()).await;
    assert!(back.starts_with(redirect), "{back}");
    let code = param(&back, "code").unwrap();
    let token = client
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(verifier)
        .request_async(&send)
        .await
        .expect("public exchange");
    assert_eq!(token.expires_in().unwrap().as_secs(), 7200);
    let refreshed = client
        .exchange_refresh_token(token.refresh_token().unwrap())
        .request_async(&send)
        .await
        .expect("public refresh");
    assert_ne!(refreshed.refresh_token().unwrap().secret(), token.refresh_token().unwrap().secret());
    // Another path on loopback is not the registered URI.
    let bad = format!(
        "{}?response_type=code&client_id={id}&redirect_uri=http://127.0.0.1:54321/other&code_challenge={}&code_challenge_method=S256",
        s.url("/oauth/v1/authorize/"),
        "a".repeat(43)
    );
    let r = Browser::new().get(&bad).await;
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("location").is_none());
}

/// An authorization URL for `client_id` with PKCE; (url, verifier).
pub(crate) fn authorize_url(s: &impl Site, client_id: &str, redirect: &str, extra: &str) -> (String, String) {
    let verifier = keyward::crypto::random_string::<32>();
    let challenge = {
        use base64::Engine;
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref())
    };
    let url = format!(
        "{}?response_type=code&client_id={client_id}&redirect_uri={}&state=xyz&code_challenge={challenge}&code_challenge_method=S256{extra}",
        s.url("/oauth/v1/authorize/"),
        url::form_urlencoded::byte_serialize(redirect.as_bytes()).collect::<String>()
    );
    (url, verifier)
}

/// A code for a grant with a refresh token (`offline_access`).
pub(crate) async fn code_for(s: &impl Site, client_id: &str, redirect: &str) -> (String, String) {
    let (url, verifier) = authorize_url(s, client_id, redirect, "&scope=api%20mcp%20offline_access");
    let back = Browser::new().authorize(s, &url).await;
    (param(&back, "code").unwrap(), verifier)
}

pub(crate) async fn exchange(
    s: &TestServer,
    id: &str,
    secret: &str,
    code: &str,
    redirect: &str,
    verifier: Option<&str>,
) -> reqwest::Response {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect),
        ("client_id", id),
        ("client_secret", secret),
    ];
    if let Some(v) = verifier {
        form.push(("code_verifier", v));
    }
    s.http.post(s.url("/oauth/v1/token/")).form(&form).send().await.unwrap()
}

pub(crate) async fn refresh_with(s: &TestServer, id: &str, secret: &str, refresh: &str) -> reqwest::Response {
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh),
        ("client_id", id),
        ("client_secret", secret),
    ];
    s.http.post(s.url("/oauth/v1/token/")).form(&form).send().await.unwrap()
}

async fn no_open_redirect(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (id, _) = s.register_client(confidential(APP_CALLBACK)).await;
    let browser = Browser::new();
    for (client, redirect) in [
        ("oac_unknown", APP_CALLBACK),
        (id.as_str(), "https://evil.example/cb"),
        (id.as_str(), "https://app.example/oauth/callback/x"),
        (id.as_str(), "https://app.example:444/oauth/callback"),
    ] {
        let (url, _) = authorize_url(&s, client, redirect, "");
        let r = browser.get(&url).await;
        assert_eq!(r.status(), 400, "{client} {redirect}");
        assert!(r.headers().get("location").is_none(), "never a redirect");
        assert!(r.text().await.unwrap().contains("Cannot continue"));
    }
    let r = browser.get(&s.url("/oauth/v1/authorize/?response_type=code")).await;
    assert_eq!(r.status(), 400);
}

async fn errors_after_validation_go_back_to_the_client(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (id, _) = s.register_client(public("http://127.0.0.1/cb")).await;
    let browser = Browser::new();
    let base =
        format!("{}?client_id={id}&redirect_uri=http://127.0.0.1/cb&state=s1", s.url("/oauth/v1/authorize/"));
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    for (extra, error) in [
        (
            format!("&response_type=token&code_challenge={challenge}&code_challenge_method=S256"),
            "unsupported_response_type",
        ),
        (
            format!("&response_type=code&code_challenge={challenge}&code_challenge_method=plain"),
            "invalid_request",
        ),
        (format!("&response_type=code&code_challenge={challenge}"), "invalid_request"),
        ("&response_type=code".to_string(), "invalid_request"),
        (
            format!("&response_type=code&code_challenge={challenge}&code_challenge_method=S256&scope=admin"),
            "invalid_scope",
        ),
        (
            format!(
                "&response_type=code&code_challenge={challenge}&code_challenge_method=S256&resource=nope"
            ),
            "invalid_target",
        ),
    ] {
        let r = browser.get(&format!("{base}{extra}")).await;
        assert_eq!(r.status(), 303, "{extra}");
        let to = location(&r);
        assert!(to.starts_with("http://127.0.0.1/cb?"), "{to}");
        assert_eq!(param(&to, "error").as_deref(), Some(error), "{extra}");
        assert_eq!(param(&to, "state").as_deref(), Some("s1"));
        assert_eq!(param(&to, "iss").as_deref(), Some(s.app.issuer.as_str()));
    }
}

async fn code_replay_revokes_what_it_issued(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (id, secret) = s.register_client(confidential(APP_CALLBACK)).await;
    let secret = secret.unwrap();
    let (code, verifier) = code_for(&s, &id, APP_CALLBACK).await;
    let first =
        json_with_status(exchange(&s, &id, &secret, &code, APP_CALLBACK, Some(&verifier)).await, 200).await;
    let access = first["access_token"].as_str().unwrap();
    json_with_status(s.http.get(s.url("/admin/api/users/")).bearer_auth(access).send().await.unwrap(), 200)
        .await;
    let d = oauth_error(
        exchange(&s, &id, &secret, &code, APP_CALLBACK, Some(&verifier)).await,
        400,
        "invalid_grant",
    )
    .await;
    assert!(d.contains("already used"), "{d}");
    api_error(
        s.http.get(s.url("/admin/api/users/")).bearer_auth(access).send().await.unwrap(),
        401,
        "unauthorized",
    )
    .await;
    oauth_error(
        refresh_with(&s, &id, &secret, first["refresh_token"].as_str().unwrap()).await,
        400,
        "invalid_grant",
    )
    .await;
}

async fn pkce_and_redirect_binding(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (id, secret) = s.register_client(confidential(APP_CALLBACK)).await;
    let secret = secret.unwrap();
    // Mismatch, and no verifier at all.
    let (code, _) = code_for(&s, &id, APP_CALLBACK).await;
    oauth_error(
        exchange(&s, &id, &secret, &code, APP_CALLBACK, Some(&"x".repeat(43))).await,
        400,
        "invalid_grant",
    )
    .await;
    let (code, _) = code_for(&s, &id, APP_CALLBACK).await;
    oauth_error(exchange(&s, &id, &secret, &code, APP_CALLBACK, None).await, 400, "invalid_grant").await;
    // Redirect URI swapped between authorize and token.
    let (code, verifier) = code_for(&s, &id, APP_CALLBACK).await;
    oauth_error(
        exchange(&s, &id, &secret, &code, "https://app.example/other", Some(&verifier)).await,
        400,
        "invalid_grant",
    )
    .await;
    // Another client cannot redeem it.
    let (other, other_secret) = s.register_client(confidential(APP_CALLBACK)).await;
    let (code, verifier) = code_for(&s, &id, APP_CALLBACK).await;
    oauth_error(
        exchange(&s, &other, &other_secret.unwrap(), &code, APP_CALLBACK, Some(&verifier)).await,
        400,
        "invalid_grant",
    )
    .await;
    json_with_status(exchange(&s, &id, &secret, &code, APP_CALLBACK, Some(&verifier)).await, 200).await;
    // Downgrade: a verifier where no challenge was made.
    let (no_pkce, no_pkce_secret) = s
        .register_client(
            json!({"name": "legacy", "redirect_uris": [APP_CALLBACK], "grant_type": "confidential",
        "refresh_token_lifetime": 259200, "access_token_lifetime": 3600, "pkce_enabled": false}),
        )
        .await;
    let url = format!(
        "{}?response_type=code&client_id={no_pkce}&redirect_uri={}&state=x",
        s.url("/oauth/v1/authorize/"),
        url::form_urlencoded::byte_serialize(APP_CALLBACK.as_bytes()).collect::<String>()
    );
    let back = Browser::new().authorize(&s, &url).await;
    let code = param(&back, "code").unwrap();
    oauth_error(
        exchange(
            &s,
            &no_pkce,
            no_pkce_secret.as_deref().unwrap(),
            &code,
            APP_CALLBACK,
            Some(&"v".repeat(43)),
        )
        .await,
        400,
        "invalid_grant",
    )
    .await;
    // Wrong client secret.
    let (code, verifier) = code_for(&s, &id, APP_CALLBACK).await;
    oauth_error(
        exchange(&s, &id, "kwcs_wrong", &code, APP_CALLBACK, Some(&verifier)).await,
        401,
        "invalid_client",
    )
    .await;
}

async fn refresh_reuse_revokes_the_family_but_not_within_the_grace_window(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (id, secret) = s.register_client(confidential(APP_CALLBACK)).await;
    let secret = secret.unwrap();
    let (code, verifier) = code_for(&s, &id, APP_CALLBACK).await;
    let first =
        json_with_status(exchange(&s, &id, &secret, &code, APP_CALLBACK, Some(&verifier)).await, 200).await;
    let r1 = first["refresh_token"].as_str().unwrap().to_string();

    // Two refreshes at the same moment, at two nodes (clients from several
    // egress IPs behind a load balancer): both get the same new pair.
    let other = s.another_node().await;
    let (a, b) = tokio::join!(refresh_with(&s, &id, &secret, &r1), refresh_with(&other, &id, &secret, &r1));
    let (a, b) = (json_with_status(a, 200).await, json_with_status(b, 200).await);
    assert_eq!(a["refresh_token"], b["refresh_token"]);
    assert_eq!(a["access_token"], b["access_token"]);
    let r2 = a["refresh_token"].as_str().unwrap().to_string();
    // Still within the grace window: the same pair again.
    let again = json_with_status(refresh_with(&s, &id, &secret, &r1).await, 200).await;
    assert_eq!(again["refresh_token"], r2.as_str());

    // The family's access token works on both nodes (and is remembered there).
    let access = a["access_token"].as_str().unwrap();
    for node in [&s, &other] {
        let r = node.http.get(node.url("/admin/api/users/")).bearer_auth(access).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    // After the grace window, reuse revokes the whole family.
    s.app.set_setting(Actor::Cli, "keyward.oauth.refresh_token_reuse_grace", "0").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let d = oauth_error(refresh_with(&s, &id, &secret, &r1).await, 400, "invalid_grant").await;
    assert!(d.contains("family"), "{d}");
    oauth_error(refresh_with(&s, &id, &secret, &r2).await, 400, "invalid_grant").await;
    api_error(
        s.http.get(s.url("/admin/api/users/")).bearer_auth(access).send().await.unwrap(),
        401,
        "unauthorized",
    )
    .await;
    // The other node forgets it as soon as PostgreSQL tells it.
    let mut refused = false;
    for _ in 0..40 {
        let r = other.http.get(other.url("/admin/api/users/")).bearer_auth(access).send().await.unwrap();
        if r.status() == 401 {
            refused = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(refused, "the revoked family's access token still works on the other node");
    s.app.audit.flush().await;
    let reused = s
        .app
        .store
        .audit_events(&keyward::store::AuditQuery {
            action: Some("refresh_token.reused".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(reused.len(), 1);
}

async fn login_and_consent_are_protected(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (id, _) = s.register_client(confidential(APP_CALLBACK)).await;
    let (url, _) = authorize_url(&s, &id, APP_CALLBACK, "");
    let browser = Browser::new();
    let page = browser.get(&url).await;
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'none'"), "{csp}");
    let set_cookie = page.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Lax"), "{set_cookie}");
    let html = page.text().await.unwrap();
    let return_to = hidden(&html, "return_to");

    // Login CSRF: a forged form, or one posted without the browser's cookie.
    let forged = [
        ("username", "admin"),
        ("password", ADMIN_PASSWORD),
        ("csrf", "forged"),
        ("return_to", return_to.as_str()),
    ];
    let r = browser.http.post(s.url("/oauth/v1/login/")).form(&forged).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let real = [
        ("username", "admin"),
        ("password", ADMIN_PASSWORD),
        ("csrf", &hidden(&html, "csrf")),
        ("return_to", return_to.as_str()),
    ];
    let r = s.http.post(s.url("/oauth/v1/login/")).form(&real).send().await.unwrap();
    assert_eq!(r.status(), 403, "no cookie: not this browser's form");
    // No open redirect after login.
    let elsewhere = [
        ("username", "admin"),
        ("password", ADMIN_PASSWORD),
        ("csrf", &hidden(&html, "csrf")),
        ("return_to", "https://evil.example/"),
    ];
    assert_eq!(
        browser.http.post(s.url("/oauth/v1/login/")).form(&elsewhere).send().await.unwrap().status(),
        400
    );
    // A wrong password shows the page again, with nothing said about the user.
    let r = browser.sign_in(&s, &url, "admin", "wrong-password").await;
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("Wrong username or password"));

    let r = browser.sign_in(&s, &url, "admin", ADMIN_PASSWORD).await;
    assert_eq!(r.status(), 303);
    let session_cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        session_cookie.starts_with("kw_session=")
            && session_cookie.contains("HttpOnly")
            && session_cookie.contains("SameSite=Lax")
    );
    let consent = browser.get(&s.url(&location(&r))).await;
    assert_eq!(consent.headers()["x-frame-options"], "DENY");
    let html = consent.text().await.unwrap();
    assert!(
        html.contains("Reporting App") && html.contains("app.example"),
        "names the app and the redirect host"
    );
    // Consent CSRF: forged token, or no session.
    let forged = [
        ("csrf", "forged".to_string()),
        ("request", hidden(&html, "request")),
        ("decision", "approve".into()),
    ];
    assert_eq!(
        browser.http.post(s.url("/oauth/v1/authorize/")).form(&forged).send().await.unwrap().status(),
        403
    );
    let stolen = [
        ("csrf", hidden(&html, "csrf")),
        ("request", hidden(&html, "request")),
        ("decision", "approve".into()),
    ];
    assert_eq!(s.http.post(s.url("/oauth/v1/authorize/")).form(&stolen).send().await.unwrap().status(), 401);
    // Deny goes back to the client with access_denied.
    let back = browser.consent(&s, &html, "deny").await;
    assert_eq!(param(&back, "error").as_deref(), Some("access_denied"));
}

async fn consent_is_remembered_and_revocable(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (id, secret) = s.register_client(confidential(APP_CALLBACK)).await;
    let (code, verifier) = code_for(&s, &id, APP_CALLBACK).await;
    let tokens = json_with_status(
        exchange(&s, &id, secret.as_deref().unwrap(), &code, APP_CALLBACK, Some(&verifier)).await,
        200,
    )
    .await;
    let admin_token = s.admin_token().await;
    let consents =
        json_with_status(s.get("/api/v2/oauth/consents/", &admin_token).send().await.unwrap(), 200).await;
    assert_eq!(consents[0]["client_id"], id.as_str());
    let r =
        s.send(Method::DELETE, &format!("/api/v2/oauth/consents/{id}/"), &admin_token).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let access = tokens["access_token"].as_str().unwrap();
    api_error(
        s.http.get(s.url("/admin/api/users/")).bearer_auth(access).send().await.unwrap(),
        401,
        "unauthorized",
    )
    .await;
    // The consent page comes back.
    let browser = Browser::new();
    let (url, _) = authorize_url(&s, &id, APP_CALLBACK, "");
    let r = browser.sign_in(&s, &url, "admin", ADMIN_PASSWORD).await;
    let page = browser.get(&s.url(&location(&r))).await;
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Allow"));
}

async fn metadata_and_cors_for_browser_clients(backend: Backend) {
    let s = TestServer::start(backend).await;
    let m = json_with_status(
        s.http.get(s.url("/.well-known/oauth-authorization-server")).send().await.unwrap(),
        200,
    )
    .await;
    assert_eq!(m["authorization_endpoint"], format!("{}/oauth/v1/authorize/", s.app.issuer));
    assert_eq!(m["response_types_supported"], json!(["code"]));
    assert_eq!(m["authorization_response_iss_parameter_supported"], true);
    assert!(m["token_endpoint_auth_methods_supported"].as_array().unwrap().contains(&json!("none")));
    assert!(m["scopes_supported"].as_array().unwrap().contains(&json!("offline_access")));
    let preflight = s
        .http
        .request(Method::OPTIONS, s.url("/oauth/v1/token/"))
        .header("origin", "https://spa.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success());
    assert_eq!(preflight.headers()["access-control-allow-origin"], "*");
    let r = s
        .http
        .get(s.url("/.well-known/oauth-authorization-server"))
        .header("origin", "https://spa.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
}

on_both_backends!(
    registration,
    registration_refuses_bad_input,
    confidential_flow_with_the_oauth2_crate,
    public_client_with_a_loopback_port,
    no_open_redirect,
    errors_after_validation_go_back_to_the_client,
    code_replay_revokes_what_it_issued,
    codes_die_with_the_password_and_the_consent,
    pkce_and_redirect_binding,
    refresh_reuse_revokes_the_family_but_not_within_the_grace_window,
    login_and_consent_are_protected,
    consent_is_remembered_and_revocable,
    metadata_and_cors_for_browser_clients,
    public_clients_can_be_turned_off,
);

/// `keyward.oauth.public_clients` off: `none` leaves the metadata, no public
/// client can be registered (by an admin or by itself) or used (codes and
/// tokens, a code obtained before included), confidential ones go on; on
/// again, the public client works again. (Public metadata documents are
/// refused too: `interop/test_client_metadata.py`.)
async fn public_clients_can_be_turned_off(backend: Backend) {
    const SETTING: &str = "/admin/api/config/keyward.oauth.public_clients/";
    let s = TestServer::start(backend).await;
    let admin = s.admin_token().await;
    let loopback = "http://127.0.0.1:4000/callback";
    let (public_id, _) = s.register_client(public(loopback)).await;
    let (confidential_id, secret) = s.register_client(confidential(APP_CALLBACK)).await;
    let secret = secret.unwrap();
    let (early_code, early_verifier) = code_for(&s, &public_id, loopback).await;
    let set = |on: bool| s.send(Method::PUT, SETTING, &admin).json(&json!({"value": on})).send();
    // Only a server admin may change it.
    let viewer = s.token_for_role(keyward::domain::Role::Viewer).await;
    assert_eq!(
        s.send(Method::PUT, SETTING, &viewer).json(&json!({"value": false})).send().await.unwrap().status(),
        403
    );
    assert_eq!(set(false).await.unwrap().status(), 200);

    for path in ["/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"] {
        let m = json_with_status(s.http.get(s.url(path)).send().await.unwrap(), 200).await;
        assert_eq!(
            m["token_endpoint_auth_methods_supported"],
            json!(["client_secret_basic", "client_secret_post", "private_key_jwt"])
        );
        // Metadata-document clients stay, with private_key_jwt only.
        assert_eq!(m["client_id_metadata_document_supported"], true);
    }
    let r = s.send(Method::POST, REGISTER, &admin).json(&public(loopback)).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("keyward.oauth.public_clients"));
    let r = s
        .http
        .post(s.url("/oauth/v2/register/"))
        .json(&json!({"redirect_uris": [loopback], "token_endpoint_auth_method": "none", "client_name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(json_with_status(r, 400).await["error"], "invalid_client_metadata");
    // A self-registered confidential client is still welcome.
    let r = s
        .http
        .post(s.url("/oauth/v2/register/"))
        .json(&json!({"redirect_uris": [loopback], "token_endpoint_auth_method": "client_secret_basic"}))
        .send()
        .await
        .unwrap();
    assert!(json_with_status(r, 201).await["client_secret"].is_string());

    // The public client gets no code (a page, not a redirect) and no token.
    let (url, _) = authorize_url(&s, &public_id, loopback, "");
    let r = Browser::new().get(&url).await;
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("location").is_none());
    let public_exchange = |code: String, verifier: String| {
        let form = [
            ("grant_type", "authorization_code".to_string()),
            ("code", code),
            ("redirect_uri", loopback.to_string()),
            ("client_id", public_id.clone()),
            ("code_verifier", verifier),
        ];
        s.http.post(s.url("/oauth/v2/token/")).form(&form).send()
    };
    let r = public_exchange(early_code, early_verifier).await.unwrap();
    let why = oauth_error(r, 401, "invalid_client").await;
    assert!(why.contains("keyward.oauth.public_clients"), "{why}");
    // The confidential one goes on.
    let (code, verifier) = code_for(&s, &confidential_id, APP_CALLBACK).await;
    let r = exchange(&s, &confidential_id, &secret, &code, APP_CALLBACK, Some(&verifier)).await;
    assert!(json_with_status(r, 200).await["access_token"].is_string());

    // On again: the public client works again.
    assert_eq!(set(true).await.unwrap().status(), 200);
    let (code, verifier) = code_for(&s, &public_id, loopback).await;
    let r = public_exchange(code, verifier).await.unwrap();
    assert!(json_with_status(r, 200).await["access_token"].is_string());
}

/// A code handed out before a password change (or before the user withdrew
/// consent) starts no grant afterwards.
async fn codes_die_with_the_password_and_the_consent(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (id, secret) = s.register_client(confidential(APP_CALLBACK)).await;
    let secret = secret.unwrap();
    let (code, verifier) = code_for(&s, &id, APP_CALLBACK).await;
    let admin = s.user_named("admin").await;
    s.app
        .update_user(
            Actor::Cli,
            admin.id,
            keyward::app::UserPatch {
                password: Some("a-new-password-for-admin".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    oauth_error(exchange(&s, &id, &secret, &code, APP_CALLBACK, Some(&verifier)).await, 400, "invalid_grant")
        .await;
    s.app
        .update_user(
            Actor::Cli,
            admin.id,
            keyward::app::UserPatch {
                password: Some(crate::harness::ADMIN_PASSWORD.into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let (code, verifier) = code_for(&s, &id, APP_CALLBACK).await;
    s.app.revoke_consent(admin.id, &id).await.unwrap();
    oauth_error(exchange(&s, &id, &secret, &code, APP_CALLBACK, Some(&verifier)).await, 400, "invalid_grant")
        .await;
    // Untouched, a code still works.
    let (code, verifier) = code_for(&s, &id, APP_CALLBACK).await;
    json_with_status(exchange(&s, &id, &secret, &code, APP_CALLBACK, Some(&verifier)).await, 200).await;
}
