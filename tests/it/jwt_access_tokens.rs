//! JWT access tokens (RFC 9068): issued to a client library nobody here
//! wrote (the `oauth2` crate), verified by a JOSE library the server does not
//! use (`jwt-simple`) from the published JWKS; attacks on verification; key
//! rotation.

use crate::harness::{Backend, TestServer, api_error, json_with_status, oauth2_http as send};
use crate::on_both_backends;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jwt_simple::prelude::*;
use keyward::crypto::SigningAlgorithm;
use keyward::domain::Actor;
use oauth2::basic::BasicClient;
use oauth2::{ClientId, ClientSecret, Scope, TokenResponse, TokenUrl};
use serde_json::{Value, json};
use std::collections::HashSet;

/// Verifies `jwt` with jwt-simple, using the key of the published JWKS.
async fn verify_independently(s: &TestServer, jwt: &str, audience: &str) -> JWTClaims<Value> {
    let jwks = json_with_status(s.http.get(s.url("/.well-known/jwks.json")).send().await.unwrap(), 200).await;
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(jwt.split('.').next().unwrap()).unwrap()).unwrap();
    assert_eq!(header["typ"], "at+jwt");
    let jwk =
        jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == header["kid"]).expect("kid in JWKS");
    let b = |field: &str| URL_SAFE_NO_PAD.decode(jwk[field].as_str().unwrap()).unwrap();
    let options = VerificationOptions {
        allowed_issuers: Some(HashSet::from([s.app.issuer.clone()])),
        allowed_audiences: Some(HashSet::from([audience.to_string()])),
        required_signature_type: Some("at+jwt".into()),
        ..Default::default()
    };
    match jwk["alg"].as_str().unwrap() {
        "ES256" => {
            let mut point = vec![4u8];
            point.extend(b("x"));
            point.extend(b("y"));
            ES256PublicKey::from_bytes(&point).unwrap().verify_token::<Value>(jwt, Some(options)).unwrap()
        }
        "EdDSA" => {
            Ed25519PublicKey::from_bytes(&b("x")).unwrap().verify_token::<Value>(jwt, Some(options)).unwrap()
        }
        "RS256" => RS256PublicKey::from_components(&b("n"), &b("e"))
            .unwrap()
            .verify_token::<Value>(jwt, Some(options))
            .unwrap(),
        other => panic!("unexpected alg {other}"),
    }
}

