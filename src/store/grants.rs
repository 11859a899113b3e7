//! What users grant delegated clients: consents, authorization codes,
//! grants and the refresh-token families descending from them.

use super::*;
use crate::domain::audit::AuditEvent;
use crate::domain::{UserId, now, to_micros};
use sqlx::{AnyConnection, FromRow};

#[derive(Debug, Clone)]
pub struct NewAuthorizationCode {
    pub code_hash: String,
    pub client_id: String,
    pub user_id: UserId,
    pub redirect_uri: String,
    pub scope: String,
    pub resources: Vec<String>,
    pub code_challenge: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
}

/// An authorization code as it stands, before it is used.
pub enum CodeState {
    /// Not used yet, and not expired.
    Unused(NewAuthorizationCode),
    /// Used before: what it issued (if anything yet) must be revoked.
    Used { grant_id: Option<i64> },
    /// Unknown, expired, or another client's.
    Invalid,
}

/// A family of tokens descending from one authorization code.
#[derive(Debug, Clone)]
pub struct GrantRecord {
    pub id: i64,
    pub client_id: String,
    pub user_id: UserId,
    pub scope: String,
    pub resources: Vec<String>,
    pub revoked: bool,
}

/// A delegated refresh token's state.
#[derive(Debug, Clone)]
pub struct OAuthRefreshState {
    pub grant: GrantRecord,
    pub expires_at: i64,
    pub rotated_at: Option<i64>,
    /// Sealed successor response, while the grace window lasts.
    pub successor: Option<String>,
    pub revoked: bool,
}

/// Tokens issued in a grant: the refresh token (if a new one) and the JWT id.
pub struct IssuedInGrant {
    pub refresh: Option<(String, i64)>,
    pub jti: String,
    pub jti_expires_at: i64,
}

#[derive(FromRow)]
pub(super) struct CodeRow {
    code_hash: String,
    client_id: String,
    user_id: i64,
    redirect_uri: String,
    scope: String,
    resources: String,
    code_challenge: Option<String>,
    created_at: i64,
    expires_at: i64,
}

/// A code with whether (and into which grant) it was used.
#[derive(FromRow)]
struct CodeStateRow {
    #[sqlx(flatten)]
    code: CodeRow,
    used_at: Option<i64>,
    grant_id: Option<i64>,
}

impl From<CodeRow> for NewAuthorizationCode {
    fn from(r: CodeRow) -> Self {
        NewAuthorizationCode {
            code_hash: r.code_hash,
            client_id: r.client_id,
            user_id: r.user_id,
            redirect_uri: r.redirect_uri,
            scope: r.scope,
            resources: resources_from(&r.resources),
            code_challenge: r.code_challenge,
            created_at: r.created_at,
            expires_at: r.expires_at,
        }
    }
}

#[derive(FromRow)]
pub(super) struct RefreshStateRow {
    grant_id: i64,
    client_id: String,
    user_id: i64,
    scope: String,
    resources: String,
    grant_revoked_at: Option<i64>,
    expires_at: i64,
    rotated_at: Option<i64>,
    successor: Option<String>,
    revoked_at: Option<i64>,
}

/// What withdrawing a user's consent to a client removes, by `($1, $2)` =
/// (user, client): the consents, the codes not redeemed yet, the grants.
const DELETE_CONSENTS: &str = "DELETE FROM oauth_consents WHERE user_id = $1 AND client_id = $2";
const DELETE_UNUSED_CODES: &str =
    "DELETE FROM oauth_authorization_codes WHERE user_id = $1 AND client_id = $2 AND used_at IS NULL";
const SELECT_ACTIVE_GRANTS: &str =
    "SELECT id FROM oauth_grants WHERE user_id = $1 AND client_id = $2 AND revoked_at IS NULL";

impl From<RefreshStateRow> for OAuthRefreshState {
    fn from(r: RefreshStateRow) -> Self {
        OAuthRefreshState {
            grant: GrantRecord {
                id: r.grant_id,
                client_id: r.client_id,
                user_id: r.user_id,
                scope: r.scope,
                resources: resources_from(&r.resources),
                revoked: r.grant_revoked_at.is_some(),
            },
            expires_at: r.expires_at,
            rotated_at: r.rotated_at,
            successor: r.successor,
            revoked: r.revoked_at.is_some(),
        }
    }
}

pub(super) fn resources_from(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_default()
}

/// Stores the refresh token and the JWT id issued within a grant.
pub(super) async fn insert_issued(
    conn: &mut AnyConnection,
    grant_id: i64,
    issued: &IssuedInGrant,
    now: i64,
) -> StoreResult<()> {
    if let Some((hash, expires_at)) = &issued.refresh {
        exec(
            &mut *conn,
            "INSERT INTO oauth_refresh_tokens (token_hash, grant_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
            params![hash, grant_id, now, expires_at],
        )
        .await
        .map_err(conflict("a refresh token with this hash"))?;
    }
    exec(&mut *conn, INSERT_GRANT_JTI, params![&issued.jti, grant_id, issued.jti_expires_at]).await?;
    Ok(())
}

