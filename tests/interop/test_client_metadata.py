"""Client ID Metadata Documents against a real https server on loopback,
whose certificate keyward trusts through SSL_CERT_FILE (the platform's
certificate store is replaced by the test CA): the official Python and
TypeScript MCP SDKs with a URL client id, and every way a document can be
wrong, slow, large, redirected or cached."""

import base64
import concurrent.futures
import datetime
import http.server
import ipaddress
import json
import secrets
import ssl
import threading
import time
import urllib.parse

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from test_delegated_oauth import admin_token, hidden, sign_in_and_consent
from test_mcp_sdks import jwt_claims, protected_mcp, run_python_client, run_typescript_client  # noqa: F401 (fixture)


def certificate(subject, issuer_key, issuer_name, public_key, ca):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


class DocumentHost:
    """An https server on loopback: path -> (status, headers, body, delay)."""

    def __init__(self, directory):
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "keyward test CA")])
        ca = certificate(ca_name, ca_key, ca_name, ca_key.public_key(), True)
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = certificate(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]), ca_key, ca_name,
                           key.public_key(), False)
        self.ca_file = f"{directory}/ca.pem"
        with open(self.ca_file, "wb") as f:
            f.write(ca.public_bytes(serialization.Encoding.PEM))
        with open(f"{directory}/leaf.pem", "wb") as f:
            f.write(leaf.public_bytes(serialization.Encoding.PEM))
            f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
        self.documents, self.hits, self.connection_header = {}, {}, {}
        host = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                host.hits[self.path] = host.hits.get(self.path, 0) + 1
                host.connection_header[self.path] = self.headers.get("connection")
                status, headers, body, delay = host.documents.get(self.path, (404, {}, b"", 0))
                time.sleep(delay)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(f"{directory}/leaf.pem")
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.base_url = f"https://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def document(self, path, redirect_uris=("http://127.0.0.1/callback",), status=200, headers=None, delay=0,
                 **fields):
        url = self.base_url + path
        body = {"client_id": url, "client_name": "Document client", "redirect_uris": list(redirect_uris),
                "grant_types": ["authorization_code", "refresh_token"], "token_endpoint_auth_method": "none"}
        body.update(fields)
        self.documents[path] = (status, {"content-type": "application/json", **(headers or {})},
                                json.dumps(body).encode(), delay)
        return url


@pytest.fixture
def document_host(tmp_path, monkeypatch):
    host = DocumentHost(tmp_path)
    # keyward (started after this fixture) trusts the test CA, and only it.
    monkeypatch.setenv("SSL_CERT_FILE", host.ca_file)
    yield host
    host.server.shutdown()


def allow_loopback_documents(keyward):
    r = requests.put(f"{keyward.base_url}/admin/api/config/keyward.oauth.client_metadata.allow_private_addresses/",
                     headers={"TOKEN": admin_token(keyward)}, json={"value": True})
    assert r.status_code == 200, r.text


def authorize_page(keyward, client_id, redirect_uri="http://127.0.0.1:5555/callback"):
    query = urllib.parse.urlencode({
        "response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri, "state": "s",
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "code_challenge_method": "S256"})
    return requests.get(f"{keyward.base_url}/oauth/v1/authorize/?{query}", allow_redirects=False)


def test_python_sdk_with_a_metadata_document(document_host, keyward, protected_mcp):
    allow_loopback_documents(keyward)
    url = document_host.document("/oauth/mcp-client.json")
    storage = run_python_client(keyward, protected_mcp, client_metadata_url=url)
    assert jwt_claims(storage.tokens.access_token)["client_id"] == url
    assert storage.client_info.client_id == url


@pytest.mark.parametrize("package", ["@modelcontextprotocol/sdk", "@modelcontextprotocol/client"])
def test_typescript_sdk_with_a_metadata_document(document_host, keyward, protected_mcp, package):
    allow_loopback_documents(keyward)
    url = document_host.document("/oauth/ts-client.json")
    run_typescript_client(keyward, protected_mcp, package, url)


