"""The reference's own Python and cURL samples (refresh-and-access-token-api),
kept verbatim in reference_samples/, run against keyward with only the base
URL, the user, the password and the values the samples say to replace
substituted. Their printed responses must be the documented ones."""

import json
import os
import pathlib
import subprocess
import sys
from datetime import datetime

import pytest

SAMPLES = pathlib.Path(__file__).parent / "reference_samples"
REFERENCE = pathlib.Path(__file__).parents[3] / "shared" / "reference" / "refresh-and-access-token-api.txt"
SAMPLE_BASE_URL = "https://alation.yourcompany.com"
SAMPLE_USERNAME = "[email\u00a0protected]"  # with a no-break space, as in the reference
SAMPLE_REFRESH_TOKEN = "6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b"
SAMPLE_ACCESS_TOKEN = "VSp5oVbFx-Nk6aTd6Ot4H1Z1LaCIkpjv9_su-brvuC8"


def run_python_sample(name, keyward, refresh_token=None, access_token=None, user_id=None):
    source = (SAMPLES / f"{name}.py").read_text()
    source = source.replace(SAMPLE_BASE_URL, keyward.base_url)
    source = source.replace(f"'{SAMPLE_USERNAME}'", repr(keyward.username))
    source = source.replace("'password':'secret'", f"'password':{keyward.password!r}")
    if refresh_token:
        source = source.replace(SAMPLE_REFRESH_TOKEN, refresh_token)
    if access_token:
        source = source.replace(SAMPLE_ACCESS_TOKEN, access_token)
    if user_id is not None:
        source = source.replace('"user_id": 102', f'"user_id": {user_id}')
    out = subprocess.run([sys.executable, "-c", source], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def run_curl_sample(name, keyward, **variables):
    """A sample's curl line, verbatim, with its shell variables set."""
    line = (SAMPLES / f"{name}.curl").read_text().strip()
    endpoint = name_to_endpoint(name)
    env = dict(os.environ, BASE_URL=f"{keyward.base_url}/integration/v1/{endpoint}/", **variables)
    out = subprocess.run(["bash", "-c", line], capture_output=True, text=True, env=env)
    # The createAPIAccessToken sample omits -X, so curl first tries a host
    # called "POST" (and fails); the request to BASE_URL is the one we read.
    return json.loads(out.stdout)


def name_to_endpoint(name):
    return {
        "regen_refresh_token": "regenRefreshToken",
        "create_api_access_token": "createAPIAccessToken",
        "revoke_api_access_tokens": "revokeAPIAccessTokens",
        "validate_api_access_token": "validateAPIAccessToken",
        "validate_refresh_token": "validateRefreshToken",
    }[name]


def assert_timestamp(value):
    parsed = datetime.fromisoformat(value)
    assert parsed.tzinfo is not None, f"{value} is not timezone-aware"
    return parsed


def assert_refresh_token_response(body, user_id=None):
    for field in ["refresh_token", "user_id", "created_at", "name", "token_expires_at", "token_status", "last_used_at"]:
        assert field in body, (field, body)
    assert body["token_status"] == "ACTIVE"
    assert (assert_timestamp(body["token_expires_at"]) - assert_timestamp(body["created_at"])).days == 60
    if user_id is not None:
        assert body["user_id"] == user_id


def assert_access_token_response(body, user_id):
    for field in ["api_access_token", "user_id", "created_at", "token_expires_at", "token_status"]:
        assert field in body, (field, body)
    assert body["user_id"] == user_id
    assert body["token_status"] == "ACTIVE"
    assert (assert_timestamp(body["token_expires_at"]) - assert_timestamp(body["created_at"])).total_seconds() == 24 * 3600


def test_the_copies_are_verbatim():
    if not REFERENCE.exists():
        pytest.fail(f"the reference is not beside the checkout: {REFERENCE}")
    reference = REFERENCE.read_text()
    for sample in SAMPLES.iterdir():
        assert sample.read_text().strip() in reference, f"{sample.name} differs from the reference"


def test_python_samples(keyward):
    created = run_python_sample("create_refresh_token", keyward)
    assert_refresh_token_response(created)
    assert created["name"] == "My Precious Token"
    assert created["last_used_at"] is None
    user_id, refresh = created["user_id"], created["refresh_token"]

    valid = run_python_sample("validate_refresh_token", keyward, refresh_token=refresh, user_id=user_id)
    assert_refresh_token_response(valid, user_id)

    access = run_python_sample("create_api_access_token", keyward, refresh_token=refresh, user_id=user_id)
    assert_access_token_response(access, user_id)
    token = access["api_access_token"]
    valid = run_python_sample("validate_api_access_token", keyward, access_token=token, user_id=user_id)
    assert_access_token_response(valid, user_id)
    assert valid["api_access_token"] == token

    revoked = run_python_sample("revoke_api_access_tokens", keyward, refresh_token=refresh, user_id=user_id)
    assert revoked == {"detail": f"Revoked active access tokens for user: '{user_id}'"}
    after = run_python_sample("validate_api_access_token", keyward, access_token=token, user_id=user_id)
    assert after["token_status"] == "REVOKED"

    regen = run_python_sample("regen_refresh_token", keyward, refresh_token=refresh, user_id=user_id)
    assert_refresh_token_response(regen, user_id)
    assert regen["name"] == "My Precious Token"
    assert regen["refresh_token"] != refresh
    old = run_python_sample("validate_refresh_token", keyward, refresh_token=refresh, user_id=user_id)
    assert old["token_status"] == "REVOKED"


def test_curl_samples(keyward):
    script = (SAMPLES / "create_refresh_token.sh").read_text()
    script = script.replace(SAMPLE_BASE_URL, keyward.base_url)
    script = script.replace(f'USER_ID="{SAMPLE_USERNAME}"', f'USER_ID="{keyward.username}"')
    script = script.replace('PASSWORD="secret"', f'PASSWORD="{keyward.password}"')
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    created = json.loads(out.stdout)
    assert_refresh_token_response(created)
    assert created["name"] == "My Precious"
    user_id, refresh = created["user_id"], created["refresh_token"]
    ids = {"USER_ID": str(user_id), "REFRESH_TOKEN": refresh}

    assert_refresh_token_response(run_curl_sample("validate_refresh_token", keyward, **ids), user_id)
    access = run_curl_sample("create_api_access_token", keyward, **ids)
    assert_access_token_response(access, user_id)
    checked = run_curl_sample("validate_api_access_token", keyward, USER_ID=str(user_id), API_ACCESS_TOKEN=access["api_access_token"])
    assert_access_token_response(checked, user_id)
    revoked = run_curl_sample("revoke_api_access_tokens", keyward, **ids)
    assert revoked["detail"] == f"Revoked active access tokens for user: '{user_id}'"
    regen = run_curl_sample("regen_refresh_token", keyward, **ids)
    assert_refresh_token_response(regen, user_id)