async fn a_standard_client_gets_a_verifiable_rfc9068_token(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (id, secret) = s.m2m_client("steward", 1800).await;
    let client = BasicClient::new(ClientId::new(id.clone()))
        .set_client_secret(ClientSecret::new(secret.clone()))
        .set_token_uri(TokenUrl::new(s.url("/oauth/v2/token/")).unwrap());
    let token = client
        .exchange_client_credentials()
        .add_scope(Scope::new("api".into()))
        .request_async(&send)
        .await
        .expect("token from keyward");
    assert_eq!(token.expires_in().unwrap().as_secs(), 1800);
    assert_eq!(token.scopes().unwrap()[0].as_str(), "api");
    let jwt = token.access_token().secret().to_string();

    let claims = verify_independently(&s, &jwt, &s.base).await;
    assert_eq!(claims.subject.as_deref(), Some(id.as_str()));
    assert_eq!(claims.custom["client_id"], id.as_str());
    assert_eq!(claims.custom["scope"], "api");
    assert_eq!(claims.custom["role"], "steward");
    let (iat, exp) = (claims.issued_at.unwrap().as_secs(), claims.expires_at.unwrap().as_secs());
    assert_eq!(exp - iat, 1800);
    assert!(claims.jwt_id.as_deref().is_some_and(|j| j.len() >= 16));

    // The platform API accepts it with the client's role.
    let r = s.http.get(s.url("/admin/api/users/")).bearer_auth(&jwt).send().await.unwrap();
    let detail = api_error(r, 403, "forbidden").await;
    assert!(detail.contains("steward"), "{detail}");
    let (admin_id, admin_secret) = s.m2m_client("server_admin", 300).await;
    let admin_jwt = s.client_jwt(&admin_id, &admin_secret).await;
    json_with_status(
        s.http.get(s.url("/admin/api/users/")).bearer_auth(&admin_jwt).send().await.unwrap(),
        200,
    )
    .await;
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

async fn forged_and_confused_tokens_are_refused(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (id, secret) = s.m2m_client("server_admin", 600).await;
    let jwt = s.client_jwt(&id, &secret).await;
    let parts: Vec<&str> = jwt.split('.').collect();
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    let kid = header["kid"].as_str().unwrap().to_string();
    let refused = |token: String| {
        let s = &s;
        async move {
            let r = s.http.get(s.url("/admin/api/users/")).bearer_auth(&token).send().await.unwrap();
            api_error(r, 401, "unauthorized").await;
            assert_eq!(s.app.introspect(&token).await.unwrap()["active"], false);
        }
    };

    // alg none, with and without a signature.
    let none = json!({"alg": "none", "typ": "at+jwt", "kid": kid});
    refused(format!("{}.{}.", b64(&none), parts[1])).await;
    refused(format!("{}.{}.{}", b64(&none), parts[1], parts[2])).await;
    // HMAC keyed with the public key (algorithm confusion).
    let jwks = json_with_status(s.http.get(s.url("/.well-known/jwks.json")).send().await.unwrap(), 200).await;
    let public = jwks["keys"][0].to_string();
    let hs = HS256Key::from_bytes(public.as_bytes()).with_key_id(&kid);
    let forged_claims = Claims::with_custom_claims(claims.clone(), Duration::from_secs(600));
    refused(hs.authenticate(forged_claims).unwrap()).await;
    // A payload changed after signing.
    let mut elevated = claims.clone();
    elevated["role"] = json!("server_admin");
    elevated["sub"] = json!("someone-else");
    refused(format!("{}.{}.{}", parts[0], b64(&elevated), parts[2])).await;
    // Right key, wrong issuer / expired / not yet valid / no kid / another key's kid.
    let signer = s.app.keys.current().signing_key().clone();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut wrong_iss = claims.clone();
    wrong_iss["iss"] = json!("https://evil.example");
    refused(signer.sign_jwt(&wrong_iss)).await;
    let mut expired = claims.clone();
    expired["exp"] = json!(now - 60);
    let r =
        s.http.get(s.url("/admin/api/users/")).bearer_auth(signer.sign_jwt(&expired)).send().await.unwrap();
    assert!(api_error(r, 401, "unauthorized").await.contains("expired"));
    let mut future = claims.clone();
    future["nbf"] = json!(now + 600);
    refused(signer.sign_jwt(&future)).await;
    let no_kid = json!({"alg": "ES256", "typ": "at+jwt"});
    refused(format!("{}.{}.{}", b64(&no_kid), parts[1], parts[2])).await;
    let wrong_typ = json!({"alg": "ES256", "typ": "JWT", "kid": kid});
    refused(format!("{}.{}.{}", b64(&wrong_typ), parts[1], parts[2])).await;
    let unknown_kid = json!({"alg": "ES256", "typ": "at+jwt", "kid": "nope"});
    refused(format!("{}.{}.{}", b64(&unknown_kid), parts[1], parts[2])).await;
    // The genuine token still works.
    json_with_status(s.http.get(s.url("/admin/api/users/")).bearer_auth(&jwt).send().await.unwrap(), 200)
        .await;
}

async fn rotation_keeps_tokens_in_flight_valid_on_every_node(backend: Backend) {
    let a = TestServer::start(backend).await;
    let b = a.another_node().await;
    let (id, secret) = a.m2m_client("server_admin", 600).await;
    let before = a.client_jwt(&id, &secret).await;
    let (new_kid, _) = a.app.rotate_signing_key(Actor::System, None).await.unwrap();
    let after = a.client_jwt(&id, &secret).await;
    let kid_of = |jwt: &str| -> String {
        let h: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(jwt.split('.').next().unwrap()).unwrap()).unwrap();
        h["kid"].as_str().unwrap().to_string()
    };
    assert_ne!(kid_of(&before), new_kid);
    if backend == Backend::Postgres {
        // Several nodes: a new key is published everywhere before any node
        // signs with it. Node b hears of it at once (no token names it yet)…
        assert_ne!(kid_of(&after), new_kid, "signed with a key other nodes may not publish yet");
        let published = async || {
            let jwks =
                json_with_status(b.http.get(b.url("/.well-known/jwks.json")).send().await.unwrap(), 200)
                    .await;
            jwks["keys"].as_array().unwrap().iter().any(|k| k["kid"] == new_kid.as_str())
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !published().await {
            assert!(std::time::Instant::now() < deadline, "node b did not publish the new key");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        // … and node a signs with it once the delay has passed.
        tokio::time::sleep(keyward::app::PUBLISH_BEFORE_SIGNING).await;
        let later = a.client_jwt(&id, &secret).await;
        assert_eq!(kid_of(&later), new_kid);
        json_with_status(
            b.http.get(b.url("/admin/api/users/")).bearer_auth(&later).send().await.unwrap(),
            200,
        )
        .await;
    } else {
        assert_eq!(kid_of(&after), new_kid);
    }
    // Node b has not refreshed yet: a token naming an unknown kid makes it look.
    for jwt in [&before, &after] {
        json_with_status(b.http.get(b.url("/admin/api/users/")).bearer_auth(jwt).send().await.unwrap(), 200)
            .await;
        verify_independently(&b, jwt, &a.base).await;
    }
    let jwks = json_with_status(b.http.get(b.url("/.well-known/jwks.json")).send().await.unwrap(), 200).await;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
}

async fn eddsa_and_rs256_keys_are_selectable(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (id, secret) = s.m2m_client("viewer", 600).await;
    for alg in [SigningAlgorithm::EdDsa, SigningAlgorithm::Rs256] {
        s.app.rotate_signing_key(Actor::System, Some(alg)).await.unwrap();
        let jwt = s.client_jwt(&id, &secret).await;
        let claims = verify_independently(&s, &jwt, &s.base).await;
        assert_eq!(claims.custom["role"], "viewer");
        assert_eq!(s.app.introspect(&jwt).await.unwrap()["active"], true, "{alg}");
    }
    // The setting picks the algorithm of the next rotation.
    s.app.set_setting(Actor::System, "keyward.oauth.signing_algorithm", "eddsa").await.unwrap();
    let (_, alg) = s.app.rotate_signing_key(Actor::System, None).await.unwrap();
    assert_eq!(alg, SigningAlgorithm::EdDsa);
}

on_both_backends!(
    a_standard_client_gets_a_verifiable_rfc9068_token,
    forged_and_confused_tokens_are_refused,
    rotation_keeps_tokens_in_flight_valid_on_every_node,
    eddsa_and_rs256_keys_are_selectable,
);