/// A JWT issued in a grant, revoked with it.
const INSERT_GRANT_JTI: &str = "INSERT INTO oauth_grant_jtis (jti, grant_id, expires_at) VALUES ($1, $2, $3)";

/// Revokes grant `grant_id`, its refresh tokens and its JWTs, in `conn`'s
/// transaction.
pub(super) async fn revoke_grant_in(conn: &mut AnyConnection, grant_id: i64, now: i64) -> StoreResult<()> {
    for sql in [
        "UPDATE oauth_grants SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1",
        "UPDATE oauth_refresh_tokens SET revoked_at = COALESCE(revoked_at, $2), successor = NULL WHERE grant_id = $1",
        "INSERT INTO revoked_tokens (jti, expires_at, revoked_at) \
         SELECT jti, expires_at, $2 FROM oauth_grant_jtis WHERE grant_id = $1 ON CONFLICT (jti) DO NOTHING",
    ] {
        exec(&mut *conn, sql, params![grant_id, now]).await?;
    }
    Ok(())
}

/// Revokes, like [`revoke_grant_in`], every grant whose id `select_ids` finds.
pub(super) async fn revoke_grants_in(
    conn: &mut AnyConnection,
    select_ids: &'static str,
    params: Params,
    now: i64,
) -> StoreResult<()> {
    let ids: Vec<i64> = sqlx::query_scalar_with(select_ids, params?).fetch_all(&mut *conn).await?;
    for grant_id in ids {
        revoke_grant_in(conn, grant_id, now).await?;
    }
    Ok(())
}

impl Store {
    /// Whether the user consented to exactly this scope for exactly these
    /// resources (sorted).
    pub async fn has_consent(
        &self,
        user_id: UserId,
        client_id: &str,
        scope: &str,
        resources: &[String],
    ) -> StoreResult<bool> {
        let found = find::<(i64,), (i64,)>(
            &self.pool,
            "SELECT created_at FROM oauth_consents WHERE user_id = $1 AND client_id = $2 AND scope = $3 \
                 AND resources = $4",
            params![user_id, client_id, scope, resources_json(resources)],
        )
        .await?;
        Ok(found.is_some())
    }

    pub async fn add_consent(
        &self,
        user_id: UserId,
        client_id: &str,
        scope: &str,
        resources: &[String],
        event: AuditEvent,
    ) -> StoreResult<()> {
        // One remembered resource set per scope: the latest approved.
        self.write_one(
            event,
            None,
            "INSERT INTO oauth_consents (user_id, client_id, scope, created_at, resources) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (user_id, client_id, scope) DO UPDATE SET resources = excluded.resources, \
             created_at = excluded.created_at",
            params![user_id, client_id, scope, to_micros(now()), resources_json(resources)],
        )
        .await
    }

    /// `(client_id, scope, created_at)` of a user's remembered consents.
    pub async fn consents(&self, user_id: UserId) -> StoreResult<Vec<(String, String, i64)>> {
        find_all::<(String, String, i64), _>(&self.pool, "SELECT client_id, scope, created_at FROM oauth_consents WHERE user_id = $1 ORDER BY client_id, scope",
            params![user_id],
        )
        .await
    }

    /// Forgets a user's consents to a client and revokes the grants (and
    /// their tokens) the client holds for the user; how many consents.
    pub async fn revoke_consents(
        &self,
        user_id: UserId,
        client_id: &str,
        now: i64,
        event: AuditEvent,
    ) -> StoreResult<u64> {
        self.write(event, Some(REVOCATIONS), async |tx, _| {
            let forgotten = exec(&mut *tx, DELETE_CONSENTS, params![user_id, client_id]).await?;
            exec(&mut *tx, DELETE_UNUSED_CODES, params![user_id, client_id]).await?;
            revoke_grants_in(tx, SELECT_ACTIVE_GRANTS, params![user_id, client_id], now).await?;
            Ok(forgotten)
        })
        .await
    }

