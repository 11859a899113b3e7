//! `/openapi/api_authentication/`: the generated document, and the Swagger
//! UI behind `alation.feature_flags.enable_swagger`.

use crate::harness::{Backend, TestServer, api_error, json_with_status};
use crate::on_both_backends;
use keyward::domain::Actor;

const DOC: &str = "/openapi/api_authentication/";

async fn the_document_describes_every_endpoint(backend: Backend) {
    let s = TestServer::start(backend).await;
    let doc = json_with_status(s.http.get(s.url(DOC)).send().await.unwrap(), 200).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for (endpoint, created) in [
        ("createRefreshToken", "201"),
        ("regenRefreshToken", "201"),
        ("createAPIAccessToken", "201"),
        ("revokeAPIAccessTokens", "200"),
        ("validateAPIAccessToken", "200"),
        ("validateRefreshToken", "200"),
    ] {
        let op = &doc["paths"][format!("/integration/v1/{endpoint}/")]["post"];
        assert!(op["responses"][created].is_object(), "{endpoint} documents {created}");
        assert!(op["responses"]["400"].is_object() && op["responses"]["401"].is_object(), "{endpoint}");
        let content = &op["requestBody"]["content"];
        assert!(
            content["application/x-www-form-urlencoded"].is_object()
                && content["application/json"].is_object()
        );
    }
    let refresh = &doc["components"]["schemas"]["RefreshTokenResponse"]["properties"];
    for field in
        ["refresh_token", "user_id", "name", "created_at", "token_expires_at", "token_status", "last_used_at"]
    {
        assert!(refresh[field].is_object(), "{field}");
    }
}

async fn the_swagger_ui_follows_the_flag(backend: Backend) {
    let s = TestServer::start(backend).await;
    let ui = format!("{DOC}ui/");
    api_error(s.http.get(s.url(&ui)).send().await.unwrap(), 404, "not_found").await;
    let r = s.http.get(s.url(DOC)).header("accept", "text/html").send().await.unwrap();
    assert_eq!(r.status(), 200, "no UI to redirect to while off");

    s.app.set_setting(Actor::Cli, "alation.feature_flags.enable_swagger", "True").await.unwrap();
    let r = s.http.get(s.url(DOC)).header("accept", "text/html").send().await.unwrap();
    assert!(r.status().is_redirection());
    assert_eq!(r.headers()["location"], ui.as_str());
    let page = s.http.get(s.url(&ui)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("swagger-ui"));
    // Bundled assets, no CDN: the page's scripts come from keyward itself.
    for asset in ["swagger-ui-bundle.js", "swagger-ui.css", "swagger-initializer.js"] {
        let r = s.http.get(s.url(&format!("{ui}{asset}"))).send().await.unwrap();
        assert_eq!(r.status(), 200, "{asset}");
        assert!(r.text().await.unwrap().len() > 100);
    }
    let spec =
        json_with_status(s.http.get(s.url(&format!("{DOC}openapi.json"))).send().await.unwrap(), 200).await;
    assert!(spec["paths"]["/integration/v1/createRefreshToken/"].is_object());

    s.app.set_setting(Actor::Cli, "alation.feature_flags.enable_swagger", "false").await.unwrap();
    api_error(s.http.get(s.url(&ui)).send().await.unwrap(), 404, "not_found").await;
}

async fn the_oauth2_document_covers_registration_and_tokens(backend: Backend) {
    let s = TestServer::start(backend).await;
    let doc = json_with_status(s.http.get(s.url("/openapi/oauth2/")).send().await.unwrap(), 200).await;
    let paths = &doc["paths"];
    assert!(paths["/oauth/v1/register/"]["post"]["responses"]["201"].is_object());
    assert!(paths["/oauth/v1/register/"]["get"].is_object());
    for method in ["get", "put", "delete"] {
        assert!(paths["/oauth/v1/register/{client_id}/"][method].is_object(), "{method}");
    }
    assert!(paths["/oauth/v1/register/{client_id}/rotate_secret/"]["post"].is_object());
    let token = &paths["/oauth/v1/token/"]["post"];
    assert!(token["requestBody"]["content"]["application/x-www-form-urlencoded"].is_object());
    assert!(token["responses"]["401"].is_object());
    let schema = &doc["components"]["schemas"]["RegisterRequest"]["properties"];
    for field in [
        "name",
        "redirect_uris",
        "grant_type",
        "refresh_token_lifetime",
        "access_token_lifetime",
        "pkce_enabled",
    ] {
        assert!(schema[field].is_object(), "{field}");
    }
    assert!(doc["components"]["securitySchemes"]["token"].is_object());
    // Its UI follows the same flag.
    api_error(s.http.get(s.url("/openapi/oauth2/ui/")).send().await.unwrap(), 404, "not_found").await;
    s.app.set_setting(Actor::Cli, "alation.feature_flags.enable_swagger", "true").await.unwrap();
    assert_eq!(s.http.get(s.url("/openapi/oauth2/ui/")).send().await.unwrap().status(), 200);
    let spec =
        json_with_status(s.http.get(s.url("/openapi/oauth2/openapi.json")).send().await.unwrap(), 200).await;
    assert_eq!(spec, doc);
}

on_both_backends!(
    the_document_describes_every_endpoint,
    the_swagger_ui_follows_the_flag,
    the_oauth2_document_covers_registration_and_tokens,
);
