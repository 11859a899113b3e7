"""The README's example commands work as documented."""

import os
import pathlib
import secrets
import subprocess
import urllib.parse

ROOT = pathlib.Path(__file__).parents[2]


def test_warehouse_query_example(keyward):
    admin_url = os.environ["KEYWARD_TEST_POSTGRES_URL"]
    suffix = secrets.token_hex(5)
    role, password, database = f"ex_{suffix}", f"pw-{suffix}", f"exdb_{suffix}"
    subprocess.run(["psql", "-q", admin_url, "-c", f"CREATE ROLE {role} LOGIN PASSWORD '{password}'",
                    "-c", f"CREATE DATABASE {database} OWNER {role}"], check=True)
    url = urllib.parse.urlparse(admin_url)
    env = dict(os.environ, KEYWARD=keyward.base_url, KEYWARD_USER=keyward.username, KEYWARD_PASSWORD=keyward.password)
    out = subprocess.run([str(ROOT / "examples" / "warehouse-query.sh"), "sales", url.hostname, str(url.port), database, role,
                          password, "SELECT current_user || ' sees ' || current_database()"],
                         capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"{role} sees {database}"
