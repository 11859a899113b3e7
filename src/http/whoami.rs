//! `/api/v2/whoami/`: what the credential of this request stands for, so
//! that a script can check its token (and its role and scope) without
//! changing anything but the token's last use. It reads nothing beyond the
//! authentication itself.

use super::auth::CallerExt;
use crate::domain::Principal;
use axum::Json;
use serde_json::{Value, json};

#[utoipa::path(get, path = "/api/v2/whoami/", tag = "Account", security(("token" = []), ("bearer" = [])),
    responses((status = 200, description = "The caller: kind (user or client), user_id and username or client_id, \
        service_identity (for a client), role, scope (null for an API access token, limited by the role alone), \
        via_client (the app acting for the user)",
        body = Object)))]
pub async fn whoami(caller: CallerExt) -> Json<Value> {
    let identity = match &caller.principal {
        Principal::User { id, username } => json!({"kind": "user", "user_id": id, "username": username}),
        Principal::Client { client_id, is_service } => {
            json!({"kind": "client", "client_id": client_id, "service_identity": is_service})
        }
    };
    let mut answer = identity;
    answer["role"] = json!(caller.role.to_string());
    answer["scope"] = json!(caller.scope);
    answer["via_client"] = json!(caller.via_client);
    Json(answer)
}
