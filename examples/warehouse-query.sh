#!/usr/bin/env bash
# Stores a user's warehouse credentials for a data product in keyward, then,
# as the platform's SQL tool would, reads them back through the internal
# endpoint with a service identity and runs a query on the warehouse.
#
#   KEYWARD=http://127.0.0.1:8080 KEYWARD_USER=admin KEYWARD_PASSWORD=… \
#   examples/warehouse-query.sh DP_ID PGHOST PGPORT PGDATABASE PGUSER PGPASSWORD ["SQL"]
#
# Needs curl, python3 and psql. The user must be a server admin (it also
# registers the data product and the service identity).
set -euo pipefail
DP_ID=$1 HOST=$2 PORT=$3 DATABASE=$4 WH_USER=$5 WH_PASSWORD=$6 SQL=${7:-"SELECT current_user"}
K=${KEYWARD:-http://127.0.0.1:8080}
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

# The user signs in (the documented refresh/access token API).
refresh=$(curl -fsS -X POST "$K/integration/v1/createRefreshToken/" --data-urlencode "username=$KEYWARD_USER" \
  --data-urlencode "password=$KEYWARD_PASSWORD" --data-urlencode "name=warehouse-example")
user_id=$(echo "$refresh" | json '["user_id"]')
token=$(curl -fsS -X POST "$K/integration/v1/createAPIAccessToken/" \
  --data "user_id=$user_id&refresh_token=$(echo "$refresh" | json '["refresh_token"]')" | json '["api_access_token"]')

# A server admin registers the data product (once).
curl -fsS -o /dev/null -X PUT "$K/admin/api/data_products/$DP_ID/" -H "TOKEN: $token" -H 'content-type: application/json' \
  -d "{\"name\": \"$DP_ID\", \"warehouse\": {\"kind\": \"postgresql\", \"host\": \"$HOST\", \"port\": $PORT, \"database\": \"$DATABASE\"}}" 2>/dev/null ||
curl -fsS -o /dev/null -X POST "$K/admin/api/data_products/" -H "TOKEN: $token" -H 'content-type: application/json' \
  -d "{\"dp_id\": \"$DP_ID\", \"name\": \"$DP_ID\", \"warehouse\": {\"kind\": \"postgresql\", \"host\": \"$HOST\", \"port\": $PORT, \"database\": \"$DATABASE\"}}"

# The user stores (and verifies) their warehouse credentials: the reference's call.
curl -fsS -o /dev/null -X POST "$K/api/v2/auth/credentials/" -H "TOKEN: $token" -H 'Content-Type: application/json' \
  -d "{\"state\": \"example\", \"username\": \"$WH_USER\", \"password\": \"$WH_PASSWORD\", \"dp_id\": \"$DP_ID\", \"verify\": true}"

# The SQL tool: a service identity (an M2M client a server admin marked as a service).
tool=$(curl -fsS -X POST "$K/admin/api/m2m_clients/" -H "TOKEN: $token" -H 'content-type: application/json' \
  -d '{"name": "sql-tool", "access_token_duration": 300, "role": "viewer"}')
tool_id=$(echo "$tool" | json '["client_id"]')
curl -fsS -o /dev/null -X PATCH "$K/admin/api/m2m_clients/$tool_id/" -H "TOKEN: $token" -H 'content-type: application/json' \
  -d '{"is_service": true}'
tool_jwt=$(curl -fsS -X POST "$K/oauth/v2/token/" -d grant_type=client_credentials -d "client_id=$tool_id" \
  -d "client_secret=$(echo "$tool" | json '["client_secret"]')" | json '["access_token"]')

# It reads the user's credentials for the data product and runs the query.
login=$(curl -fsS -X POST "$K/internal/v1/credentials/" -H "Authorization: Bearer $tool_jwt" -H 'content-type: application/json' \
  -d "{\"principal\": \"user:$user_id\", \"dp_id\": \"$DP_ID\"}")
PGPASSWORD=$(echo "$login" | json '["password"]') psql -X -A -t \
  "host=$(echo "$login" | json '["warehouse"]["host"]') port=$(echo "$login" | json '["warehouse"]["port"]') dbname=$(echo "$login" | json '["warehouse"]["database"]') user=$(echo "$login" | json '["username"]')" \
  -c "$SQL"
