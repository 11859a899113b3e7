//! Single sign-on through upstream OpenID Connect providers: what an admin
//! configures, what an ID token must prove (OIDC Core §3.1.3.7), and how its
//! claims become a keyward user. No HTTP and no SQL: the app layer fetches
//! discovery documents and keys, this module decides.

use super::Role;
use super::user::{is_invisible, validate_username};
use jsonwebtoken::jwk::JwkSet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const PROVIDER_ID_MAX: usize = 40;
const NAME_MAX: usize = 80;
const CLAIM_MAX: usize = 100;
const GROUP_ROLES_MAX: usize = 200;
const SCOPES_MAX: usize = 20;
pub const CLIENT_SECRET_MAX: usize = 1024;
use super::signed_jwt::LEEWAY_SECONDS;

/// An upstream OpenID Connect provider, as an admin configured it (the
/// client secret is kept apart, sealed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SsoProvider {
    /// Short name in URLs: `/login/sso/<id>/`.
    pub id: String,
    /// What the login page's button says: "Sign in with <display_name>".
    pub display_name: String,
    /// Discovery is `<issuer>/.well-known/openid-configuration`; ID tokens
    /// must carry this very `iss`.
    pub issuer: String,
    pub client_id: String,
    pub scopes: Vec<String>,
    /// The claim whose value is the keyward username.
    pub username_claim: String,
    /// A claim listing the user's groups, mapped to roles by `group_roles`.
    pub groups_claim: Option<String>,
    pub group_roles: BTreeMap<String, Role>,
    /// The role of users seen for the first time whose groups map to none;
    /// `None` refuses them (they must be created by an admin first).
    pub default_role: Option<Role>,
    pub enabled: bool,
    /// Whether keyward accepts this IdP's identity assertions (ID-JAG, the
    /// MCP enterprise-managed authorization extension) for its linked users.
    #[serde(default)]
    pub id_jag: bool,
}

/// What an admin sends to create or replace a provider.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SsoProviderInput {
    pub display_name: String,
    pub issuer: String,
    pub client_id: String,
    /// Write-only. On replace, leaving it out keeps the stored one.
    #[serde(default)]
    pub client_secret: Option<String>,
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    #[serde(default)]
    pub username_claim: Option<String>,
    #[serde(default)]
    pub groups_claim: Option<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub group_roles: BTreeMap<String, Role>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub default_role: Option<Role>,
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    /// Accept this IdP's ID-JAG assertions at the token endpoint
    /// (`urn:ietf:params:oauth:grant-type:jwt-bearer`).
    #[serde(default)]
    pub id_jag: bool,
}

fn enabled_by_default() -> bool {
    true
}

fn printable(s: &str, max: usize) -> bool {
    !s.trim().is_empty() && s.chars().count() <= max && !s.chars().any(|c| c.is_control() || is_invisible(c))
}

/// A provider's id: lowercase letters, digits and dashes, starting with a
/// letter or digit.
pub fn validate_provider_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= PROVIDER_ID_MAX
        && !id.starts_with('-')
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "the provider id must be 1 to {PROVIDER_ID_MAX} lowercase letters, digits or dashes, not starting \
             with a dash"
        ))
    }
}

