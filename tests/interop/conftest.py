"""Starts the real keyward binary for interop tests, on SQLite and on a fresh
PostgreSQL database (KEYWARD_TEST_POSTGRES_URL, which scripts/test provides;
missing is a failure, not a skip)."""

import os
import secrets
import subprocess
import tempfile
import time
import urllib.parse

import pytest
import requests

ADMIN_PASSWORD = "interop-admin-password"


class Keyward:
    def __init__(self, backend):
        binary = os.environ.get("KEYWARD_BIN")
        assert binary and os.path.exists(binary), "KEYWARD_BIN must name the built keyward binary (scripts/test sets it)"
        self.dir = tempfile.TemporaryDirectory()
        args = [binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", os.path.join(self.dir.name, "data")]
        if backend == "postgres":
            admin_url = os.environ.get("KEYWARD_TEST_POSTGRES_URL")
            assert admin_url, "KEYWARD_TEST_POSTGRES_URL is not set: run ./scripts/test"
            name = "kw_py_" + secrets.token_hex(6)
            subprocess.run(["psql", "-q", admin_url, "-c", f"CREATE DATABASE {name}"], check=True)
            args += ["--database-url", urllib.parse.urlparse(admin_url)._replace(path="/" + name).geturl()]
        env = {k: v for k, v in os.environ.items() if not k.startswith("KEYWARD_")}
        env.update(KEYWARD_ADMIN_PASSWORD=ADMIN_PASSWORD, RUST_LOG="warn")
        self.process = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        first = self.process.stdout.readline()
        assert first.startswith("keyward listening on "), first
        self.base_url = first.split()[3]
        for _ in range(200):
            try:
                if requests.get(self.base_url + "/healthz", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.05)
        self.username = "admin"
        self.password = ADMIN_PASSWORD

    def admin_token(self):
        """An API access token of the admin, through the documented endpoints."""
        refresh = requests.post(f"{self.base_url}/integration/v1/createRefreshToken/",
                                data={"username": self.username, "password": self.password, "name": "interop"}).json()
        access = requests.post(f"{self.base_url}/integration/v1/createAPIAccessToken/",
                               data={"refresh_token": refresh["refresh_token"], "user_id": refresh["user_id"]}).json()
        return access["api_access_token"]

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=10)
        self.dir.cleanup()


@pytest.fixture(params=["sqlite", "postgres"])
def keyward(request):
    server = Keyward(request.param)
    yield server
    server.stop()
