"""Single sign-on against a real OpenID Connect provider (the npm
`oidc-provider`, OpenID certified) on loopback, in headless Chromium: the
login page's "Sign in with" button, first-sign-in provisioning with the
default role, group → role mapping, an SSO user making a refresh token at
/account/auth and using it with the reference's /integration/v1 calls, and
a password account that the provider's user cannot take over."""

import http.server
import json
import os
import subprocess
import threading
import time
import urllib.parse

import pytest
import requests
from joserfc import jwt
from joserfc.jwk import RSAKey

from test_oidc_provider import allow_loopback_providers, start_provider
from test_pages import BROWSER_TESTS, SHOTS

PROVIDER_ID = "test-idp"


@pytest.fixture
def sso_provider(keyward):
    sso = f"{keyward.base_url}/login/sso/{PROVIDER_ID}/callback/"
    process, issuer = start_provider(keyward, sso)
    headers = {"TOKEN": keyward.admin_token()}
    allow_loopback_providers(keyward, headers)
    r = requests.post(f"{keyward.base_url}/admin/api/sso_providers/", headers=headers, json={
        "id": PROVIDER_ID, "display_name": "Test IdP", "issuer": issuer, "client_id": "keyward-sso",
        "client_secret": "sso-secret-for-tests-0123456789", "scopes": ["openid", "email", "groups"],
        "groups_claim": "groups", "group_roles": {"keyward-admins": "server_admin"}, "default_role": "viewer"})
    assert r.status_code == 201, r.text
    provider = r.json()
    assert provider["has_client_secret"] and "client_secret" not in provider
    assert provider["redirect_uri"] == sso
    yield headers
    process.terminate()
    process.wait(timeout=10)


def sign_in(keyward, login, name):
    out = subprocess.run(["node", str(BROWSER_TESTS / "sso_sign_in.js"), keyward.base_url, login, SHOTS, name],
                         capture_output=True, text=True, timeout=120, cwd=BROWSER_TESTS)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def user(keyward, headers, username):
    users = requests.get(f"{keyward.base_url}/admin/api/users/", headers=headers).json()
    return next((u for u in users if u["username"] == username), None)


def test_an_sso_user_is_provisioned_and_makes_tokens_for_the_integration_api(keyward, sso_provider):
    seen = sign_in(keyward, "dana", "sso")
    assert seen["errors"] == [], seen["errors"]
    assert seen["buttonText"] == "Sign in with Test IdP"
    assert seen["landed"] == f"{keyward.base_url}/account/auth", seen
    assert "dana@example.test" in seen["status"]
    session = next(c for c in seen["cookies"] if c["name"] == "kw_session")
    assert session["httpOnly"] and session["sameSite"] == "Lax"
    dana = user(keyward, sso_provider, "dana@example.test")
    assert dana["role"] == "viewer" and dana["auth_source"] == "sso", dana
    # The reference's calls take the refresh token the page showed.
    refresh = seen["refresh"]
    assert refresh.startswith("kwrt_")
    r = requests.post(f"{keyward.base_url}/integration/v1/createAPIAccessToken/",
                      data={"refresh_token": refresh, "user_id": dana["id"]})
    assert r.status_code == 201, r.text
    access = r.json()["api_access_token"]
    r = requests.post(f"{keyward.base_url}/integration/v1/validateAPIAccessToken/",
                      data={"api_access_token": access, "user_id": dana["id"]})
    assert r.status_code == 200 and r.json()["token_status"] == "ACTIVE", r.text
    # An SSO user has no password at keyward.
    r = requests.post(f"{keyward.base_url}/integration/v1/createRefreshToken/",
                      data={"username": "dana@example.test", "password": "anything", "name": "x"})
    assert r.status_code == 401, r.text
    # Signing in again is the same user, not a second one.
    sign_in(keyward, "dana", "sso-again")
    users = requests.get(f"{keyward.base_url}/admin/api/users/", headers=sso_provider).json()
    assert [u["username"] for u in users].count("dana@example.test") == 1
    for shot in ["sso-sign-in", "sso-provider", "sso-signed-in", "sso-refresh-token"]:
        assert os.path.getsize(os.path.join(SHOTS, f"{shot}.png")) > 5000


def test_groups_map_to_roles(keyward, sso_provider):
    seen = sign_in(keyward, "ops-lee", "sso-admin")
    assert seen["landed"] == f"{keyward.base_url}/account/auth", seen
    lee = user(keyward, sso_provider, "ops-lee@example.test")
    assert lee["role"] == "server_admin", lee