impl SsoProviderInput {
    /// The provider this input describes; `issuer_ok` checks the issuer URL
    /// against the outbound-address rule.
    pub fn into_provider(
        self,
        id: &str,
        issuer_ok: impl Fn(&str) -> Result<(), String>,
    ) -> Result<(SsoProvider, Option<String>), String> {
        validate_provider_id(id)?;
        if !printable(&self.display_name, NAME_MAX) {
            return Err(format!("display_name must be 1 to {NAME_MAX} printable characters"));
        }
        let issuer = self.issuer.trim_end_matches('/').to_string();
        issuer_ok(&issuer).map_err(|e| format!("issuer: {e}"))?;
        let parsed = url::Url::parse(&issuer).map_err(|_| "issuer must be an absolute URL".to_string())?;
        if parsed.query().is_some() {
            return Err("issuer must not have a query".into());
        }
        if !printable(&self.client_id, 255) {
            return Err("client_id must be 1 to 255 printable characters".into());
        }
        if let Some(secret) = &self.client_secret {
            if secret.is_empty() || secret.len() > CLIENT_SECRET_MAX {
                return Err(format!("client_secret must be 1 to {CLIENT_SECRET_MAX} bytes"));
            }
        }
        let scopes = self.scopes.unwrap_or_else(|| vec!["openid".into(), "email".into(), "profile".into()]);
        let scope_ok = |s: &String| {
            !s.is_empty()
                && s.len() <= 100
                && s.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
        };
        if scopes.len() > SCOPES_MAX || !scopes.iter().all(scope_ok) || !scopes.iter().any(|s| s == "openid")
        {
            return Err(format!("scopes must be at most {SCOPES_MAX} scope names and include \"openid\""));
        }
        let username_claim = self.username_claim.unwrap_or_else(|| "email".into());
        let claim_ok = |c: &str| printable(c, CLAIM_MAX);
        if !claim_ok(&username_claim) || self.groups_claim.as_deref().is_some_and(|c| !claim_ok(c)) {
            return Err(format!("claim names must be 1 to {CLAIM_MAX} printable characters"));
        }
        if !self.group_roles.is_empty() && self.groups_claim.is_none() {
            return Err("group_roles needs groups_claim (the claim that lists a user's groups)".into());
        }
        if self.group_roles.len() > GROUP_ROLES_MAX || !self.group_roles.keys().all(|g| printable(g, 200)) {
            return Err(format!("group_roles takes at most {GROUP_ROLES_MAX} groups of 1 to 200 characters"));
        }
        let provider = SsoProvider {
            id: id.to_string(),
            display_name: self.display_name.trim().to_string(),
            issuer,
            client_id: self.client_id,
            scopes,
            username_claim,
            groups_claim: self.groups_claim,
            group_roles: self.group_roles,
            default_role: self.default_role,
            enabled: self.enabled,
            id_jag: self.id_jag,
        };
        Ok((provider, self.client_secret))
    }
}

/// Why a sign-in through a provider is refused. The message is shown to
/// the person signing in, so it names the problem, not the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SsoRefusal {
    #[error("the provider's ID token is not valid: {0}")]
    BadIdToken(String),
    #[error("the provider's answer is not usable: {0}")]
    BadClaims(String),
    #[error("{0}")]
    NotAllowed(String),
}

/// The claims keyward reads of a verified ID token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInClaims {
    pub subject: String,
    pub username: String,
    pub groups: Vec<String>,
}

/// What an ID token must match besides its signature.
pub struct IdTokenExpectation<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub nonce: &'a str,
}

/// The kid an ID token names (to fetch fresh keys when it is unknown).
pub fn id_token_kid(id_token: &str) -> Option<String> {
    super::signed_jwt::key_id(id_token)
}

/// Verifies an ID token (OIDC Core §3.1.3.7): signature by one of `keys`
/// with an asymmetric algorithm, `iss`, `aud` (and `azp` when there are
/// several audiences), `exp`, `iat`, `nonce`; then reads its claims.
pub fn verify_id_token(
    id_token: &str,
    keys: &JwkSet,
    expected: &IdTokenExpectation<'_>,
    provider: &SsoProvider,
) -> Result<SignInClaims, SsoRefusal> {
    let wanted = super::signed_jwt::Expected {
        issuer: expected.issuer,
        audiences: &[expected.client_id],
        required: &["iss", "aud", "sub"],
    };
    let claims = super::signed_jwt::verify(id_token, keys, &wanted).map_err(|why| {
        // Said of the provider's keys and this client, for the person.
        let why = match why.as_str() {
            "no published key matches it" => "no published key of the provider matches it".to_string(),
            "no published key verifies it" => "no published key of the provider verifies it".to_string(),
            "it is for another audience" => "it is for another client".to_string(),
            _ => why,
        };
        SsoRefusal::BadIdToken(why)
    })?;
    read_claims(&claims, expected, provider)
}

