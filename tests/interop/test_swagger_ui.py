"""The bundled Swagger UI works for a person: headless Chromium opens it,
uses "Try it out" on createRefreshToken, and gets a refresh token."""

import json
import os
import pathlib
import subprocess

import requests

BROWSER_TESTS = pathlib.Path(__file__).parents[1] / "browser"


def test_try_it_out_creates_a_refresh_token(keyward):
    refresh = requests.post(f"{keyward.base_url}/integration/v1/createRefreshToken/",
                            data={"username": keyward.username, "password": keyward.password, "name": "setup"}).json()
    access = requests.post(f"{keyward.base_url}/integration/v1/createAPIAccessToken/",
                           data={"refresh_token": refresh["refresh_token"], "user_id": refresh["user_id"]}).json()
    enabled = requests.put(f"{keyward.base_url}/admin/api/config/alation.feature_flags.enable_swagger/",
                           headers={"TOKEN": access["api_access_token"]}, json={"value": True})
    assert enabled.status_code == 200, enabled.text

    out = subprocess.run(["node", str(BROWSER_TESTS / "swagger_try_it_out.js"), keyward.base_url, keyward.username, keyward.password],
                         capture_output=True, text=True, timeout=120, cwd=BROWSER_TESTS, env=dict(os.environ))
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["status"] == "201", result
    body = json.loads(result["body"])
    assert body["refresh_token"].startswith("kwrt_")
    assert body["name"] == "from-swagger"