def test_a_password_account_is_not_taken_over(keyward, sso_provider):
    r = requests.post(f"{keyward.base_url}/admin/api/users/", headers=sso_provider,
                      json={"username": "mallory@example.test", "password": "password-of-mallory", "role": "viewer"})
    assert r.status_code == 201, r.text
    seen = sign_in(keyward, "mallory", "sso-refused")
    assert "no keyward account for" in seen["status"], seen
    assert any(e.startswith("403 ") and "/callback/" in e for e in seen["errors"]), seen["errors"]
    assert not any(c["name"] == "kw_session" for c in seen["cookies"]), seen["cookies"]


class RogueProvider:
    """An OpenID provider whose ID tokens each test chooses (forged,
    expired, with a wrong nonce): discovery, keys and a token endpoint on
    loopback; its authorization endpoint answers at once."""

    def __init__(self):
        self.key = RSAKey.generate_key(2048, parameters={"kid": "rogue-1"})
        self.stranger = RSAKey.generate_key(2048, parameters={"kid": "rogue-1"})
        self.tamper = lambda claims: (self.key, claims)
        self.nonce = None
        provider = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def answer(self, status, body, headers=()):
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                data = json.dumps(body).encode() if body is not None else b""
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                url = urllib.parse.urlparse(self.path)
                if url.path == "/.well-known/openid-configuration":
                    self.answer(200, {"issuer": provider.issuer, "authorization_endpoint": provider.issuer + "/authorize",
                                      "token_endpoint": provider.issuer + "/token", "jwks_uri": provider.issuer + "/jwks"})
                elif url.path == "/jwks":
                    self.answer(200, {"keys": [provider.key.as_dict(private=False)]})
                elif url.path == "/authorize":
                    q = dict(urllib.parse.parse_qsl(url.query))
                    provider.nonce = q["nonce"]
                    back = q["redirect_uri"] + "?" + urllib.parse.urlencode({"code": "c0de", "state": q["state"]})
                    self.answer(302, None, [("location", back)])
                else:
                    self.answer(404, {})

            def do_POST(self):
                self.rfile.read(int(self.headers.get("content-length", 0)))
                now = int(time.time())
                claims = {"iss": provider.issuer, "aud": "keyward", "sub": "rogue-sub", "iat": now, "exp": now + 300,
                          "nonce": provider.nonce, "email": "rogue@example.test", "email_verified": True}
                key, claims = provider.tamper(claims)
                token = jwt.encode({"alg": "RS256", "kid": "rogue-1"}, claims, key)
                self.answer(200, {"access_token": "x", "token_type": "Bearer", "id_token": token})

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.issuer = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()


def test_forged_expired_and_wrongly_nonced_id_tokens_are_refused_in_the_browser(keyward):
    rogue = RogueProvider()
    try:
        headers = {"TOKEN": keyward.admin_token()}
        allow_loopback_providers(keyward, headers)
        r = requests.post(f"{keyward.base_url}/admin/api/sso_providers/", headers=headers, json={
            "id": "rogue", "display_name": "Rogue", "issuer": rogue.issuer, "client_id": "keyward",
            "client_secret": "rogue-secret", "default_role": "viewer"})
        assert r.status_code == 201, r.text
        cases = {
            "forged": (lambda c: (rogue.stranger, c), "signature does not verify"),
            "expired": (lambda c: (rogue.key, {**c, "exp": c["iat"] - 600, "iat": c["iat"] - 900}), "expired"),
            "wrong-nonce": (lambda c: (rogue.key, {**c, "nonce": "not-the-one-sent"}), "nonce"),
        }
        for name, (tamper, why) in cases.items():
            rogue.tamper = tamper
            out = subprocess.run(["node", str(BROWSER_TESTS / "sso_answer.js"), keyward.base_url,
                                  os.path.join(SHOTS, f"sso-refused-{name}.png")],
                                 capture_output=True, text=True, timeout=120, cwd=BROWSER_TESTS)
            assert out.returncode == 0, out.stderr
            seen = json.loads(out.stdout.strip().splitlines()[-1])
            assert "/login/sso/rogue/callback/" in seen["landed"], seen
            assert why in seen["text"], (name, seen["text"])
            assert "kw_session" not in seen["cookies"], (name, seen["cookies"])
        # The same provider with an honest token signs in: the refusals above were about the tokens.
        rogue.tamper = lambda c: (rogue.key, c)
        out = subprocess.run(["node", str(BROWSER_TESTS / "sso_answer.js"), keyward.base_url,
                              os.path.join(SHOTS, "sso-rogue-honest.png")],
                             capture_output=True, text=True, timeout=120, cwd=BROWSER_TESTS)
        seen = json.loads(out.stdout.strip().splitlines()[-1])
        assert seen["landed"] == f"{keyward.base_url}/account/auth" and "kw_session" in seen["cookies"], seen
        assert user(keyward, headers, "rogue@example.test") is not None
    finally:
        rogue.stop()