fn read_claims(
    claims: &serde_json::Value,
    expected: &IdTokenExpectation<'_>,
    provider: &SsoProvider,
) -> Result<SignInClaims, SsoRefusal> {
    let bad = |m: &str| SsoRefusal::BadIdToken(m.to_string());
    // Several audiences: the token must be issued to this client (azp).
    if claims.get("aud").is_some_and(|a| a.as_array().is_some_and(|a| a.len() > 1))
        && claims.get("azp").and_then(|v| v.as_str()) != Some(expected.client_id)
    {
        return Err(bad("it names several audiences but is not issued to this client (azp)"));
    }
    let now = super::now().unix_timestamp();
    match claims.get("iat").and_then(|v| v.as_i64()) {
        Some(iat) if iat <= now + LEEWAY_SECONDS as i64 => {}
        Some(_) => return Err(bad("it is issued in the future")),
        None => return Err(bad("it has no iat claim")),
    }
    let nonce = claims.get("nonce").and_then(|v| v.as_str()).unwrap_or("");
    let nonce_ok = !expected.nonce.is_empty()
        && aws_lc_rs::constant_time::verify_slices_are_equal(nonce.as_bytes(), expected.nonce.as_bytes())
            .is_ok();
    if !nonce_ok {
        return Err(bad("its nonce is not the one this sign-in sent"));
    }
    claims_of(claims, provider)
}

/// The subject, username and groups of verified claims.
pub fn claims_of(claims: &serde_json::Value, provider: &SsoProvider) -> Result<SignInClaims, SsoRefusal> {
    let bad = |m: String| SsoRefusal::BadClaims(m);
    let subject = claims.get("sub").and_then(|v| v.as_str()).unwrap_or("");
    if subject.is_empty() || subject.len() > 255 {
        return Err(bad("the ID token's sub is empty or longer than 255 characters".into()));
    }
    let claim = &provider.username_claim;
    let Some(username) = claims.get(claim).and_then(|v| v.as_str()) else {
        return Err(bad(format!("the provider sent no {claim:?} claim to use as the username")));
    };
    // A name the provider has not verified is one its user typed: an
    // e-mail address is a username only with `email_verified: true`.
    if claim == "email" && claims.get("email_verified").and_then(|v| v.as_bool()) != Some(true) {
        return Err(bad("the provider does not say this e-mail address is verified (email_verified)".into()));
    }
    // The name is checked where it is used (see `sign_in_as`): a subject
    // linked before keeps signing in, whatever its name claim says today.
    let groups = match provider.groups_claim.as_ref().and_then(|c| claims.get(c)) {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(serde_json::Value::String(g)) => vec![g.clone()],
        Some(serde_json::Value::Array(items)) => {
            items.iter().filter_map(|g| g.as_str()).take(1000).map(str::to_owned).collect()
        }
        Some(_) => return Err(bad("the groups claim is neither a string nor a list of strings".into())),
    };
    Ok(SignInClaims { subject: subject.to_string(), username: username.to_string(), groups })
}

impl SsoProvider {
    /// The role `groups` give: the highest mapped one, else the default
    /// role; `None` when neither applies.
    pub fn role_for(&self, groups: &[String]) -> Option<Role> {
        groups.iter().filter_map(|g| self.group_roles.get(g)).max().copied().or(self.default_role)
    }

    /// Whether roles follow the provider's groups at every sign-in.
    pub fn syncs_roles(&self) -> bool {
        self.groups_claim.is_some() && !self.group_roles.is_empty()
    }
}

/// Who an upstream account signs in as, given what the store holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignInAs {
    /// The user linked to this subject before.
    Linked(super::UserId),
    /// An SSO user an admin created by this name, linked now.
    Link(super::UserId),
    /// A new SSO user.
    Provision { role: Role },
}

/// A user whose name an upstream account signs in with for the first time.
pub struct SameName<'a> {
    pub user: &'a super::User,
    /// Whether some upstream account (of any provider) is linked to it.
    pub linked: bool,
}

