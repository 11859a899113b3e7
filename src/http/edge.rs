//! The edge screen: input that no handler should ever see is refused here,
//! once, before routing. Control characters in the path, the query or a
//! form or JSON body (a NUL byte is an error in PostgreSQL text, and other
//! controls only ever smuggle), and a JSON object that names a key twice
//! (parsers disagree on which one wins). It also reads every body within a
//! deadline.

use super::MAX_BODY_BYTES;
use super::error::ApiError;
use crate::domain::excerpt;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use std::time::Duration;

/// How long a request body may take to arrive, all of it.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use std::collections::HashSet;
use std::fmt;

/// Whether `c` may appear in text keyward accepts: no C0 control but tab,
/// line feed and carriage return (free text has those), no DEL, no C1.
pub fn allowed_char(c: char) -> bool {
    !c.is_control() || matches!(c, '\t' | '\n' | '\r')
}

/// A refusal in the shape the route's clients parse: RFC 6749 §5.2 for the
/// OAuth endpoints, the API shape elsewhere.
/// Whether reading a body failed on the connection's framing (hyper's
/// error somewhere in the chain), not on its size: a 400, not a 413.
fn broken_framing(error: &axum::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if e.is::<hyper::Error>() {
            return true;
        }
        cause = e.source();
    }
    false
}

fn refusal(path: &str, status: StatusCode, message: String) -> Response {
    let oauth = path.starts_with("/oauth/") && !path.starts_with("/oauth/v1/register/");
    if oauth {
        let body = serde_json::json!({"error": "invalid_request", "error_description": message});
        return (status, [(header::CACHE_CONTROL, "no-store")], axum::Json(body)).into_response();
    }
    ApiError::new(status, message).into_response()
}

fn control_characters(what: &str) -> String {
    format!("{what} contains a control character; send printable text")
}

/// Percent-decoded `raw` (a path or a query) has no control character at all.
fn clean_uri_part(raw: &str) -> bool {
    percent_encoding::percent_decode_str(raw).all(|b| b >= 0x20 && b != 0x7f)
}

/// Proxied bodies belong to the API behind the connection, not to keyward.
fn is_proxied(path: &str) -> bool {
    path.starts_with("/api/v2/connections/") && path.contains("/proxy/")
}

/// Screens `request` in place (its body is read whole and put back), or
/// the refusal to send instead. Called by the one request middleware
/// (`observe`): a layer of its own cost a fifth of the token endpoint's
/// throughput, as every `Router::layer` wraps each route again.
pub async fn screen(request: &mut Request) -> Result<(), Response> {
    let uri = request.uri();
    let path = uri.path();
    if !clean_uri_part(path) {
        return Err(refusal(path, StatusCode::BAD_REQUEST, control_characters("the path")));
    }
    if uri.query().is_some_and(|q| !clean_uri_part(&q.replace('+', " "))) {
        return Err(refusal(path, StatusCode::BAD_REQUEST, control_characters("the query")));
    }
    if path.starts_with(crate::domain::resource::GATEWAY_PREFIX) {
        // The gateway streams bodies to the resource's server as they come
        // (capped there), for a caller whose token it checked first; the
        // upstream's head deadline bounds how long one may take.
        return Ok(());
    }
    let kind = match super::extract::media_type(request.headers()).as_str() {
        _ if is_proxied(path) => BodyKind::Other,
        "application/x-www-form-urlencoded" => BodyKind::Form,
        "application/json" | "text/json" => BodyKind::Json,
        e if e.ends_with("+json") => BodyKind::Json,
        _ => BodyKind::Other,
    };
    // Every body is read here, whole, within a deadline: a client that
    // announces a body and stalls holds its connection no longer than this.
    let body = std::mem::take(request.body_mut());
    let bytes = match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, MAX_BODY_BYTES)).await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) if broken_framing(&e) => {
            let message = "the body's framing is malformed (a bad chunk)";
            return Err(refusal(request.uri().path(), StatusCode::BAD_REQUEST, message.into()));
        }
        Ok(Err(_)) => {
            let message = format!("the body is larger than {MAX_BODY_BYTES} bytes");
            return Err(refusal(request.uri().path(), StatusCode::PAYLOAD_TOO_LARGE, message));
        }
        Err(_) => {
            let message = format!("the body did not arrive within {} seconds", BODY_TIMEOUT.as_secs());
            let mut response = refusal(request.uri().path(), StatusCode::REQUEST_TIMEOUT, message);
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            return Err(response);
        }
    };
    let verdict = match kind {
        BodyKind::Form => screen_form(&bytes),
        BodyKind::Json => screen_json(&bytes),
        BodyKind::Other => Ok(()),
    };
    if let Err(message) = verdict {
        return Err(refusal(request.uri().path(), StatusCode::BAD_REQUEST, message));
    }
    *request.body_mut() = Body::from(bytes);
    Ok(())
}