def test_documents_are_checked(document_host, keyward):
    # Off by default for loopback: keyward fetches only from public addresses.
    url = document_host.document("/good.json")
    page = authorize_page(keyward, url)
    assert page.status_code == 400 and "does not call this address" in page.text
    assert document_host.hits.get("/good.json") is None
    allow_loopback_documents(keyward)

    # A good document: the consent page names its host (after sign-in).
    page = authorize_page(keyward, url)
    assert page.status_code == 200 and "Sign in" in page.text, page.text
    # Anyone can name a document's host: keyward keeps no connection to it.
    assert document_host.connection_header["/good.json"] == "close"

    cases = {
        "/mismatch.json": (dict(client_id="https://other.example/client.json"), "not the URL"),
        "/big.json": (dict(client_name="x" * 20000), "larger than"),
        "/secret.json": (dict(client_secret="s3cr3t"), "client_secret"),
        "/confidential.json": (dict(token_endpoint_auth_method="client_secret_basic"), "none"),
        "/gone.json": (dict(status=404), "answered 404"),
        "/moved.json": (dict(status=302, headers={"location": url}), "answered 302"),
    }
    for path, (fields, says) in cases.items():
        doc_url = document_host.document(path, **fields)
        page = authorize_page(keyward, doc_url)
        assert page.status_code == 400 and says in page.text, (path, page.text)
    # Not JSON-typed, an array, a name that reads as another: refused.
    typed = document_host.document("/typed.json", headers={"content-type": "text/html"})
    assert "application/json" in authorize_page(keyward, typed).text
    array_url = document_host.base_url + "/array.json"
    document_host.documents["/array.json"] = (200, {"content-type": "application/json"},
                                              json.dumps([array_url, "x", ["http://127.0.0.1/callback"]]).encode(), 0)
    assert "JSON object" in authorize_page(keyward, array_url).text
    spoof = document_host.document("/spoof.json", client_name="Admin\u202eelosnoC")
    assert "format characters" in authorize_page(keyward, spoof).text
    # What the document says it asks for is its limit.
    narrow = document_host.document("/narrow.json", scope="mcp", grant_types=["authorization_code"])
    for scope in ["api", "mcp offline_access"]:
        page = requests.get(authorize_page(keyward, narrow).url + "&" + urllib.parse.urlencode({"scope": scope}))
        assert page.status_code == 400 and "outside what this client registered for" in page.text, scope
    # The request's redirect URI must be in the document.
    page = authorize_page(keyward, url, redirect_uri="http://127.0.0.1:5555/elsewhere")
    assert page.status_code == 400 and "not registered" in page.text
    # Slow: given up within the deadline.
    slow = document_host.document("/slow.json", delay=8)
    started = time.monotonic()
    page = authorize_page(keyward, slow)
    assert page.status_code == 400 and "could not be fetched" in page.text
    assert time.monotonic() - started < 7.5

    # Caching: max-age is respected, no-store is not kept.
    cached = document_host.document("/cached.json", headers={"cache-control": "max-age=60"})
    fresh = document_host.document("/fresh.json", headers={"cache-control": "no-store"})
    for _ in range(3):
        assert authorize_page(keyward, cached).status_code == 200
        assert authorize_page(keyward, fresh).status_code == 200
    assert document_host.hits["/cached.json"] == 1
    assert document_host.hits["/fresh.json"] == 3
    # Concurrent requests share one fetch even of an uncacheable or failing document.
    for path, fields in [("/nostore-slow.json", dict(headers={"cache-control": "no-store"}, delay=1)),
                         ("/failing.json", dict(status=500, delay=1))]:
        doc_url = document_host.document(path, **fields)
        with concurrent.futures.ThreadPoolExecutor(10) as pool:
            list(pool.map(lambda _: authorize_page(keyward, doc_url), range(10)))
        assert document_host.hits[path] <= 2, (path, document_host.hits[path])
    # Ten at once for a new document: one fetch.
    shared = document_host.document("/shared.json", delay=1)
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        statuses = list(pool.map(lambda _: authorize_page(keyward, shared).status_code, range(10)))
    assert statuses == [200] * 10
    assert document_host.hits["/shared.json"] == 1