/// The account rule: a subject signs in as the user it was linked to; the
/// first time, as the SSO-only user of that name that an admin created and
/// nobody has signed in as yet, or as a new user when the provider
/// provisions. A user already linked to another upstream account, and a
/// password user, are never taken over: names are what providers' users
/// may choose, subjects are not.
pub fn sign_in_as(
    provider: &SsoProvider,
    claims: &SignInClaims,
    linked: Option<super::UserId>,
    same_name: Option<SameName<'_>>,
) -> Result<SignInAs, SsoRefusal> {
    if let Some(id) = linked {
        return Ok(SignInAs::Linked(id));
    }
    // A name that becomes a link or a new account must be a valid one.
    validate_username(&claims.username).map_err(|e| {
        SsoRefusal::BadClaims(format!(
            "the {:?} claim is not a usable username: {e}",
            provider.username_claim
        ))
    })?;
    // One answer for a name that is taken (by a password user or another
    // upstream account) and one that is free where the provider creates no
    // accounts: a provider's user who picks names must not learn how a
    // keyward account signs in (found by an outside probe).
    let refusal = || {
        SsoRefusal::NotAllowed(format!(
            "there is no keyward account for {:?} that this {} account may sign in as; ask an admin",
            claims.username, provider.display_name
        ))
    };
    match same_name {
        Some(same) if same.user.auth_source == super::AuthSource::Password || same.linked => Err(refusal()),
        Some(same) => Ok(SignInAs::Link(same.user.id)),
        None => {
            provider.role_for(&claims.groups).map(|role| SignInAs::Provision { role }).ok_or_else(refusal)
        }
    }
}

