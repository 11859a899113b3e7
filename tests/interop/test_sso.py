"""Single sign-on against a real OpenID Connect provider (the npm
`oidc-provider`, OpenID certified) on loopback, in headless Chromium: the
login page's "Sign in with" button, first-sign-in provisioning with the
default role, group → role mapping, an SSO user making a refresh token at
/account/auth and using it with the reference's /integration/v1 calls, and
a password account that the provider's user cannot take over."""

import json
import os
import subprocess

import pytest
import requests

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
    assert "signs in with a password" in seen["status"], seen
    assert any(e.startswith("403 ") and "/callback/" in e for e in seen["errors"]), seen["errors"]
    assert not any(c["name"] == "kw_session" for c in seen["cookies"]), seen["cookies"]
