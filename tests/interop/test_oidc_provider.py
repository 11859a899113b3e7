"""keyward as the connectors' OAuth client against a real external
authorization server: the npm `oidc-provider` (OpenID certified), started on
loopback with rotating refresh tokens and two-second access tokens. Drives
authorize → the provider's login and consent → callback → token → proxy,
expiry and refresh, and client credentials."""

import html
import os
import pathlib
import re
import socket
import subprocess
import time
import urllib.parse

import pytest
import requests

PROVIDERS = pathlib.Path(__file__).parents[1] / "providers"


def start_provider(keyward, sso_callback=None):
    """The npm oidc-provider on a free loopback port, with keyward's
    connection callback (and SSO callback) registered: its process and issuer."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    callbacks = [f"{keyward.base_url}/oauth/v1/connections/callback/"] + ([sso_callback] if sso_callback else [])
    process = subprocess.Popen(["node", "oidc_provider.mjs", str(port), *callbacks], cwd=PROVIDERS,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in process.stdout:
        if line.strip() == "ready":
            break
    return process, f"http://127.0.0.1:{port}"


@pytest.fixture
def oidc_provider(keyward):
    process, issuer = start_provider(keyward)
    yield issuer
    process.terminate()
    process.wait(timeout=10)


def walk_provider_pages(authorization_url, keyward, username=None, password=None):
    """What a person does: follow keyward's link, sign in to keyward as the
    connection's owner (the admin unless named), then at the provider sign
    in and consent. Returns the browser and the redirect back to keyward's
    callback."""
    callback = f"{keyward.base_url}/oauth/v1/connections/callback/"
    browser = requests.Session()
    response = browser.get(authorization_url, allow_redirects=False)
    for _ in range(20):
        if response.status_code in (302, 303):
            location = urllib.parse.urljoin(response.url, response.headers["location"])
            if location.startswith(callback):
                return browser, location
            response = browser.get(location, allow_redirects=False)
        elif response.status_code == 200:
            action = re.search(r'<form[^>]*action="([^"]+)"', response.text).group(1)
            fields = dict(re.findall(r'<input[^>]*type="hidden"[^>]*name="([^"]+)"[^>]*value="([^"]*)"', response.text))
            fields = {k: html.unescape(v) for k, v in fields.items()}
            if 'name="login"' in response.text:
                fields.update(login="alice", password="anything")
            elif 'name="decision" value="continue"' in response.text:
                # An agent's connect link: the owner confirms.
                fields.update(decision="continue")
            elif 'name="username"' in response.text:
                fields.update(username=username or keyward.username, password=password or keyward.password)
            response = browser.post(urllib.parse.urljoin(response.url, action), data=fields, allow_redirects=False)
        else:
            raise AssertionError(f"unexpected {response.status_code}: {response.text[:300]}")
    raise AssertionError("the provider never sent the user back")


def allow_loopback_providers(keyward, headers):
    """The provider runs on loopback: development mode, turned on as the
    docs say (off by default)."""
    response = requests.put(f"{keyward.base_url}/admin/api/config/keyward.outbound.allow_private_addresses/",
                            headers=headers, json={"value": True})
    assert response.status_code == 200, response.text


def let_owners_read_tokens(keyward, headers):
    """These tests read their provider tokens as the connection's owner,
    which an admin allows (off by default; see test_agents.py)."""
    response = requests.put(f"{keyward.base_url}/admin/api/config/keyward.connections.owners_read_tokens/",
                            headers=headers, json={"value": True})
    assert response.status_code == 200, response.text


def register(keyward, headers, body):
    response = requests.post(f"{keyward.base_url}/admin/api/outbound_clients/", headers=headers, json=body)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def register_code_client(keyward, headers, oidc_provider):
    """The provider's authorization-code client (rotating refresh tokens) as
    keyward's outbound client: its id."""
    return register(keyward, headers, {
        "name": "oidc-provider", "grant_type": "authorization_code",
        "client_id": "keyward-code", "client_secret": "code-secret-for-tests-0123456789",
        "authorization_url": f"{oidc_provider}/auth", "token_url": f"{oidc_provider}/token",
        "scopes": ["openid", "offline_access", "api"], "extra_authorization_params": {"prompt": "consent"},
        "token_endpoint_auth": "basic", "pkce_enabled": True, "api_base_url": f"{oidc_provider}/",
    })


def connect(keyward, headers, outbound_id):
    response = requests.post(f"{keyward.base_url}/api/v2/connections/", headers=headers,
                             json={"outbound_client_id": outbound_id, "name": "oidc-provider"})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_authorization_code_token_proxy_and_refresh(keyward, oidc_provider):
    headers = {"TOKEN": keyward.admin_token()}
    allow_loopback_providers(keyward, headers)
    let_owners_read_tokens(keyward, headers)
    outbound = register_code_client(keyward, headers, oidc_provider)
    connection = connect(keyward, headers, outbound)
    base = f"{keyward.base_url}/api/v2/connections/{connection}"

    started = requests.get(f"{base}/authorize/", headers=headers)
    assert started.status_code == 200, started.text
    browser, back = walk_provider_pages(started.json()["authorization_url"], keyward)
    assert requests.get(back).status_code == 403, "another browser cannot complete it"
    browser, back = walk_provider_pages(requests.get(f"{base}/authorize/", headers=headers).json()["authorization_url"],
                                        keyward)
    callback = browser.get(back)
    assert callback.status_code == 200 and "Connected" in callback.text, callback.text
    assert requests.get(f"{base}/", headers=headers).json()["status"] == "active"

    first = requests.get(f"{base}/token/", headers=headers).json()
    me = requests.get(f"{base}/proxy/me", headers=headers)
    assert me.status_code == 200 and me.json()["sub"] == "alice", me.text

    # Two-second access tokens: renewed with the (rotating) refresh token.
    seen = {first["access_token"]}
    for _ in range(2):
        time.sleep(1.2)
        token = requests.get(f"{base}/token/", headers=headers)
        assert token.status_code == 200, token.text
        assert token.json()["access_token"] not in seen
        seen.add(token.json()["access_token"])
        assert requests.get(f"{base}/proxy/me", headers=headers).json()["sub"] == "alice"


def test_client_credentials(keyward, oidc_provider):
    headers = {"TOKEN": keyward.admin_token()}
    allow_loopback_providers(keyward, headers)
    let_owners_read_tokens(keyward, headers)
    outbound = register(keyward, headers, {
        "name": "oidc-provider machine", "grant_type": "client_credentials",
        "client_id": "keyward-cc", "client_secret": "cc-secret-for-tests-0123456789",
        "token_url": f"{oidc_provider}/token", "scopes": ["api"], "token_endpoint_auth": "post",
        "api_base_url": f"{oidc_provider}/",
    })
    connection = connect(keyward, headers, outbound)
    token = requests.get(f"{keyward.base_url}/api/v2/connections/{connection}/token/", headers=headers)
    assert token.status_code == 200, token.text
    again = requests.get(f"{keyward.base_url}/api/v2/connections/{connection}/token/", headers=headers)
    assert again.json()["access_token"] == token.json()["access_token"], "held while fresh"
    # The provider knows it: its introspection says active.
    introspection = requests.post(f"{oidc_provider}/token/introspection",
                                  data={"token": token.json()["access_token"], "client_id": "keyward-cc",
                                        "client_secret": "cc-secret-for-tests-0123456789"})
    assert introspection.status_code == 200 and introspection.json().get("active") is True, introspection.text