enum BodyKind {
    Form,
    Json,
    Other,
}

fn screen_form(body: &[u8]) -> Result<(), String> {
    // Without a percent escape every field decodes to its own text ('+' to
    // a space): the body is checked as it is, not decoded field by field
    // (a tenth of introspection's time went to decoding forms).
    if !body.contains(&b'%') && std::str::from_utf8(body).is_ok_and(|text| text.chars().all(allowed_char)) {
        return Ok(());
    }
    // Read lossily on purpose: this only looks for control characters (a
    // replacement character is none), and checking UTF-8 here too would
    // do on every token request what its handler does anyway: every form
    // is read through `extract::form_pairs`, which refuses one that is not
    // UTF-8 in the handler's own shape.
    for (k, v) in form_urlencoded::parse(body) {
        if !k.chars().chain(v.chars()).all(allowed_char) {
            let shown: String = k.chars().filter(|c| !c.is_control()).take(64).collect();
            return Err(control_characters(&format!("field {shown:?}")));
        }
    }
    Ok(())
}

/// Malformed JSON is left to the handler's own parser (which says what is
/// wrong); this only refuses what a parser would silently accept.
fn screen_json(body: &[u8]) -> Result<(), String> {
    let mut de = serde_json::Deserializer::from_slice(body);
    match Screened::deserialize(&mut de) {
        Ok(_) => Ok(()),
        Err(e) if e.is_data() => Err(e.to_string().split(" at line").next().unwrap_or("").to_string()),
        Err(_) => Ok(()),
    }
}

/// Walks a JSON document, refusing a repeated key in any object and a
/// control character in any string or key.
struct Screened;

impl<'de> Deserialize<'de> for Screened {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScreenVisitor)
    }
}

struct ScreenVisitor;

fn check_text<E: de::Error>(s: &str, what: &str) -> Result<(), E> {
    if s.chars().all(allowed_char) {
        Ok(())
    } else {
        Err(E::custom(format!("a JSON {what} contains a control character; send printable text")))
    }
}

impl<'de> Visitor<'de> for ScreenVisitor {
    type Value = Screened;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("JSON")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Screened, E> {
        Ok(Screened)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Screened, E> {
        Ok(Screened)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Screened, E> {
        Ok(Screened)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Screened, E> {
        Ok(Screened)
    }
    fn visit_unit<E>(self) -> Result<Screened, E> {
        Ok(Screened)
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Screened, E> {
        check_text(s, "string").map(|_| Screened)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Screened, A::Error> {
        while seq.next_element::<Screened>()?.is_some() {}
        Ok(Screened)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Screened, A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            check_text::<A::Error>(&key, "key")?;
            if seen.contains(&key) {
                let shown = excerpt(&key, 64);
                return Err(de::Error::custom(format!("a JSON object names the key {shown:?} twice")));
            }
            seen.insert(key);
            map.next_value::<Screened>()?;
        }
        Ok(Screened)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_screen() {
        assert!(screen_json(br#"{"a": "x", "b": [1, {"c": "\t"}]}"#).is_ok());
        assert!(screen_json(br#"{"a": 1, "a": 2}"#).unwrap_err().contains("twice"));
        assert!(screen_json(br#"{"x": {"a": 1, "a": 2}}"#).is_err());
        assert!(screen_json(br#"{"a": "nul\u0000"}"#).unwrap_err().contains("control"));
        assert!(screen_json(br#"{"a\u0001": 1}"#).is_err());
        assert!(screen_json(br#"["\u007f"]"#).is_err());
        // Malformed JSON is for the handler to describe.
        assert!(screen_json(b"{not json").is_ok());
    }

    #[test]
    fn form_and_uri_screen() {
        assert!(screen_form(b"a=b&c=d%20e").is_ok());
        assert!(screen_form(b"a=b%00").is_err());
        assert!(screen_form(b"a%01=b").is_err());
        // Raw bytes, without a percent escape, are screened as well.
        assert!(screen_form(b"a=x+y&b=tab\there").is_ok());
        for raw in [&b"a=b\x00"[..], b"a\x01=b", b"a=\x7f", b"a=\xc2\x85"] {
            assert!(screen_form(raw).is_err(), "{raw:?}");
        }
        // Not UTF-8: for its handler to refuse in its own shape.
        assert!(screen_form(b"a=\xff").is_ok());
        assert!(screen_form(b"a=%ff").is_ok());
        assert!(clean_uri_part("/a/b%20c"));
        assert!(!clean_uri_part("/a/b%00"));
        assert!(!clean_uri_part("x=%0d%0a"));
    }
}
