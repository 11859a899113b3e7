"""Every OpenAPI document keyward serves, fuzzed by schemathesis from the
document itself: generated requests (valid and not, with an admin's TOKEN)
never get a 5xx, and every answer has a documented status code, content
type, headers and body schema."""

import os
import subprocess

import pytest

DOCUMENTS = ["/openapi/api_authentication/", "/openapi/oauth2/", "/openapi/admin/", "/openapi/account/"]

CHECKS = ",".join([
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
])


@pytest.mark.parametrize("document", DOCUMENTS)
def test_generated_requests_match_the_document(keyward, document):
    token = keyward.admin_token()
    run = subprocess.run(
        ["st", "run", keyward.base_url + document, "--url", keyward.base_url,
         "-H", f"TOKEN: {token}", "--checks", CHECKS,
         "--max-examples", os.environ.get("KEYWARD_OPENAPI_EXAMPLES", "25"),
         "--no-color"],
        capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert " passed" in run.stdout, run.stdout[-2000:]
