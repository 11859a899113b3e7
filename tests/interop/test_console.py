"""The admin console in headless Chromium, as a newcomer meets it: the real
binary started with no admin password prints one; `/` asks to sign in; the
first sign-in must replace the printed password; every console page
renders; an M2M app created in "OAuth Client Applications" shows its secret
once, and that secret gets a client-credentials token."""

import html
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


# Every form of the console, with fields that would succeed if the request were genuine.
CONSOLE_FORMS = [
    ("users/", {"action": "create", "username": "planted", "role": "server_admin", "password": "planted-password"}),
    ("users/", {"action": "set_role", "id": "1", "role": "viewer"}),
    ("users/", {"action": "disable", "id": "1"}),
    ("users/", {"action": "delete", "id": "1"}),
    ("oauth_clients/", {"action": "m2m_create", "name": "planted", "access_token_duration": "60", "role": "server_admin"}),
    ("oauth_clients/", {"action": "app_register", "name": "planted", "grant_type": "public",
                        "redirect_uris": "http://127.0.0.1/cb", "access_token_lifetime": "1", "refresh_token_lifetime": "30"}),
    ("sso/", {"action": "create", "id": "planted", "display_name": "P", "issuer": "https://idp.example", "client_id": "c"}),
    ("connectors/", {"action": "create", "name": "planted", "grant_type": "client_credentials", "client_id": "c",
                     "token_url": "https://p.example/token", "token_endpoint_auth": "basic", "api_base_url": "https://p.example/"}),
    ("data_products/", {"action": "create", "dp_id": "planted", "name": "p", "host": "h", "port": "5432", "database": "d"}),
    ("settings/", {"action": "set", "key": "alation.feature_flags.enable_swagger", "value": "true"}),
    ("keys/", {"action": "rotate"}),
    ("", {"action": "sign_out"}),
]


def test_lower_roles_and_hostile_pages_get_nothing_from_the_console(keyward):
    """In Chromium: a viewer sees 403 on every console page, a catalog admin
    on every page but the overview and connectors; pages of another origin
    that post each console form from an admin's browser get it refused (no
    anti-forgery token), and nothing changes."""
    headers = {"TOKEN": keyward.admin_token()}
    for name, role in [("vera", "viewer"), ("cato", "catalog_admin")]:
        r = requests.post(f"{keyward.base_url}/admin/api/users/", headers=headers,
                          json={"username": name, "password": f"password-of-{name}", "role": role})
        assert r.status_code == 201, r.text
    before = requests.get(f"{keyward.base_url}/admin/api/audit/?limit=1000", headers=headers).json()
    pages = []
    for path, fields in CONSOLE_FORMS:
        inputs = "".join(f'<input name="{k}" value="{html.escape(v)}">' for k, v in fields.items())
        pages.append((f'<form id="f" method="post" action="{keyward.base_url}/admin/{path}">{inputs}</form>'
                      '<script>document.getElementById("f").submit()</script>').encode())

    class Hostile(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            page = pages[int(self.path.strip("/"))]
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.send_header("content-length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

    # Another origin of the same site (the session cookie goes along) for
    # every form, and another site (it does not) for the first.
    servers = [http.server.ThreadingHTTPServer((host, 0), Hostile) for host in ("127.0.0.1", "127.0.0.2")]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        same, other = (f"http://{s.server_address[0]}:{s.server_address[1]}" for s in servers)
        hostile = ",".join([f"{same}/{i}" for i in range(len(pages))] + [f"{other}/0"])
        out = subprocess.run(["node", str(BROWSER_TESTS / "console_attacks.js"), keyward.base_url, keyward.password,
                              hostile, SHOTS, "vera:password-of-vera", "cato:password-of-cato"],
                             capture_output=True, text=True, timeout=180, cwd=BROWSER_TESTS)
        assert out.returncode == 0, out.stderr
        seen = json.loads(out.stdout.strip().splitlines()[-1])
        for page, result in seen["usersSaw"]["vera"].items():
            assert result["status"] == 403 and "needs the" in result["text"], (page, result)
        for page, result in seen["usersSaw"]["cato"].items():
            expected = 200 if page in ("overview", "connectors/") else 403
            assert result["status"] == expected, (page, result)
        *same_site, cross_site = seen["hostileResults"]
        assert len(same_site) == len(CONSOLE_FORMS)
        for (path, fields), result in zip(CONSOLE_FORMS, same_site):
            assert result["status"] == 403, (path, fields["action"], result)
            assert "form expired or came from elsewhere" in result["text"], (path, result)
        assert cross_site["status"] == 200 and "Sign in" in cross_site["text"], cross_site
        after = requests.get(f"{keyward.base_url}/admin/api/audit/?limit=1000", headers=headers).json()
        assert [e for e in after if e not in before and e["action"] != "login.succeeded"] == [], "something changed"
        users = requests.get(f"{keyward.base_url}/admin/api/users/", headers=headers).json()
        assert "planted" not in [u["username"] for u in users]
        assert [u["role"] for u in users if u["id"] == 1] == ["server_admin"]
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