/// Where the browser goes to sign in at the provider (authorization code
/// with PKCE S256, `state` and `nonce`).
pub fn authorization_url(
    authorization_endpoint: &str,
    provider: &SsoProvider,
    redirect_uri: &str,
    state: &str,
    nonce: &str,
    code_challenge: &str,
) -> Result<String, String> {
    let mut url = url::Url::parse(authorization_endpoint)
        .map_err(|_| "the provider's authorization_endpoint is not a URL".to_string())?;
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &provider.client_id)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("scope", &provider.scopes.join(" "))
        .append_pair("state", state)
        .append_pair("nonce", nonce)
        .append_pair("code_challenge", code_challenge)
        .append_pair("code_challenge_method", "S256");
    Ok(url.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AuthSource, User};

    fn provider() -> SsoProvider {
        let input: SsoProviderInput = serde_json::from_value(serde_json::json!({
            "display_name": "Okta",
            "issuer": "https://idp.example.com/",
            "client_id": "keyward",
            "client_secret": "s3cret",
            "groups_claim": "groups",
            "group_roles": {"admins": "server_admin", "stewards": "steward"},
            "default_role": "viewer"
        }))
        .unwrap();
        input.into_provider("okta", |_| Ok(())).unwrap().0
    }

    #[test]
    fn input_is_validated_and_normalized() {
        let p = provider();
        assert_eq!(p.issuer, "https://idp.example.com");
        assert_eq!(p.scopes, ["openid", "email", "profile"]);
        assert_eq!(p.username_claim, "email");
        let make = |v: serde_json::Value, id: &str| {
            serde_json::from_value::<SsoProviderInput>(v).unwrap().into_provider(id, |_| Ok(()))
        };
        let base = serde_json::json!({"display_name": "X", "issuer": "https://x.example", "client_id": "c"});
        assert!(make(base.clone(), "Bad Id").is_err());
        assert!(make(base.clone(), "-x").is_err());
        let mut no_openid = base.clone();
        no_openid["scopes"] = serde_json::json!(["email"]);
        assert!(make(no_openid, "x").unwrap_err().contains("openid"));
        let mut roles_without_claim = base.clone();
        roles_without_claim["group_roles"] = serde_json::json!({"a": "viewer"});
        assert!(make(roles_without_claim, "x").unwrap_err().contains("groups_claim"));
        let mut control = base.clone();
        control["display_name"] = serde_json::json!("a\u{202e}b");
        assert!(make(control, "x").is_err());
        let refused = serde_json::from_value::<SsoProviderInput>(base.clone())
            .unwrap()
            .into_provider("x", |_| Err("must be https".into()));
        assert!(refused.unwrap_err().starts_with("issuer:"));
    }

    #[test]
    fn roles_come_from_the_highest_mapped_group_else_the_default() {
        let mut p = provider();
        assert_eq!(p.role_for(&["stewards".into(), "admins".into()]), Some(Role::ServerAdmin));
        assert_eq!(p.role_for(&["unknown".into()]), Some(Role::Viewer));
        p.default_role = None;
        assert_eq!(p.role_for(&["unknown".into()]), None);
        assert_eq!(p.role_for(&["stewards".into()]), Some(Role::Steward));
    }

    fn claims(v: serde_json::Value) -> Result<SignInClaims, SsoRefusal> {
        claims_of(&v, &provider())
    }

    #[test]
    fn claims_need_a_subject_a_username_and_a_verified_email() {
        let ok = claims(
            serde_json::json!({"sub": "1", "email": "a@b.c", "email_verified": true, "groups": ["admins"]}),
        )
        .unwrap();
        assert_eq!(ok.username, "a@b.c");
        assert_eq!(ok.groups, ["admins"]);
        let one =
            claims(serde_json::json!({"sub": "1", "email": "a@b.c", "email_verified": true, "groups": "x"}));
        assert_eq!(one.unwrap().groups, ["x"]);
        assert!(claims(serde_json::json!({"sub": "1", "email": "a@b.c"})).is_err(), "email_verified missing");
        assert!(claims(serde_json::json!({"email": "a@b.c"})).is_err());
        assert!(claims(serde_json::json!({"sub": "1"})).is_err());
        assert!(claims(serde_json::json!({"sub": "1", "email": "a@b.c", "email_verified": false})).is_err());
        assert!(claims(serde_json::json!({"sub": "1", "email": "a@b.c", "email_verified": "true"})).is_err());
        assert!(claims(serde_json::json!({"sub": "1", "email": "a@b.c", "email_verified": 1})).is_err());
        assert!(
            claims(serde_json::json!({"sub": "1", "email": "a@b.c", "email_verified": true, "groups": 3}))
                .is_err()
        );
    }

    fn user(source: AuthSource) -> User {
        User {
            id: 7,
            username: "a@b.c".into(),
            role: Role::Viewer,
            auth_source: source,
            disabled: false,
            created_at: crate::domain::now(),
            tokens_not_before: None,
        }
    }

    #[test]
    fn a_provider_never_takes_over_a_password_or_linked_account() {
        let p = provider();
        let c = SignInClaims { subject: "s".into(), username: "a@b.c".into(), groups: vec![] };
        assert_eq!(sign_in_as(&p, &c, Some(3), None), Ok(SignInAs::Linked(3)));
        // A name is checked before it links or makes an account (a fullwidth
        // look-alike of another is none), not when the subject is linked.
        for bad in ["a b", "\u{ff41}@b.c"] {
            let c = SignInClaims { username: bad.into(), ..c.clone() };
            assert!(matches!(sign_in_as(&p, &c, None, None), Err(SsoRefusal::BadClaims(_))), "{bad:?}");
            assert_eq!(sign_in_as(&p, &c, Some(3), None), Ok(SignInAs::Linked(3)));
        }
        let password = user(AuthSource::Password);
        let sso = user(AuthSource::Sso);
        let same = |user, linked| Some(SameName { user, linked });
        assert!(matches!(sign_in_as(&p, &c, None, same(&password, false)), Err(SsoRefusal::NotAllowed(_))));
        assert_eq!(sign_in_as(&p, &c, None, same(&sso, false)), Ok(SignInAs::Link(7)));
        // Another upstream account of that name: never a second way in.
        assert!(matches!(sign_in_as(&p, &c, None, same(&sso, true)), Err(SsoRefusal::NotAllowed(_))));
        assert_eq!(sign_in_as(&p, &c, None, None), Ok(SignInAs::Provision { role: Role::Viewer }));
        let mut closed = p.clone();
        closed.default_role = None;
        assert!(matches!(sign_in_as(&closed, &c, None, None), Err(SsoRefusal::NotAllowed(_))));
        // The three refusals read the same: how a taken name signs in is
        // nobody's business, nor whether it is taken at all.
        let told = |same| sign_in_as(&closed, &c, None, same).unwrap_err().to_string();
        assert_eq!(told(same(&password, false)), told(None));
        assert_eq!(told(same(&sso, true)), told(None));
    }

    #[test]
    fn the_authorization_url_carries_pkce_state_and_nonce() {
        let url = authorization_url(
            "https://idp.example.com/auth?x=1",
            &provider(),
            "https://kw/cb",
            "st",
            "no",
            "ch",
        )
        .unwrap();
        let url = url::Url::parse(&url).unwrap();
        let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(q["x"], "1");
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(q["nonce"], "no");
        assert_eq!(q["state"], "st");
        assert_eq!(q["scope"], "openid email profile");
    }
}
