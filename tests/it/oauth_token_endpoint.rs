//! `/oauth/v2/token/`, introspection, revocation and metadata: RFC 6749 §5,
//! RFC 7662, RFC 7009, RFC 8414.

use crate::harness::{Backend, TestServer, api_error, json_with_status, oauth_error};
use crate::on_both_backends;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;

async fn the_reference_curl_works(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (id, secret) = s.m2m_client("viewer", 900).await;
    // curl --request POST --url …/oauth/v2/token/ --header 'accept: application/json'
    //   --header 'content-type: application/x-www-form-urlencoded'
    //   --data grant_type=client_credentials --data client_id=… --data client_secret=…
    let r = s
        .http
        .post(s.url("/oauth/v2/token/"))
        .header("accept", "application/json")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("grant_type=client_credentials&client_id={id}&client_secret={secret}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(r.headers()["pragma"], "no-cache");
    let body = json_with_status(r, 200).await;
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert_eq!(body["scope"], "api mcp");
    assert_eq!(body["access_token"].as_str().unwrap().split('.').count(), 3);
    // The same on the v1 path of the user-initiated reference.
    let r = s
        .http
        .post(s.url("/oauth/v1/token/"))
        .basic_auth(&id, Some(&secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    json_with_status(r, 200).await;
}

async fn bad_requests_get_precise_oauth_errors(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (id, secret) = s.m2m_client("viewer", 900).await;
    let cc = ("grant_type", "client_credentials");

    let r = s.token_request(&[cc, ("client_id", &id), ("client_secret", "kwcs_wrong")]).await;
    let www = r.headers()["www-authenticate"].to_str().unwrap().to_string();
    assert!(www.starts_with("Basic"), "{www}");
    oauth_error(r, 401, "invalid_client").await;
    oauth_error(
        s.token_request(&[cc, ("client_id", "m2m_unknown"), ("client_secret", &secret)]).await,
        401,
        "invalid_client",
    )
    .await;
    oauth_error(s.token_request(&[cc]).await, 401, "invalid_client").await;
    oauth_error(s.token_request(&[cc, ("client_id", &id)]).await, 401, "invalid_client").await;
    let r = s
        .http
        .post(s.url("/oauth/v2/token/"))
        .basic_auth(&id, Some("kwcs_wrong"))
        .form(&[cc])
        .send()
        .await
        .unwrap();
    oauth_error(r, 401, "invalid_client").await;
    let r = s.http.post(s.url("/oauth/v2/token/")).bearer_auth(&secret).form(&[cc]).send().await.unwrap();
    oauth_error(r, 401, "invalid_client").await;
    let r = s
        .http
        .post(s.url("/oauth/v2/token/"))
        .header("authorization", "Basic %%%")
        .form(&[cc])
        .send()
        .await
        .unwrap();
    oauth_error(r, 401, "invalid_client").await;

    let d = oauth_error(
        s.token_request(&[("grant_type", "password"), ("client_id", &id), ("client_secret", &secret)]).await,
        400,
        "unsupported_grant_type",
    )
    .await;
    assert!(d.contains("password"), "{d}");
    let d = oauth_error(
        s.token_request(&[("client_id", &id), ("client_secret", &secret)]).await,
        400,
        "invalid_request",
    )
    .await;
    assert!(d.contains("grant_type"), "{d}");
    let r = s
        .http
        .post(s.url("/oauth/v2/token/"))
        .json(&json!({"grant_type": "client_credentials", "client_id": id, "client_secret": secret}))
        .send()
        .await
        .unwrap();
    let d = oauth_error(r, 400, "invalid_request").await;
    assert!(d.contains("x-www-form-urlencoded"), "{d}");
    let r = s.token_request(&[cc, cc, ("client_id", &id), ("client_secret", &secret)]).await;
    let d = oauth_error(r, 400, "invalid_request").await;
    assert!(d.contains("grant_type") && d.contains("more than once"), "{d}");
    let r = s
        .token_request(&[
            cc,
            ("client_id", &id),
            ("client_secret", &secret),
            ("scope", "api"),
            ("scope", "mcp"),
        ])
        .await;
    oauth_error(r, 400, "invalid_request").await;
    let r = s
        .http
        .post(s.url("/oauth/v2/token/"))
        .basic_auth(&id, Some(&secret))
        .form(&[cc, ("client_secret", secret.as_str())])
        .send()
        .await
        .unwrap();
    oauth_error(r, 400, "invalid_request").await;
    let r = s
        .http
        .post(s.url("/oauth/v2/token/"))
        .basic_auth(&id, Some(&secret))
        .form(&[cc, ("client_id", "m2m_other")])
        .send()
        .await
        .unwrap();
    oauth_error(r, 400, "invalid_request").await;
    let big = "x".repeat(70 * 1024);
    let r = s.token_request(&[cc, ("client_id", &id), ("client_secret", &secret), ("padding", &big)]).await;
    oauth_error(r, 413, "invalid_request").await;
    let r =
        s.token_request(&[cc, ("client_id", &id), ("client_secret", &secret), ("scope", "api admin")]).await;
    oauth_error(r, 400, "invalid_scope").await;
    let r = s
        .token_request(&[cc, ("client_id", &id), ("client_secret", &secret), ("scope", "offline_access")])
        .await;
    oauth_error(r, 400, "invalid_scope").await;
    let r = s
        .token_request(&[cc, ("client_id", &id), ("client_secret", &secret), ("resource", "not-a-uri")])
        .await;
    oauth_error(r, 400, "invalid_target").await;
    let r = s
        .token_request(&[
            cc,
            ("client_id", &id),
            ("client_secret", &secret),
            ("resource", "https://x.example/#f"),
        ])
        .await;
    oauth_error(r, 400, "invalid_target").await;
    let r = s.http.get(s.url("/oauth/v2/token/")).send().await.unwrap();
    api_error(r, 405, "method_not_allowed").await;

    // Empty values count as absent (RFC 6749 §3.1).
    let r = s.token_request(&[cc, ("client_id", &id), ("client_secret", &secret), ("scope", "")]).await;
    assert_eq!(json_with_status(r, 200).await["scope"], "api mcp");
}

async fn basic_credentials_are_form_decoded(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (id, secret) = s.m2m_client("viewer", 900).await;
    // RFC 6749 §2.3.1: encode, then base64. Percent-encoding an
    // unreserved character must still authenticate.
    let encoded_id = id.replacen('m', "%6D", 1);
    let header = format!("Basic {}", STANDARD.encode(format!("{encoded_id}:{secret}")));
    let r = s
        .http
        .post(s.url("/oauth/v2/token/"))
        .header("authorization", header)
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    json_with_status(r, 200).await;
}

async fn scope_and_resource_shape_the_token(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (id, secret) = s.m2m_client("viewer", 900).await;
    let base = [
        ("grant_type", "client_credentials"),
        ("client_id", id.as_str()),
        ("client_secret", secret.as_str()),
    ];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut form: Vec<(&str, &str)> = base.to_vec();
        form.extend_from_slice(extra);
        form
    };
    let r = s.token_request(&with(&[("scope", "mcp"), ("resource", "https://mcp.example.com/")])).await;
    let body = json_with_status(r, 200).await;
    assert_eq!(body["scope"], "mcp");
    let intro = s.app.introspect(body["access_token"].as_str().unwrap()).await.unwrap();
    assert_eq!(intro["aud"], "https://mcp.example.com");
    let r = s
        .token_request(&with(&[("resource", "https://a.example"), ("resource", "https://b.example/api")]))
        .await;
    let body = json_with_status(r, 200).await;
    let intro = s.app.introspect(body["access_token"].as_str().unwrap()).await.unwrap();
    assert_eq!(intro["aud"], json!(["https://a.example", "https://b.example/api"]));
    // A token for another resource is not accepted by keyward's own APIs.
    let token = body["access_token"].as_str().unwrap();
    api_error(
        s.http.get(s.url("/admin/api/users/")).bearer_auth(token).send().await.unwrap(),
        401,
        "unauthorized",
    )
    .await;
}

async fn introspection_and_revocation(backend: Backend) {
    let a = TestServer::start(backend).await;
    let b = a.another_node().await;
    let (id, secret) = a.m2m_client("server_admin", 900).await;
    let (other_id, other_secret) = a.m2m_client("viewer", 900).await;
    let jwt = a.client_jwt(&id, &secret).await;
    let introspect = |s: &TestServer, token: &str| {
        s.http
            .post(s.url("/oauth/v2/introspect/"))
            .basic_auth(&other_id, Some(&other_secret))
            .form(&[("token", token)])
            .send()
    };

    // A client that is neither the token's own nor a resource server (a
    // service identity) learns that it is active, not whose it is.
    let r = introspect(&b, &jwt).await.unwrap();
    assert_eq!(r.headers()["cache-control"], "no-store");
    let body = json_with_status(r, 200).await;
    assert_eq!(body["active"], true);
    assert_eq!(body["client_id"], id.as_str());
    for private in ["sub", "role", "username", "jti"] {
        assert!(body.get(private).is_none(), "{private} told to a stranger: {body}");
    }
    let admin = a.admin_token().await;
    let r = a.patch_m2m_client(&other_id, &admin, json!({"is_service": true})).await;
    json_with_status(r, 200).await;
    // (Asked at the node that made the change: the other hears of it when
    // PostgreSQL delivers the notification.)
    let body = json_with_status(introspect(&a, &jwt).await.unwrap(), 200).await;
    assert_eq!(body["active"], true);
    assert_eq!(body["sub"], id.as_str());
    assert_eq!(body["role"], "server_admin");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["iss"], a.app.issuer.as_str());
    for garbage in ["nope", "a.b.c", &format!("{jwt}x")] {
        assert_eq!(
            json_with_status(introspect(&b, garbage).await.unwrap(), 200).await,
            json!({"active": false})
        );
    }
    let r =
        b.http.post(b.url("/oauth/v2/introspect/")).form(&[("token", jwt.as_str())]).send().await.unwrap();
    oauth_error(r, 401, "invalid_client").await;
    let r = b
        .http
        .post(b.url("/oauth/v2/introspect/"))
        .basic_auth(&other_id, Some(&other_secret))
        .form(&[("token_type_hint", "access_token")])
        .send()
        .await
        .unwrap();
    oauth_error(r, 400, "invalid_request").await;

    // Only the client the token was issued to may revoke it.
    let r = a
        .http
        .post(a.url("/oauth/v2/revoke/"))
        .basic_auth(&other_id, Some(&other_secret))
        .form(&[("token", jwt.as_str())])
        .send()
        .await
        .unwrap();
    oauth_error(r, 400, "unauthorized_client").await;
    json_with_status(b.http.get(b.url("/admin/api/users/")).bearer_auth(&jwt).send().await.unwrap(), 200)
        .await;

    let r = a
        .http
        .post(a.url("/oauth/v2/revoke/"))
        .basic_auth(&id, Some(&secret))
        .form(&[("token", jwt.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Refused on every node from the next request on.
    for s in [&a, &b] {
        let detail = api_error(
            s.http.get(s.url("/admin/api/users/")).bearer_auth(&jwt).send().await.unwrap(),
            401,
            "unauthorized",
        )
        .await;
        assert!(detail.contains("revoked"), "{detail}");
        assert_eq!(json_with_status(introspect(s, &jwt).await.unwrap(), 200).await["active"], false);
    }
    // Unknown tokens: 200, nothing to do (RFC 7009 §2.2).
    let r = a
        .http
        .post(a.url("/oauth/v2/revoke/"))
        .basic_auth(&id, Some(&secret))
        .form(&[("token", "whatever")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = a.http.post(a.url("/oauth/v2/revoke/")).form(&[("token", "whatever")]).send().await.unwrap();
    oauth_error(r, 401, "invalid_client").await;
    // A new token of the same client still works.
    let fresh = a.client_jwt(&id, &secret).await;
    json_with_status(b.http.get(b.url("/admin/api/users/")).bearer_auth(&fresh).send().await.unwrap(), 200)
        .await;

    a.app.audit.flush().await;
    let events = a
        .app
        .store
        .audit_events(&keyward::store::AuditQuery {
            action: Some("token.revoked".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
}

async fn metadata_names_one_issuer(backend: Backend) {
    let s = TestServer::start(backend).await;
    for path in ["/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"] {
        let m = json_with_status(s.http.get(s.url(path)).send().await.unwrap(), 200).await;
        assert_eq!(m["issuer"], s.base.as_str(), "byte-identical issuer");
        assert_eq!(m["token_endpoint"], format!("{}/oauth/v2/token/", s.base));
        assert_eq!(m["code_challenge_methods_supported"], json!(["S256"]));
        assert!(m["grant_types_supported"].as_array().unwrap().contains(&json!("client_credentials")));
        assert!(
            m["token_endpoint_auth_methods_supported"]
                .as_array()
                .unwrap()
                .contains(&json!("client_secret_basic"))
        );
        for endpoint in ["jwks_uri", "introspection_endpoint", "revocation_endpoint"] {
            let url = m[endpoint].as_str().unwrap();
            assert!(url.starts_with(&s.base), "{endpoint}: {url}");
        }
        let jwks_path = m["jwks_uri"].as_str().unwrap().strip_prefix(&s.base).unwrap().to_string();
        let jwks = json_with_status(s.http.get(s.url(&jwks_path)).send().await.unwrap(), 200).await;
        assert_eq!(jwks["keys"][0]["alg"], "ES256");
        assert!(jwks["keys"][0].get("d").is_none(), "no private part");
    }
}

on_both_backends!(
    the_reference_curl_works,
    bad_requests_get_precise_oauth_errors,
    basic_credentials_are_form_decoded,
    scope_and_resource_shape_the_token,
    introspection_and_revocation,
    metadata_names_one_issuer,
);
