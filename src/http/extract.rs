//! axum's extractors with their rejections in the API error shape.

use super::error::ApiError;
use crate::domain::excerpt;
use axum::extract::FromRequest;
use axum::extract::FromRequestParts;

#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// A body of named scalar fields, form-encoded or JSON (the `/integration/v1`
/// endpoints take both). A field given twice, a nested value or another
/// content type is refused.
pub struct Fields(std::collections::HashMap<String, String>);

impl<S: Send + Sync> FromRequest<S> for Fields {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        use axum::http::StatusCode;
        let content_type = media_type(req.headers());
        let body = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|r| ApiError::new(r.status(), r.body_text()))?;
        let mut fields = std::collections::HashMap::new();
        let mut add = |key: String, value: String| -> Result<(), ApiError> {
            if fields.contains_key(&key) {
                let shown = excerpt(&key, 64);
                return Err(ApiError::bad_request(format!("field {shown:?} is given more than once")));
            }
            fields.insert(key, value);
            Ok(())
        };
        match content_type.as_str() {
            "application/x-www-form-urlencoded" => {
                if !is_utf8_form(&body) {
                    return Err(ApiError::bad_request("the body is not valid UTF-8"));
                }
                for (k, v) in form_urlencoded::parse(&body) {
                    add(k.into_owned(), v.into_owned())?;
                }
            }
            "application/json" | "text/json" => {
                let value: serde_json::Value = serde_json::from_slice(&body)
                    .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))?;
                let serde_json::Value::Object(map) = value else {
                    return Err(ApiError::bad_request("the JSON body must be an object"));
                };
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
                    add(k, text)?;
                }
            }
            _ => {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "send the fields as application/x-www-form-urlencoded or application/json",
                ));
            }
        }
        Ok(Fields(fields))
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

/// Whether a form-encoded body decodes to UTF-8. Percent-decoding would
/// replace bytes that are not UTF-8; such a form is refused, not repaired.
/// (ASCII never occurs inside a UTF-8 sequence, so the whole body decodes
/// as UTF-8 exactly when each of its fields does.)
pub fn is_utf8_form(body: &[u8]) -> bool {
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
        }
    }
}