def test_consent_names_the_document_host_and_is_always_asked(document_host, keyward):
    allow_loopback_documents(keyward)
    no_store = {"cache-control": "no-store"}
    url = document_host.document("/consent.json", headers=no_store)
    page = authorize_page(keyward, url)
    browser = requests.Session()
    login = browser.get(page.url)
    signed_in = browser.post(f"{keyward.base_url}/oauth/v1/login/", allow_redirects=False, data={
        "username": keyward.username, "password": keyward.password,
        "csrf": hidden(login.text, "csrf"), "return_to": hidden(login.text, "return_to")})
    assert signed_in.status_code == 303
    # The document changes between showing the page and approving it: the
    # approval does not count (the page showed something else).
    consent = browser.get(page.url, allow_redirects=False)
    document_host.document("/consent.json", client_name="Something else entirely", headers=no_store)
    changed = browser.post(f"{keyward.base_url}/oauth/v1/authorize/", allow_redirects=False, data={
        "csrf": hidden(consent.text, "csrf"), "request": hidden(consent.text, "request"), "decision": "approve"})
    assert changed.status_code == 403, changed.text
    document_host.document("/consent.json", headers=no_store)
    for _ in range(2):
        consent = browser.get(page.url, allow_redirects=False)
        assert consent.status_code == 200, "consent is asked every time"
        assert "describes itself at\n<strong>127.0.0.1</strong>" in consent.text, consent.text
        approved = browser.post(f"{keyward.base_url}/oauth/v1/authorize/", allow_redirects=False, data={
            "csrf": hidden(consent.text, "csrf"), "request": hidden(consent.text, "request"), "decision": "approve"})
        assert approved.status_code == 303 and "code=" in approved.headers["location"]


