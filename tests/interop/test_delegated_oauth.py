"""Authorization code + PKCE and refresh, driven by Authlib (an OAuth client
library in another language) for a confidential and a public client; the
login and consent pages are answered by a plain requests session."""

import html
import re
import secrets

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session


def admin_token(keyward):
    refresh = requests.post(
        f"{keyward.base_url}/integration/v1/createRefreshToken/",
        data={"username": keyward.username, "password": keyward.password, "name": "interop"},
    ).json()
    access = requests.post(
        f"{keyward.base_url}/integration/v1/createAPIAccessToken/",
        data={"refresh_token": refresh["refresh_token"], "user_id": refresh["user_id"]},
    ).json()
    return access["api_access_token"]


def register(keyward, grant_type, redirect_uri):
    response = requests.post(
        f"{keyward.base_url}/oauth/v1/register/",
        headers={"TOKEN": admin_token(keyward)},
        json={
            "name": f"Authlib {grant_type}",
            "redirect_uris": [redirect_uri],
            "grant_type": grant_type,
            "refresh_token_lifetime": 2592000,
            "access_token_lifetime": 3600,
            "pkce_enabled": True,
        },
    )
    assert response.status_code == 201, response.text
    return response.json()


def hidden(page, name):
    match = re.search(f'name="{name}" value="([^"]*)"', page)
    assert match, f"no {name} in {page}"
    return html.unescape(match.group(1))


def sign_in_and_consent(keyward, authorization_url, username=None, password=None):
    """What a person (the admin unless named) does in the browser; returns
    the redirect to the app."""
    browser = requests.Session()
    login = browser.get(authorization_url, allow_redirects=False)
    assert login.status_code == 200 and "Sign in" in login.text
    signed_in = browser.post(
        f"{keyward.base_url}/oauth/v1/login/",
        data={
            "username": username or keyward.username,
            "password": password or keyward.password,
            "csrf": hidden(login.text, "csrf"),
            "return_to": hidden(login.text, "return_to"),
        },
        allow_redirects=False,
    )
    assert signed_in.status_code == 303, signed_in.text
    consent = browser.get(keyward.base_url + signed_in.headers["location"], allow_redirects=False)
    assert consent.status_code == 200 and "Allow" in consent.text
    approved = browser.post(
        f"{keyward.base_url}/oauth/v1/authorize/",
        data={"csrf": hidden(consent.text, "csrf"), "request": hidden(consent.text, "request"), "decision": "approve"},
        allow_redirects=False,
    )
    assert approved.status_code == 303
    return approved.headers["location"]


@pytest.mark.parametrize("grant_type", ["confidential", "public"])
def test_authlib_code_flow_and_refresh(keyward, grant_type):
    metadata = requests.get(f"{keyward.base_url}/.well-known/oauth-authorization-server").json()
    assert metadata["issuer"] == keyward.base_url
    redirect_uri = "http://127.0.0.1/callback" if grant_type == "public" else "https://app.example/callback"
    client = register(keyward, grant_type, redirect_uri)
    if grant_type == "public":
        # Loopback redirect: the app picks its own port (RFC 8252 §7.3).
        redirect_uri = "http://127.0.0.1:50123/callback"
        session = OAuth2Session(client["client_id"], redirect_uri=redirect_uri, scope="api offline_access",
                                token_endpoint_auth_method="none", code_challenge_method="S256")
    else:
        session = OAuth2Session(client["client_id"], client["client_secret"], redirect_uri=redirect_uri,
                                scope="api offline_access", code_challenge_method="S256")
    verifier = secrets.token_urlsafe(48)
    url, state = session.create_authorization_url(metadata["authorization_endpoint"], code_verifier=verifier)
    back = sign_in_and_consent(keyward, url)
    assert back.startswith(redirect_uri)
    assert f"iss={requests.utils.quote(keyward.base_url, safe='')}" in back

    token = session.fetch_token(metadata["token_endpoint"], authorization_response=back, code_verifier=verifier)
    assert token["token_type"] == "Bearer"
    assert token["expires_in"] == 3600
    assert token["scope"] == "api offline_access"
    users = requests.get(f"{keyward.base_url}/admin/api/users/", headers={"Authorization": f"Bearer {token['access_token']}"})
    assert users.status_code == 200, users.text

    refreshed = session.refresh_token(metadata["token_endpoint"])
    assert refreshed["refresh_token"] != token["refresh_token"]
    users = requests.get(f"{keyward.base_url}/admin/api/users/", headers={"Authorization": f"Bearer {refreshed['access_token']}"})
    assert users.status_code == 200
