//! RFC 8693 token exchange for connection tokens: what a request must say
//! (token types, one target) and how its `audience` or `resource` names a
//! connection. No HTTP and no SQL: the app layer looks the target up.

use super::oauth::{OAuthError, OAuthErrorCode};

pub const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// RFC 8693 §3: the one token type exchanged both ways.
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// Where a connection lives in keyward's API; `<issuer><this><id>/` is the
/// connection as a `resource`.
pub const CONNECTIONS_PATH: &str = "/api/v2/connections/";

/// What an exchange asks a token for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExchangeTarget {
    /// A connection by id (`audience=conn_…`, or its URL at keyward as
    /// `resource`).
    Connection(String),
    /// The user's connection through this outbound client (`audience` =
    /// the client's id).
    OutboundClient(String),
    /// The user's connection to the API at this URL (`resource` = an
    /// outbound client's `api_base_url`).
    Api(String),
}

fn invalid_request(why: &str) -> OAuthError {
    OAuthError::invalid_request(why)
}

/// Checks the token types: the subject is a keyward access token, and an
/// access token is what comes back.
pub fn check_token_types(subject: &str, requested: Option<&str>) -> Result<(), OAuthError> {
    if subject != ACCESS_TOKEN_TYPE {
        return Err(invalid_request(&format!("subject_token_type must be {ACCESS_TOKEN_TYPE}")));
    }
    if requested.is_some_and(|r| r != ACCESS_TOKEN_TYPE) {
        return Err(invalid_request(&format!(
            "requested_token_type must be {ACCESS_TOKEN_TYPE} (a connection's access token)"
        )));
    }
    Ok(())
}

/// The one target named by `audiences` and `resources` (already normalized
/// by RFC 8707's rules): exactly one is required, as a token is for one
/// connection.
pub fn exchange_target(
    audiences: &[&str],
    resources: &[String],
    issuer: &str,
) -> Result<ExchangeTarget, OAuthError> {
    if audiences.len() + resources.len() != 1 {
        return Err(OAuthError::new(
            OAuthErrorCode::InvalidTarget,
            "name exactly one target: audience (a connection id or an outbound client id) or resource (a \
             connection's URL at keyward, or the API base URL of an outbound client)",
        ));
    }
    if let Some(audience) = audiences.first() {
        if audience.is_empty() || audience.len() > 200 || audience.chars().any(char::is_control) {
            return Err(OAuthError::new(
                OAuthErrorCode::InvalidTarget,
                "audience must be 1 to 200 characters",
            ));
        }
        return Ok(if audience.starts_with("conn_") {
            ExchangeTarget::Connection(audience.to_string())
        } else {
            ExchangeTarget::OutboundClient(audience.to_string())
        });
    }
    let resource = &resources[0];
    let prefix = format!("{issuer}{CONNECTIONS_PATH}");
    if let Some(rest) = resource.strip_prefix(&prefix) {
        let id = rest.strip_suffix('/').unwrap_or(rest);
        if id.is_empty() || id.contains(['/', '?']) {
            return Err(OAuthError::new(
                OAuthErrorCode::InvalidTarget,
                format!("a connection as resource is {prefix}<id>/"),
            ));
        }
        return Ok(ExchangeTarget::Connection(id.to_string()));
    }
    Ok(ExchangeTarget::Api(api_key(resource)))
}

/// How an API URL is compared: without the trailing slash.
pub fn api_key(url: &str) -> String {
    url.trim_end_matches('/').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUER: &str = "https://keyward.example";

    #[test]
    fn token_types() {
        assert!(check_token_types(ACCESS_TOKEN_TYPE, None).is_ok());
        assert!(check_token_types(ACCESS_TOKEN_TYPE, Some(ACCESS_TOKEN_TYPE)).is_ok());
        let id_token = "urn:ietf:params:oauth:token-type:id_token";
        assert_eq!(check_token_types(id_token, None).unwrap_err().code, OAuthErrorCode::InvalidRequest);
        let refresh = "urn:ietf:params:oauth:token-type:refresh_token";
        assert!(
            check_token_types(ACCESS_TOKEN_TYPE, Some(refresh))
                .unwrap_err()
                .description
                .contains("requested")
        );
    }

    #[test]
    fn targets() {
        let none: &[String] = &[];
        assert_eq!(
            exchange_target(&["conn_ab12"], none, ISSUER),
            Ok(ExchangeTarget::Connection("conn_ab12".into()))
        );
        assert_eq!(
            exchange_target(&["github"], none, ISSUER),
            Ok(ExchangeTarget::OutboundClient("github".into()))
        );
        let at_keyward = [format!("{ISSUER}/api/v2/connections/conn_ab12/")];
        assert_eq!(
            exchange_target(&[], &at_keyward, ISSUER),
            Ok(ExchangeTarget::Connection("conn_ab12".into()))
        );
        let api = ["https://api.github.example/".to_string()];
        assert_eq!(
            exchange_target(&[], &api, ISSUER),
            Ok(ExchangeTarget::Api("https://api.github.example".into()))
        );
        for (audiences, resources) in [
            (vec![], vec![]),
            (vec!["a", "b"], vec![]),
            (vec!["a"], api.to_vec()),
            (vec![""], vec![]),
            (vec![], vec![format!("{ISSUER}/api/v2/connections/")]),
            (vec![], vec![format!("{ISSUER}/api/v2/connections/a/b/")]),
        ] {
            let e = exchange_target(&audiences, &resources, ISSUER).unwrap_err();
            assert_eq!(e.code, OAuthErrorCode::InvalidTarget, "{audiences:?} {resources:?}");
        }
    }
}
