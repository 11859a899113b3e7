"""The admin console in headless Chromium, as a newcomer meets it: the real
binary started with no admin password prints one; `/` asks to sign in; the
first sign-in must replace the printed password; every console page
renders; an M2M app created in "OAuth Client Applications" shows its secret
once, and that secret gets a client-credentials token."""

import http.server
import json
import os
import re
import subprocess
import tempfile
import threading

import requests

from test_pages import BROWSER_TESTS, SHOTS


def start_fresh_keyward(tmp):
    binary = os.environ["KEYWARD_BIN"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYWARD_")}
    env["RUST_LOG"] = "warn"
    process = subprocess.Popen([binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", tmp], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    lines = []
    for line in process.stdout:
        lines.append(line.strip())
        if line.startswith("sign in at "):
            break
    return process, lines


def test_a_newcomers_first_minute_in_the_console():
    with tempfile.TemporaryDirectory() as tmp:
        process, lines = start_fresh_keyward(tmp)
        try:
            base = lines[0].split()[3]
            password = next(l.split(": ", 1)[1] for l in lines if l.startswith("initial admin password for"))
            assert any(l == f"admin console: {base}/admin/ (the first sign-in asks for a new password)" for l in lines), lines
            out = subprocess.run(["node", str(BROWSER_TESTS / "console.js"), base, password, "a-new-admin-password", SHOTS],
                                 capture_output=True, text=True, timeout=180, cwd=BROWSER_TESTS)
            assert out.returncode == 0, out.stderr
            seen = json.loads(out.stdout.strip().splitlines()[-1])
            assert seen["errors"] == [], seen["errors"]
            assert seen["askedForPassword"] == f"{base}/account/password", seen
            assert seen["landed"] == f"{base}/admin/", seen
            assert "OAuth Client Applications" in seen["nav"] and "Single sign-on" in seen["nav"], seen["nav"]
            for slug, page in seen["titles"].items():
                assert page["status"] == 200, (slug, page)
            assert seen["titles"]["oauth_clients"]["h1"] == "OAuth Client Applications"
            # The secret, shown once with a warning and a working copy button.
            secret = seen["secret"]
            assert secret and seen["clipboard"] == secret
            assert "shows it this once" in seen["warning"]
            assert seen["shownAgain"] == 0
            client_id = re.search(r"m2m_[0-9a-f]+", seen["warning"]).group(0)
            assert "catalog_admin" in seen["row"] and "30 min" in seen["row"], seen["row"]
            r = requests.post(f"{base}/oauth/v2/token/", data={"grant_type": "client_credentials"},
                              auth=(client_id, secret))
            assert r.status_code == 200, r.text
            assert r.json()["token_type"].lower() == "bearer" and r.json()["expires_in"] == 1800
            # The printed password is gone; the new one works.
            r = requests.post(f"{base}/integration/v1/createRefreshToken/",
                              data={"username": "admin", "password": password, "name": "x"})
            assert r.status_code == 401
            r = requests.post(f"{base}/integration/v1/createRefreshToken/",
                              data={"username": "admin", "password": "a-new-admin-password", "name": "x"})
            assert r.status_code == 201, r.text
            for shot in ["console-sign-in", "console-first-password", "console-overview", "console-oauth_clients",
                         "console-m2m-created", "console-audit"]:
                assert os.path.getsize(os.path.join(SHOTS, f"{shot}.png")) > 5000
        finally:
            process.terminate()
            process.wait(timeout=10)


def test_a_viewer_and_a_hostile_page_get_nothing_from_the_console(keyward):
    """In Chromium: a viewer sees 403 on every console page; a page of
    another origin that posts a console form from an admin's browser gets it
    refused (no anti-forgery token), and nothing is created."""
    headers = {"TOKEN": keyward.admin_token()}
    r = requests.post(f"{keyward.base_url}/admin/api/users/", headers=headers,
                      json={"username": "vera", "password": "password-of-vera", "role": "viewer"})
    assert r.status_code == 201, r.text
    form = (f'<form id="f" method="post" action="{keyward.base_url}/admin/users/">'
            '<input name="action" value="create"><input name="username" value="planted">'
            '<input name="role" value="server_admin"><input name="password" value="planted-password">'
            '</form><script>document.getElementById("f").submit()</script>').encode()

    class Hostile(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.send_header("content-length", str(len(form)))
            self.end_headers()
            self.wfile.write(form)

    # Another origin of the same site (the session cookie goes along), and another site (it does not).
    servers = [http.server.ThreadingHTTPServer((host, 0), Hostile) for host in ("127.0.0.1", "127.0.0.2")]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        hostile = ",".join(f"http://{s.server_address[0]}:{s.server_address[1]}/" for s in servers)
        out = subprocess.run(["node", str(BROWSER_TESTS / "console_attacks.js"), keyward.base_url, "vera",
                              "password-of-vera", keyward.password, hostile, SHOTS],
                             capture_output=True, text=True, timeout=120, cwd=BROWSER_TESTS)
        assert out.returncode == 0, out.stderr
        seen = json.loads(out.stdout.strip().splitlines()[-1])
        for page, result in seen["viewerSaw"].items():
            assert result["status"] == 403, (page, result)
            assert "needs the" in result["text"], (page, result)
        same_site, cross_site = seen["hostileResults"]
        assert same_site["status"] == 403 and "form expired or came from elsewhere" in same_site["text"], same_site
        assert cross_site["status"] == 200 and "Sign in" in cross_site["text"], cross_site
        users = requests.get(f"{keyward.base_url}/admin/api/users/", headers=headers).json()
        assert "planted" not in [u["username"] for u in users]
    finally:
        for server in servers:
            server.shutdown()


def test_every_page_meets_wcag_2_aa_by_axe(keyward):
    """axe-core (WCAG 2 A and AA rules) finds nothing on the sign-in page,
    Account Settings, the password change and each console page."""
    out = subprocess.run(["node", str(BROWSER_TESTS / "accessibility.js"), keyward.base_url, keyward.username,
                          keyward.password], capture_output=True, text=True, timeout=180, cwd=BROWSER_TESTS)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(seen["found"]) == 12, seen["found"].keys()
    for page, violations in seen["found"].items():
        assert violations == [], (page, violations)
    assert any(v["id"] == "label" for v in seen["selfCheck"]), seen["selfCheck"]
