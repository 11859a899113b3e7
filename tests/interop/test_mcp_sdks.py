"""The official MCP SDKs (Python `mcp`, TypeScript `@modelcontextprotocol/sdk`
and `@modelcontextprotocol/client`) connect to an MCP server behind keyward's
gateway: discovery from the 401, registration (dynamic, or pre-registered),
authorization code + PKCE with `resource`, a tool call, and refresh. The
browser part (sign-in and consent) is answered by a plain requests session.
"""

import base64
import json
import os
import socket
import subprocess
import sys
import time

import anyio
import httpx2
import pytest
import requests
from mcp import Client
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider, TokenStorage
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata

from test_delegated_oauth import admin_token, sign_in_and_consent

HERE = os.path.dirname(os.path.abspath(__file__))
NODE_CLIENT = os.path.join(HERE, "..", "mcp", "mcp_client.mjs")
REDIRECT_URI = "http://127.0.0.1:9/callback"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def protected_mcp(keyward):
    """An MCP server declared to keyward as resource `demo` with an upstream."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "mcp_demo_server.py"), "127.0.0.1", str(port), "/mcp"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    response = requests.post(
        f"{keyward.base_url}/admin/api/resources/",
        headers={"TOKEN": admin_token(keyward)},
        json={
            "name": "demo",
            "display_name": "Demo MCP server",
            "scopes": [{"name": "tools", "description": "use the demo's tools"}],
            "required_scopes": ["tools"],
            "upstream_url": f"http://127.0.0.1:{port}/mcp",
        },
    )
    assert response.status_code == 201, response.text
    yield f"{keyward.base_url}/r/demo"
    server.terminate()
    server.wait(timeout=10)


def jwt_claims(token):
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def pre_registered_client(keyward):
    response = requests.post(
        f"{keyward.base_url}/oauth/v1/register/",
        headers={"TOKEN": admin_token(keyward)},
        # Refresh tokens without asking: the TypeScript SDK 1.x never asks
        # for offline_access.
        json={"name": "Pre-registered MCP client", "redirect_uris": [REDIRECT_URI], "grant_type": "public",
              "refresh_token_lifetime": 2592000, "access_token_lifetime": 3600, "offline_access": "always"},
    )
    assert response.status_code == 201, response.text
    return response.json()["client_id"]


class MemoryStorage(TokenStorage):
    def __init__(self, client_info=None):
        self.client_info, self.tokens = client_info, None

    async def get_tokens(self):
        return self.tokens

    async def set_tokens(self, tokens):
        self.tokens = tokens

    async def get_client_info(self):
        return self.client_info

    async def set_client_info(self, client_info):
        self.client_info = client_info


def run_python_client(keyward, server_url, client_info=None, client_metadata_url=None):
    """Connects with the Python SDK, calls the tool, refreshes, calls again;
    the storage it used."""
    storage = MemoryStorage(client_info)
    answers = {}

    async def redirect_handler(authorization_url):
        # What the person does in the browser, off the event loop.
        answers["back"] = await anyio.to_thread.run_sync(sign_in_and_consent, keyward, authorization_url)

    async def callback_handler():
        query = dict(httpx2.URL(answers["back"]).params)
        return AuthorizationCodeResult(code=query["code"], state=query.get("state"), iss=query.get("iss"))

    provider = OAuthClientProvider(
        server_url=server_url,
        client_metadata=OAuthClientMetadata(
            client_name="Python MCP SDK", redirect_uris=[REDIRECT_URI],
            grant_types=["authorization_code", "refresh_token"], token_endpoint_auth_method="none"),
        storage=storage, redirect_handler=redirect_handler, callback_handler=callback_handler,
        client_metadata_url=client_metadata_url)

    async def session():
        http = httpx2.AsyncClient(auth=provider, timeout=30)
        async with http, Client(streamable_http_client(server_url, http_client=http)) as client:
            first = await client.call_tool("echo", {"text": "hello"})
            assert "echo: hello" in first.content[0].text
            assert "token passed through: False" in first.content[0].text
            token = storage.tokens.access_token
            claims = jwt_claims(token)
            assert claims["aud"] == server_url
            assert "tools" in claims["scope"].split()
            assert storage.tokens.refresh_token
            # The access token is used up: the SDK refreshes (with `resource`).
            provider.context.token_expiry_time = time.time() - 1
            second = await client.call_tool("echo", {"text": "again"})
            assert "echo: again" in second.content[0].text
            assert storage.tokens.access_token != token
            assert jwt_claims(storage.tokens.access_token)["aud"] == server_url

    anyio.run(session)
    return storage


@pytest.mark.parametrize("registration", ["dynamic", "pre-registered"])
def test_python_sdk(keyward, protected_mcp, registration):
    client_info = None
    if registration == "pre-registered":
        client_info = OAuthClientInformationFull(
            client_id=pre_registered_client(keyward), redirect_uris=[REDIRECT_URI], token_endpoint_auth_method="none")
    storage = run_python_client(keyward, protected_mcp, client_info=client_info)
    if registration == "dynamic":
        assert storage.client_info.client_id.startswith("oac_")


def run_typescript_client(keyward, server_url, package, client):
    """Drives tests/mcp/mcp_client.mjs: `client` is a pre-registered client
    id, a metadata document URL, or empty (dynamic registration)."""
    node = subprocess.Popen(
        ["node", NODE_CLIENT, package, server_url, REDIRECT_URI, client],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )

    def expect(prefix):
        line = node.stdout.readline().strip()
        assert line.startswith(prefix + " "), f"{line!r}; stderr: {node.stderr.read() if node.poll() is not None else ''}"
        return line[len(prefix) + 1:]

    def say(line):
        node.stdin.write(line + "\n")
        node.stdin.flush()

    try:
        say(sign_in_and_consent(keyward, expect("AUTHORIZE")))
        assert "echo: hello" in expect("RESULT")
        token = expect("TOKEN")
        assert jwt_claims(token)["aud"] == server_url
        if client.startswith("https://"):
            assert jwt_claims(token)["client_id"] == client
        # Revoked: the next call is refused, the SDK refreshes and goes on.
        revoked = requests.post(f"{keyward.base_url}/oauth/v2/revoke/",
                                data={"token": token, "client_id": jwt_claims(token)["client_id"]})
        assert revoked.status_code == 200
        say("continue")
        assert "echo: again" in expect("RESULT")
        assert expect("TOKEN") != token
        assert node.wait(timeout=30) == 0
    finally:
        if node.poll() is None:
            node.kill()


@pytest.mark.parametrize("package", ["@modelcontextprotocol/sdk", "@modelcontextprotocol/client"])
@pytest.mark.parametrize("registration", ["dynamic", "pre-registered"])
def test_typescript_sdk(keyward, protected_mcp, package, registration):
    client = pre_registered_client(keyward) if registration == "pre-registered" else ""
    run_typescript_client(keyward, protected_mcp, package, client)
