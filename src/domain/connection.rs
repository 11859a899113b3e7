//! Connections (SPEC §1.4): a user's link to another system through an
//! outbound client, and what keyward makes of a provider's token response.

use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionStatus {
    Pending,
    Active,
    NeedsReauth,
    Revoked,
}

impl ConnectionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionStatus::Pending => "pending",
            ConnectionStatus::Active => "active",
            ConnectionStatus::NeedsReauth => "needs_reauth",
            ConnectionStatus::Revoked => "revoked",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Active, Self::NeedsReauth, Self::Revoked].into_iter().find(|v| v.as_str() == s)
    }
}

/// When a provider says nothing about expiry and no override is set.
pub const DEFAULT_ACCESS_LIFETIME_MS: i64 = 3_600_000;

/// The longest lifetime a provider's answer is believed for: a year. A
/// token that claims more (or "never", as a huge number) is renewed yearly.
pub const MAX_ACCESS_LIFETIME_MS: i64 = 365 * 24 * 3_600_000;

/// Tokens as a provider returned them, normalized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderTokens {
    pub access_token: String,
    /// `None`: the response had none, so the one held is kept.
    pub refresh_token: Option<String>,
    /// Unix milliseconds.
    pub access_expires_at_ms: i64,
}

fn number(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse::<f64>().ok().map(|f| f as i64),
        _ => None,
    }
}

/// Reads a token response with the quirks providers have: `expires_in`
/// missing, given as a string, or named `expires`; an absolute `expires_at`;
/// no refresh token. An admin's lifetime override wins over all of them.
pub fn parse_token_response(
    body: &Value,
    now_ms: i64,
    override_ms: Option<i64>,
) -> Result<ProviderTokens, String> {
    let access_token = body
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or("the provider's response has no access_token")?
        .to_string();
    let refresh_token =
        body.get("refresh_token").and_then(Value::as_str).filter(|t| !t.is_empty()).map(str::to_string);
    // Saturating, and capped: the numbers are the provider's, and may be
    // anything. An admin's override is the admin's.
    let from_provider = || {
        body.get("expires_in")
            .and_then(number)
            .map(|s| s.saturating_mul(1000))
            .or_else(|| body.get("expires").and_then(number).map(|s| s.saturating_mul(1000)))
            .or_else(|| {
                body.get("expires_at")
                    .and_then(number)
                    .map(|at| at.saturating_mul(1000).saturating_sub(now_ms))
            })
            .map(|ms| ms.min(MAX_ACCESS_LIFETIME_MS))
    };
    let lifetime_ms =
        override_ms.or_else(from_provider).filter(|ms| *ms > 0).unwrap_or(DEFAULT_ACCESS_LIFETIME_MS);
    Ok(ProviderTokens {
        access_token,
        refresh_token,
        access_expires_at_ms: now_ms.saturating_add(lifetime_ms),
    })
}

/// How long before expiry a token is renewed: a minute, or half the
/// lifetime of a short-lived token.
pub fn renewal_margin_ms(obtained_at_ms: i64, expires_at_ms: i64) -> i64 {
    ((expires_at_ms - obtained_at_ms) / 2).clamp(0, 60_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn expiry_in_its_many_forms() {
        let at = |body: Value, o: Option<i64>| {
            parse_token_response(&body, 1_000_000, o).unwrap().access_expires_at_ms
        };
        assert_eq!(at(json!({"access_token": "a", "expires_in": 60}), None), 1_060_000);
        assert_eq!(at(json!({"access_token": "a", "expires_in": "60"}), None), 1_060_000);
        assert_eq!(at(json!({"access_token": "a", "expires": 30}), None), 1_030_000);
        assert_eq!(at(json!({"access_token": "a", "expires_at": 1_100}), None), 1_100_000);
        assert_eq!(at(json!({"access_token": "a"}), None), 1_000_000 + DEFAULT_ACCESS_LIFETIME_MS);
        assert_eq!(at(json!({"access_token": "a", "expires_in": 60}), Some(5_000)), 1_005_000);
        assert_eq!(
            at(json!({"access_token": "a", "expires_in": "soon"}), None),
            1_000_000 + DEFAULT_ACCESS_LIFETIME_MS
        );
    }

    #[test]
    fn absurd_expiry_is_bounded_not_an_overflow() {
        let now = 1_700_000_000_000;
        let at = |body: Value| parse_token_response(&body, now, None).unwrap().access_expires_at_ms;
        let year = now + MAX_ACCESS_LIFETIME_MS;
        assert_eq!(at(json!({"access_token": "a", "expires_in": u64::MAX})), year);
        assert_eq!(at(json!({"access_token": "a", "expires_in": "99999999999999999999"})), year);
        assert_eq!(at(json!({"access_token": "a", "expires": i64::MAX})), year);
        assert_eq!(at(json!({"access_token": "a", "expires_in": 1e300})), year);
        assert_eq!(at(json!({"access_token": "a", "expires_at": i64::MAX})), year);
        assert_eq!(
            at(json!({"access_token": "a", "expires_at": i64::MIN})),
            now + DEFAULT_ACCESS_LIFETIME_MS
        );
        assert_eq!(
            at(json!({"access_token": "a", "expires_in": i64::MIN})),
            now + DEFAULT_ACCESS_LIFETIME_MS
        );
        assert_eq!(at(json!({"access_token": "a", "expires_in": "-1e30"})), now + DEFAULT_ACCESS_LIFETIME_MS);
        // An admin's override is the admin's: not cut to a year.
        let ten_years = 10 * MAX_ACCESS_LIFETIME_MS;
        let overridden = parse_token_response(&json!({"access_token": "a"}), now, Some(ten_years)).unwrap();
        assert_eq!(overridden.access_expires_at_ms, now + ten_years);
    }

    #[test]
    fn refresh_token_absent_means_keep_the_old_one() {
        let t = parse_token_response(&json!({"access_token": "a", "refresh_token": ""}), 0, None).unwrap();
        assert_eq!(t.refresh_token, None);
        let t = parse_token_response(&json!({"access_token": "a", "refresh_token": "r2"}), 0, None).unwrap();
        assert_eq!(t.refresh_token.as_deref(), Some("r2"));
        assert!(parse_token_response(&json!({"token": "a"}), 0, None).is_err());
    }

    #[test]
    fn margins() {
        assert_eq!(renewal_margin_ms(0, 3_600_000), 60_000);
        assert_eq!(renewal_margin_ms(0, 10_000), 5_000);
    }
}
