//! axum's extractors with their rejections in the API error shape.

use super::error::ApiError;
use crate::domain::excerpt;
use axum::extract::FromRequest;
use axum::extract::FromRequestParts;
use std::collections::HashMap;
use std::collections::hash_map::Entry;

#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// A typed query; one that is not UTF-8 is refused like any other form
/// ([`form_pairs`]), never read as U+FFFD.
pub struct ApiQuery<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        form_pairs(query.as_bytes())
            .map_err(|refusal| ApiError::bad_request(format!("the query {refusal}")))?;
        let axum::extract::Query(value) = axum::extract::Query::try_from_uri(&parts.uri)?;
        Ok(ApiQuery(value))
    }
}

/// A body of named scalar fields, form-encoded or JSON (the `/integration/v1`
/// endpoints take both). A field given twice, a nested value or another
/// content type is refused.
pub struct Fields(HashMap<String, String>);

impl<S: Send + Sync> FromRequest<S> for Fields {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        use axum::http::StatusCode;
        let content_type = media_type(req.headers());
        let body = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|r| ApiError::new(r.status(), r.body_text()))?;
        match content_type.as_str() {
            "application/x-www-form-urlencoded" => unique_fields(&body)
                .map(Fields)
                .map_err(|refusal| ApiError::bad_request(format!("the body {refusal}"))),
            "application/json" | "text/json" => {
                let value: serde_json::Value = serde_json::from_slice(&body)
                    .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))?;
                let serde_json::Value::Object(map) = value else {
                    return Err(ApiError::bad_request("the JSON body must be an object"));
                };
                // A JSON object's keys are unique already (the edge refuses
                // a repeated one).
                let mut fields = HashMap::new();
                for (k, v) in map {
                    let text = match v {
                        serde_json::Value::String(s) => s,
                        serde_json::Value::Number(n) => n.to_string(),
                        serde_json::Value::Bool(b) => b.to_string(),
                        serde_json::Value::Null => continue,
                        _ => {
                            return Err(ApiError::bad_request(format!(
                                "field {k:?} must be a string or a number"
                            )));
                        }
                    };
                    fields.insert(k, text);
                }
                Ok(Fields(fields))
            }
            _ => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send the fields as application/x-www-form-urlencoded or application/json",
            )),
        }
    }
}

impl Fields {
    pub fn required(&self, key: &str) -> Result<&str, ApiError> {
        self.0
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| ApiError::bad_request(format!("{key} is required")))
    }

    pub fn user_id(&self) -> Result<i64, ApiError> {
        self.required("user_id")?
            .trim()
            .parse()
            .map_err(|_| ApiError::bad_request("user_id must be an integer"))
    }
}

/// The request's media type, lowercase and without parameters such as
/// `charset` (empty when there is none).
pub fn media_type(headers: &axum::http::HeaderMap) -> String {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// Why a form body or a query string is refused before any field is used.
#[derive(Debug, PartialEq)]
pub enum FormRefusal {
    /// Percent-decoding would have to replace bytes that are not UTF-8:
    /// such a form is refused, not repaired.
    NotUtf8,
    /// A field named twice where each name may stand once (cut for showing).
    Repeated(String),
}

impl std::fmt::Display for FormRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FormRefusal::NotUtf8 => f.write_str("is not valid UTF-8"),
            FormRefusal::Repeated(name) => write!(f, "gives the field {name:?} more than once"),
        }
    }
}

/// The one way a form body or a query string is decoded: its fields in
/// order, or `NotUtf8`. Every form and query goes through here (or
/// [`unique_fields`]), so that no route can read a repaired one.
pub fn form_pairs(bytes: &[u8]) -> Result<form_urlencoded::Parse<'_>, FormRefusal> {
    if !is_utf8_form(bytes) {
        return Err(FormRefusal::NotUtf8);
    }
    Ok(form_urlencoded::parse(bytes))
}

/// The fields of a form or query in which each name stands once.
pub fn unique_fields(bytes: &[u8]) -> Result<HashMap<String, String>, FormRefusal> {
    let mut fields = HashMap::new();
    for (name, value) in form_pairs(bytes)? {
        match fields.entry(name.into_owned()) {
            Entry::Occupied(taken) => return Err(FormRefusal::Repeated(excerpt(taken.key(), 64).to_owned())),
            Entry::Vacant(free) => {
                free.insert(value.into_owned());
            }
        }
    }
    Ok(fields)
}

/// Whether a form-encoded body decodes to UTF-8. (ASCII never occurs
/// inside a UTF-8 sequence, so the whole body decodes as UTF-8 exactly
/// when each of its fields does.)
fn is_utf8_form(body: &[u8]) -> bool {
    if !body.contains(&b'%') {
        return std::str::from_utf8(body).is_ok();
    }
    percent_encoding::percent_decode(body).decode_utf8().is_ok()
}

/// Whether the request's media type is `expected` (lowercase).
pub fn has_media_type(headers: &axum::http::HeaderMap, expected: &str) -> bool {
    media_type(headers) == expected
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_that_are_not_utf8_are_told_apart() {
        for (form, utf8) in [
            (&b"a=caf\xc3\xa9"[..], true),
            (b"a=caf%C3%A9&b=x+y", true),
            (b"a=\xff", false),
            (b"a=%ff", false),
            (b"a=%C3", false),
        ] {
            assert_eq!(is_utf8_form(form), utf8, "{form:?}");
            assert_eq!(form_pairs(form).is_ok(), utf8, "{form:?}");
        }
    }

    #[test]
    fn unique_fields_refuse_a_name_given_twice() {
        let fields = unique_fields(b"a=1&b=caf%C3%A9+x").unwrap();
        assert_eq!(fields["b"], "caf\u{e9} x");
        assert_eq!(unique_fields(b"a=1&b=2&a=3"), Err(FormRefusal::Repeated("a".into())));
        assert_eq!(unique_fields(b"a=%ff"), Err(FormRefusal::NotUtf8));
        // Names are compared decoded.
        assert!(unique_fields(b"st%61te=1&state=2").is_err());
    }
}