    pub async fn insert_authorization_code(&self, code: NewAuthorizationCode) -> StoreResult<()> {
        exec(
            &self.pool,
            "INSERT INTO oauth_authorization_codes (code_hash, client_id, user_id, redirect_uri, scope, resources, \
             code_challenge, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            params![
                &code.code_hash,
                &code.client_id,
                code.user_id,
                &code.redirect_uri,
                &code.scope,
                resources_json(&code.resources),
                code.code_challenge.clone(),
                code.created_at,
                code.expires_at,
            ],
        )
        .await?;
        Ok(())
    }

    /// The code `code_hash` of `client_id` at `now`, left as it is.
    pub async fn authorization_code(
        &self,
        code_hash: &str,
        client_id: &str,
        now: i64,
    ) -> StoreResult<CodeState> {
        let row: Option<CodeStateRow> = sqlx::query_as_with(
            "SELECT code_hash, client_id, user_id, redirect_uri, scope, resources, code_challenge, created_at, \
             expires_at, used_at, grant_id FROM oauth_authorization_codes WHERE code_hash = $1 AND client_id = $2",
            params![code_hash, client_id]?,
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some(CodeStateRow { used_at: Some(_), grant_id, .. }) => CodeState::Used { grant_id },
            Some(CodeStateRow { code, .. }) if code.expires_at > now => CodeState::Unused(code.into()),
            _ => CodeState::Invalid,
        })
    }

    /// Uses the code up without issuing anything (a redemption that failed
    /// its checks: the code is single use either way).
    pub async fn burn_authorization_code(&self, code_hash: &str, now: i64) -> StoreResult<()> {
        exec(
            &self.pool,
            "UPDATE oauth_authorization_codes SET used_at = $2 WHERE code_hash = $1 AND used_at IS NULL",
            params![code_hash, now],
        )
        .await?;
        Ok(())
    }

    /// Uses the code up and opens its grant with its first tokens, in one
    /// transaction: a failure leaves the code unused, so the client may try
    /// again. The grant's id, or None when another redemption won the code
    /// first (or it expired meanwhile).
    pub async fn redeem_authorization_code(
        &self,
        code: &NewAuthorizationCode,
        now: i64,
        issued: IssuedInGrant,
        event: AuditEvent,
    ) -> StoreResult<Option<i64>> {
        self.write_if(event, None, async |tx, _| {
            let won = exec(
                &mut *tx,
                "UPDATE oauth_authorization_codes SET used_at = $2 \
                     WHERE code_hash = $1 AND used_at IS NULL AND expires_at > $2",
                params![&code.code_hash, now],
            )
            .await?;
            if won == 0 {
                return Ok(None);
            }
            let (grant_id,): (i64,) = sqlx::query_as_with(
                "INSERT INTO oauth_grants (client_id, user_id, scope, resources, created_at) \
                     VALUES ($1, $2, $3, $4, $5) RETURNING id",
                params![&code.client_id, code.user_id, &code.scope, resources_json(&code.resources), now]?,
            )
            .fetch_one(&mut *tx)
            .await?;
            exec(
                &mut *tx,
                "UPDATE oauth_authorization_codes SET grant_id = $2 WHERE code_hash = $1",
                params![&code.code_hash, grant_id],
            )
            .await?;
            insert_issued(tx, grant_id, &issued, now).await?;
            Ok(Some(grant_id))
        })
        .await
    }

    pub async fn oauth_refresh_token(&self, token_hash: &str) -> StoreResult<Option<OAuthRefreshState>> {
        find::<RefreshStateRow, _>(&self.pool, "SELECT g.id AS grant_id, g.client_id, g.user_id, g.scope, g.resources, g.revoked_at AS grant_revoked_at, \
                    t.expires_at, t.rotated_at, t.successor, t.revoked_at \
             FROM oauth_refresh_tokens t JOIN oauth_grants g ON g.id = t.grant_id WHERE t.token_hash = $1",
            params![token_hash],
        )
        .await
    }

    /// Marks `old_hash` rotated, keeping `successor` (sealed) for replays in
    /// the grace window, and stores what `issued` lists — if and only if
    /// `old_hash` was not rotated yet (false: another request won).
    pub async fn rotate_oauth_refresh_token(
        &self,
        old_hash: &str,
        grant_id: i64,
        now: i64,
        successor: &str,
        issued: IssuedInGrant,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        // The conditional update is the race's referee: on PostgreSQL the
        // loser waits for the winner's commit and then matches no row.
        let won = exec(
            &mut *tx,
            "UPDATE oauth_refresh_tokens SET rotated_at = $2, successor = $3 \
             WHERE token_hash = $1 AND rotated_at IS NULL AND revoked_at IS NULL",
            params![old_hash, now, successor],
        )
        .await?;
        if won == 0 {
            return Ok(false);
        }
        insert_issued(&mut tx, grant_id, &issued, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Records a JWT issued within a grant without rotating anything.
    pub async fn record_grant_jti(&self, grant_id: i64, jti: &str, expires_at: i64) -> StoreResult<()> {
        exec(&self.pool, INSERT_GRANT_JTI, params![jti, grant_id, expires_at]).await?;
        Ok(())
    }

    /// Forgets sealed successors rotated before `before`.
    pub async fn drop_successors(&self, before: i64) -> StoreResult<()> {
        exec(
            &self.pool,
            "UPDATE oauth_refresh_tokens SET successor = NULL WHERE successor IS NOT NULL AND rotated_at < $1",
            params![before],
        )
        .await?;
        Ok(())
    }

    /// Revokes a grant: its refresh tokens and every JWT issued in it.
    pub async fn revoke_grant(&self, grant_id: i64, now: i64, event: AuditEvent) -> StoreResult<()> {
        self.write(event, Some(REVOCATIONS), async |tx, _| revoke_grant_in(tx, grant_id, now).await).await
    }
}
