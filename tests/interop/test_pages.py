"""keyward's sign-in and consent pages as a person sees them, in headless
Chromium: the consent page says what each scope grants, and a connection's
start link asks its owner to sign in and refuses anyone else. Screenshots
are written to $KEYWARD_SCREENSHOTS (default: a temp dir) to be looked at."""

import base64
import hashlib
import json
import os
import pathlib
import secrets
import subprocess
import tempfile
import urllib.parse

import requests

BROWSER_TESTS = pathlib.Path(__file__).parents[1] / "browser"
SHOTS = os.environ.get("KEYWARD_SCREENSHOTS") or tempfile.mkdtemp(prefix="keyward-shots-")


def walk(url, username, password, name, click=None):
    out = subprocess.run(["node", str(BROWSER_TESTS / "sign_in_pages.js"), url, username, password, SHOTS, name,
                          *([click] if click else [])],
                         capture_output=True, text=True, timeout=120, cwd=BROWSER_TESTS, env=dict(os.environ))
    assert out.returncode == 0, out.stderr
    assert os.path.getsize(os.path.join(SHOTS, f"{name}-sign-in.png")) > 5000
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_consent_page_says_what_each_scope_grants(keyward):
    headers = {"TOKEN": keyward.admin_token()}
    client = requests.post(f"{keyward.base_url}/oauth/v1/register/", headers=headers, json={
        "name": "Reporting Assistant", "redirect_uris": ["http://127.0.0.1/cb"], "grant_type": "public",
        "refresh_token_lifetime": 259200, "access_token_lifetime": 3600}).json()
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    query = urllib.parse.urlencode({"response_type": "code", "client_id": client["client_id"],
                                    "redirect_uri": "http://127.0.0.1/cb", "scope": "api mcp offline_access",
                                    "state": "s", "code_challenge": challenge, "code_challenge_method": "S256"})
    seen = walk(f"{keyward.base_url}/oauth/v1/authorize/?{query}", keyward.username, keyward.password, "consent")
    assert "Reporting Assistant" in seen["signIn"]
    consent = seen["after"]
    for words in ["everything your role allows", "no other API", "grants nothing on its own", "Allow", "Deny"]:
        assert words in consent, consent


def end_system(keyward, headers):
    """An outbound client at a provider this machine cannot reach (the
    browser's request to it is what the tests look at)."""
    return requests.post(f"{keyward.base_url}/admin/api/outbound_clients/", headers=headers, json={
        "name": "End system", "grant_type": "authorization_code", "client_id": "c", "client_secret": "s",
        "authorization_url": "https://account.endsystem.example/authorize",
        "token_url": "https://api.endsystem.example/token", "api_base_url": "https://api.endsystem.example/"}).json()


def test_a_connection_link_asks_its_owner_to_sign_in_and_refuses_others(keyward):
    # Its sign-in form leads (through the start link) to the provider, so
    # the page's form-action must allow the provider's origin: only a real
    # browser shows that.
    headers = {"TOKEN": keyward.admin_token()}
    outbound = end_system(keyward, headers)
    connection = requests.post(f"{keyward.base_url}/api/v2/connections/", headers=headers,
                               json={"outbound_client_id": outbound["id"], "name": "mine"}).json()
    link = requests.get(f"{keyward.base_url}/api/v2/connections/{connection['id']}/authorize/",
                        headers=headers).json()["authorization_url"]
    created = requests.post(f"{keyward.base_url}/admin/api/users/", headers=headers,
                            json={"username": "victim", "password": "victims-password", "role": "viewer"})
    assert created.status_code == 201, created.text
    seen = walk(link, "victim", "victims-password", "connection-other-user")
    assert "Sign in" in seen["signIn"] and "connect an account" in seen["signIn"]
    assert seen["status"] == 403 and "another user" in seen["after"], seen
    assert not any("endsystem" in u for u in seen["visited"]), seen
    seen = walk(requests.get(f"{keyward.base_url}/api/v2/connections/{connection['id']}/authorize/",
                             headers=headers).json()["authorization_url"], keyward.username, keyward.password,
                "connection-owner")
    assert seen["visited"][-1].startswith("https://account.endsystem.example/authorize?"), seen
    assert "code_challenge=" in seen["visited"][-1]


def test_an_agents_connect_link_names_the_agent_and_leads_on_once_confirmed(keyward):
    # The confirmation's form posts to keyward, which sends the browser on
    # to the provider: the page's form-action must allow that origin, which
    # only a real browser checks.
    from test_agents import ACCESS_TOKEN, TOKEN_EXCHANGE, user_access_token
    from test_delegated_oauth import register as register_app
    headers = {"TOKEN": keyward.admin_token()}
    outbound = end_system(keyward, headers)
    agent = requests.post(f"{keyward.base_url}/admin/api/m2m_clients/", headers=headers,
                          json={"name": "Reporting Agent", "access_token_duration": 600, "role": "viewer"}).json()
    requests.patch(f"{keyward.base_url}/admin/api/m2m_clients/{agent['client_id']}/", headers=headers,
                   json={"token_exchange": True}).raise_for_status()
    metadata = requests.get(f"{keyward.base_url}/.well-known/oauth-authorization-server").json()
    subject = user_access_token(keyward, metadata, register_app(keyward, "confidential", "https://app.example/callback"))
    refused = requests.post(metadata["token_endpoint"], auth=(agent["client_id"], agent["client_secret"]), data={
        "grant_type": TOKEN_EXCHANGE, "subject_token": subject, "subject_token_type": ACCESS_TOKEN,
        "audience": outbound["id"]}).json()
    assert refused["error"] == "authorization_required", refused
    seen = walk(refused["connect_uri"], keyward.username, keyward.password, "agent-connect",
                click="button[value=continue]")
    assert "Connect End system?" in seen["after"] and "Reporting Agent" in seen["after"], seen
    assert seen["visited"][-1].startswith("https://account.endsystem.example/authorize?"), seen


def test_the_account_page_makes_and_revokes_tokens(keyward):
    """Account Settings > Authentication, by a person: the tokens it shows
    work with the reference's /integration/v1 calls, the copy button copies,
    and a revoked token stops working."""
    out = subprocess.run(["node", str(BROWSER_TESTS / "account_page.js"), keyward.base_url, keyward.username,
                          keyward.password, SHOTS], capture_output=True, text=True, timeout=120, cwd=BROWSER_TESTS)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["errors"] == [], seen["errors"]
    assert seen["refresh"].startswith("kwrt_") and seen["access"].startswith("kwat_")
    assert seen["copyVisible"] and seen["copied"] == "Copied"
    assert seen["clipboard"] == seen["refresh"]
    assert "REVOKED" in seen["afterRevoke"]
    for shot in ["account-sign-in", "account-refresh-token-created", "account-api-access-token-created"]:
        assert os.path.getsize(os.path.join(SHOTS, f"{shot}.png")) > 5000
    # The access token was revoked with its refresh token.
    r = requests.post(f"{keyward.base_url}/integration/v1/validateAPIAccessToken/",
                      data={"api_access_token": seen["access"], "user_id": 1})
    assert r.status_code == 401 and r.json()["token_status"] == "REVOKED", r.text
