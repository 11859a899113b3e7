"""Credentials for agents, against the npm oidc-provider as the other
company's API: an agent (an M2M client an admin allowed to exchange
tokens) trades a user's keyward access token for the user's provider token
with RFC 8693 through Authlib, and calls the provider with it; for a user
without a connection it gets `authorization_required` and a connect link,
which the user follows in a browser, after which the exchange succeeds."""

import secrets

import requests
from authlib.integrations.requests_client import OAuth2Session

from test_delegated_oauth import register as register_app, sign_in_and_consent
from test_oidc_provider import (  # noqa: F401 (oidc_provider is a fixture)
    allow_loopback_providers, connect, oidc_provider, register_code_client, walk_provider_pages)

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token"


def user_access_token(keyward, metadata, app, username=None, password=None):
    """A user's keyward access token, as an app acting for them gets it."""
    session = OAuth2Session(app["client_id"], app["client_secret"], redirect_uri="https://app.example/callback",
                            scope="api", code_challenge_method="S256")
    verifier = secrets.token_urlsafe(48)
    url, _ = session.create_authorization_url(metadata["authorization_endpoint"], code_verifier=verifier)
    back = sign_in_and_consent(keyward, url, username, password)
    return session.fetch_token(metadata["token_endpoint"], authorization_response=back, code_verifier=verifier)["access_token"]


def test_an_agent_gets_a_users_provider_token_or_a_connect_link(keyward, oidc_provider):
    headers = {"TOKEN": keyward.admin_token()}
    allow_loopback_providers(keyward, headers)
    metadata = requests.get(f"{keyward.base_url}/.well-known/oauth-authorization-server").json()
    assert TOKEN_EXCHANGE in metadata["grant_types_supported"]
    outbound = register_code_client(keyward, headers, oidc_provider)
    # The admin's connection, authorized in the browser.
    connection = connect(keyward, headers, outbound)
    started = requests.get(f"{keyward.base_url}/api/v2/connections/{connection}/authorize/", headers=headers)
    browser, back = walk_provider_pages(started.json()["authorization_url"], keyward)
    assert browser.get(back).status_code == 200

    agent = requests.post(f"{keyward.base_url}/admin/api/m2m_clients/", headers=headers,
                          json={"name": "agent", "access_token_duration": 600, "role": "viewer"}).json()
    allowed = requests.patch(f"{keyward.base_url}/admin/api/m2m_clients/{agent['client_id']}/", headers=headers,
                             json={"token_exchange": True})
    assert allowed.status_code == 200 and allowed.json()["token_exchange"] is True, allowed.text
    app = register_app(keyward, "confidential", "https://app.example/callback")

    # The agent exchanges the admin's token (Authlib, client_secret_basic)
    # and calls the provider with what it gets.
    agent_session = OAuth2Session(agent["client_id"], agent["client_secret"])
    subject = user_access_token(keyward, metadata, app)
    exchanged = agent_session.fetch_token(metadata["token_endpoint"], grant_type=TOKEN_EXCHANGE, subject_token=subject,
                                          subject_token_type=ACCESS_TOKEN, audience=outbound)
    assert exchanged["issued_token_type"] == ACCESS_TOKEN and exchanged["token_type"] == "Bearer", exchanged
    assert 1 <= exchanged["expires_in"] <= 2, "the provider's two-second token, as it really is"
    assert "refresh_token" not in exchanged
    me = requests.get(f"{oidc_provider}/me", headers={"Authorization": f"Bearer {exchanged['access_token']}"})
    assert me.status_code == 200 and me.json()["sub"] == "alice", me.text

    # bob has no connection: the agent is told to send him to a link.
    created = requests.post(f"{keyward.base_url}/admin/api/users/", headers=headers,
                            json={"username": "bob", "password": "bob-password-123", "role": "viewer"})
    assert created.status_code == 201, created.text
    bobs = user_access_token(keyward, metadata, app, "bob", "bob-password-123")
    form = {"grant_type": TOKEN_EXCHANGE, "subject_token": bobs, "subject_token_type": ACCESS_TOKEN, "audience": outbound}
    refused = requests.post(metadata["token_endpoint"], data=form, auth=(agent["client_id"], agent["client_secret"]))
    assert refused.status_code == 400, refused.text
    body = refused.json()
    assert body["error"] == "authorization_required", body
    assert body["connect_uri"].startswith(keyward.base_url) and body["expires_in"] == 600
    # Another agent-side client (not allowed) gets nothing, not even a link.
    other = requests.post(f"{keyward.base_url}/admin/api/m2m_clients/", headers=headers,
                          json={"name": "not allowed", "access_token_duration": 600, "role": "viewer"}).json()
    denied = requests.post(metadata["token_endpoint"], data=form, auth=(other["client_id"], other["client_secret"]))
    assert denied.status_code == 400 and denied.json()["error"] == "unauthorized_client"
    assert "connect_uri" not in denied.json()

    # bob follows the link: signs in to keyward, authorizes at the provider.
    browser, back = walk_provider_pages(body["connect_uri"], keyward, "bob", "bob-password-123")
    done = browser.get(back)
    assert done.status_code == 200 and "Connected" in done.text, done.text
    exchanged = agent_session.fetch_token(metadata["token_endpoint"], grant_type=TOKEN_EXCHANGE, subject_token=bobs,
                                          subject_token_type=ACCESS_TOKEN, audience=outbound)
    me = requests.get(f"{oidc_provider}/me", headers={"Authorization": f"Bearer {exchanged['access_token']}"})
    assert me.status_code == 200, me.text
    # The link was single use: bob's own signed-in browser gets nowhere now.
    assert browser.get(body["connect_uri"], allow_redirects=False).status_code == 400