def test_private_key_jwt_document_clients(document_host, keyward):
    """A confidential client with a metadata document (RFC 7523
    `private_key_jwt`, keys in the document or at its `jwks_uri`), through
    authlib's own client authentication; and every way an assertion can be
    wrong, refused without using up the refresh token."""
    from authlib.integrations.requests_client import OAuth2Session
    from authlib.oauth2.rfc7523 import PrivateKeyJWT
    from joserfc import jwt
    from joserfc.jwk import ECKey, OctKey

    allow_loopback_documents(keyward)
    metadata = requests.get(f"{keyward.base_url}/.well-known/oauth-authorization-server").json()
    assert "private_key_jwt" in metadata["token_endpoint_auth_methods_supported"]
    assert "ES256" in metadata["token_endpoint_auth_signing_alg_values_supported"]
    token_endpoint = metadata["token_endpoint"]
    key = ECKey.generate_key("P-256", {"kid": "k1"})
    # A confidential client's loopback redirect URI matches exactly (any
    # port is for native apps, which are public).
    redirect_uri = "http://127.0.0.1:5555/callback"
    inline = document_host.document("/pkjwt.json", [redirect_uri], token_endpoint_auth_method="private_key_jwt",
                                    jwks={"keys": [key.as_dict(private=False)]})
    document_host.documents["/jwks.json"] = (200, {"content-type": "application/json"},
                                             json.dumps({"keys": [key.as_dict(private=False)]}).encode(), 0)
    at_uri = document_host.document("/pkjwt-uri.json", [redirect_uri], token_endpoint_auth_method="private_key_jwt",
                                    jwks_uri=document_host.base_url + "/jwks.json")

    def signed_in(client_id):
        session = OAuth2Session(client_id, key, token_endpoint_auth_method="private_key_jwt",
                                redirect_uri=redirect_uri, scope="api offline_access", code_challenge_method="S256")
        session.register_client_auth_method(PrivateKeyJWT(token_endpoint, alg="ES256"))
        verifier = secrets.token_urlsafe(48)
        url, _ = session.create_authorization_url(metadata["authorization_endpoint"], code_verifier=verifier)
        token = session.fetch_token(token_endpoint, authorization_response=sign_in_and_consent(keyward, url),
                                    code_verifier=verifier)
        users = requests.get(f"{keyward.base_url}/admin/api/users/",
                             headers={"Authorization": f"Bearer {token['access_token']}"})
        assert users.status_code == 200, users.text
        refreshed = session.refresh_token(token_endpoint)
        assert refreshed["refresh_token"] != token["refresh_token"]
        return refreshed["refresh_token"]

    signed_in(at_uri)
    refresh_token = signed_in(inline)
    # The admins' list shows them for what they are: confidential.
    listed = requests.get(f"{keyward.base_url}/oauth/v1/register/", headers={"TOKEN": keyward.admin_token()}).json()
    kinds = {c["client_id"]: c["grant_type"] for c in listed}
    assert kinds[inline] == kinds[at_uri] == "confidential", kinds

    def assertion(header=None, signer=key, **claims):
        now = int(time.time())
        body = {"iss": inline, "sub": inline, "aud": token_endpoint, "iat": now, "exp": now + 60,
                "jti": secrets.token_urlsafe(16)}
        body.update(claims)
        body = {k: v for k, v in body.items() if v is not None}
        return jwt.encode(header or {"alg": "ES256", "kid": "k1"}, body, signer)

    def refresh(client_assertion, **extra):
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": inline,
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": client_assertion, **extra}
        return requests.post(token_endpoint, data={k: v for k, v in form.items() if v is not None})

    def unsigned(claims):
        encode = lambda part: base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()
        return f"{encode({'alg': 'none'})}.{encode(claims)}."

    def hand_signed(header):
        """ES256 by hand, for headers joserfc will not write."""
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
        encode = lambda part: base64.urlsafe_b64encode(part).rstrip(b"=").decode()
        now = int(time.time())
        claims = {"iss": inline, "sub": inline, "aud": token_endpoint, "exp": now + 60,
                  "jti": secrets.token_urlsafe(16)}
        signing_input = f"{encode(json.dumps(header).encode())}.{encode(json.dumps(claims).encode())}"
        r, s_ = decode_dss_signature(key.private_key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{encode(r.to_bytes(32, 'big') + s_.to_bytes(32, 'big'))}"

    now = int(time.time())
    other_key = ECKey.generate_key("P-256", {"kid": "k1"})
    refused = {
        "another audience": assertion(aud="https://elsewhere.example/token"),
        "this server among others": assertion(aud=[token_endpoint, "https://elsewhere.example/token"]),
        "expired": assertion(exp=now - 300),
        "expiring in two hours": assertion(exp=now + 7200),
        "another subject": assertion(sub="https://other.example/client.json"),
        "another issuer": assertion(iss="https://other.example/client.json"),
        "no jti": assertion(jti=None),
        "not valid yet (nbf)": assertion(nbf=now + 3000),
        "a critical extension": hand_signed({"alg": "ES256", "kid": "k1", "crit": ["urn:x:must-understand"],
                                             "urn:x:must-understand": True}),
        "another key": assertion(signer=other_key),
        "HMAC": assertion(header={"alg": "HS256"}, signer=OctKey.generate_key(256)),
        "alg none": unsigned({"iss": inline, "sub": inline, "aud": token_endpoint, "exp": now + 60, "jti": "x"}),
        "garbage": "not.a.jwt",
    }
    for case, client_assertion in refused.items():
        r = refresh(client_assertion)
        assert r.status_code == 401 and r.json()["error"] == "invalid_client", (case, r.text)
    r = refresh(assertion(), client_assertion_type="urn:ietf:params:oauth:client-assertion-type:saml2-bearer")
    assert r.status_code == 401, r.text
    r = refresh(assertion(), client_secret="a-secret")
    assert r.status_code == 400, r.text
    for form in [{"client_assertion_type": None}, {"client_assertion_type": None, "client_secret": "a-secret"}]:
        r = refresh(None, **form)
        assert r.status_code == 401, (form, r.text)
    # None of that used up the refresh token; a hand-signed assertion without
    # the extension is good (so `crit` alone was refused above).
    first = refresh(hand_signed({"alg": "ES256", "kid": "k1"}))
    assert first.status_code == 200, first.text
    refresh_token = first.json()["refresh_token"]
    # A good assertion, once.
    good = assertion()
    first = refresh(good)
    assert first.status_code == 200, first.text
    refresh_token = first.json()["refresh_token"]
    replayed = refresh(good)
    assert replayed.status_code == 401 and "used before" in replayed.json()["error_description"]
    # Without client_id: the assertion names the client.
    assert refresh(assertion(), client_id=None).status_code == 200

    # Public clients off: the document client goes on; public documents stop.
    r = requests.put(f"{keyward.base_url}/admin/api/config/keyward.oauth.public_clients/",
                     headers={"TOKEN": admin_token(keyward)}, json={"value": False})
    assert r.status_code == 200, r.text
    metadata = requests.get(f"{keyward.base_url}/.well-known/oauth-authorization-server").json()
    assert "none" not in metadata["token_endpoint_auth_methods_supported"]
    assert metadata["client_id_metadata_document_supported"] is True
    signed_in(inline)
    public = document_host.document("/public.json")
    page = authorize_page(keyward, public)
    assert page.status_code == 400 and "keyward.oauth.public_clients" in page.text, page.text
