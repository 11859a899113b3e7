//! Where a connection's proxy may send a request (SPEC §1.4): only below
//! the outbound client's API base URL. No open proxy.

/// The methods the proxy passes on: what REST APIs use. Others (TRACE,
/// CONNECT, WebDAV's PROPFIND, …) reach servers' less-guarded corners.
pub const PROXY_METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// Whether a path segment is, or decodes (once or twice, path parameters
/// cut off) to, `.` or `..`, or carries an encoded separator.
fn hides_a_dot_segment(segment: &str) -> bool {
    let once = percent_encoding::percent_decode_str(segment).decode_utf8_lossy().to_ascii_lowercase();
    let twice = percent_encoding::percent_decode_str(&once).decode_utf8_lossy().to_string();
    [segment.to_string(), once.clone(), twice].iter().any(|s| matches!(s.split(';').next(), Some(".." | ".")))
        || ["%2e", "%2f", "%5c"].iter().any(|e| once.contains(e))
}

/// The URL for `raw_path` (as it arrived, not decoded) and `query` below
/// `base`, or why not.
pub fn proxy_target(base: &str, raw_path: &str, query: Option<&str>) -> Result<url::Url, String> {
    let lower = raw_path.to_ascii_lowercase();
    // Refused before any resolution: dot segments (plain or encoded),
    // encoded separators, backslashes, and absolute or protocol-relative forms.
    // A segment's path parameters (`..;x`, read as `..` by some servers)
    // do not hide a dot segment either, nor does encoding it twice.
    // Control characters (raw or encoded) and raw whitespace, which URL
    // parsers drop (a tab in `\t..;x` hid a dot segment) or servers read
    // differently, go first. An encoded space (`%20`) is an ordinary name.
    let decoded = percent_encoding::percent_decode_str(raw_path).decode_utf8_lossy();
    if decoded.chars().any(char::is_control) || raw_path.chars().any(char::is_whitespace) {
        return Err("the path must not contain control characters or spaces".into());
    }
    if raw_path.split('/').any(hides_a_dot_segment)
        || lower.contains("%2e")
        || lower.contains("%2f")
        || lower.contains("%5c")
        || raw_path.contains('\\')
        || raw_path.starts_with('/')
        || raw_path.contains("://")
        || raw_path.contains('#')
    {
        return Err("the path must stay below the upstream API's base URL".into());
    }
    let mut base = url::Url::parse(base).map_err(|_| "the API base URL is not valid".to_string())?;
    if !base.path().ends_with('/') {
        let path = format!("{}/", base.path());
        base.set_path(&path);
    }
    let mut target = base.join(raw_path).map_err(|_| "the path is not valid".to_string())?;
    target.set_query(query.filter(|q| !q.is_empty()));
    let same_origin = target.scheme() == base.scheme()
        && target.host_str() == base.host_str()
        && target.port_or_known_default() == base.port_or_known_default();
    if !same_origin
        || !target.path().starts_with(base.path())
        || target.username() != ""
        || target.password().is_some()
    {
        return Err("the path must stay below the upstream API's base URL".into());
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_cannot_hide_a_dot_segment() {
        // Found by `properties::proxied_paths_stay_below_the_base`.
        for path in ["\t..;x", "\n../x", "a/%09../b", " ../x"] {
            assert!(proxy_target("https://api.example/v2/", path, None).is_err(), "{path:?}");
        }
        assert!(proxy_target("https://api.example/v2/", "files/my%20doc", None).is_ok());
    }

    #[test]
    fn path_parameters_do_not_hide_dot_segments() {
        for bad in ["..;/admin", "a/..;x/b", ".;/x", "a/..;", "x/..%3b/y", "x/%252e%252e/y", "x/%252f/y"] {
            assert!(proxy_target(BASE, bad, None).is_err(), "{bad}");
        }
        assert!(proxy_target(BASE, "a;v=1/b", None).is_ok());
    }

    const BASE: &str = "https://api.endsystem.com/v1/";

    #[test]
    fn paths_below_the_base_are_allowed() {
        assert_eq!(
            proxy_target(BASE, "users/7", None).unwrap().as_str(),
            "https://api.endsystem.com/v1/users/7"
        );
        assert_eq!(
            proxy_target(BASE, "users", Some("a=1&b=2")).unwrap().as_str(),
            "https://api.endsystem.com/v1/users?a=1&b=2"
        );
        assert_eq!(
            proxy_target("https://api.endsystem.com/v1", "x", None).unwrap().as_str(),
            "https://api.endsystem.com/v1/x"
        );
        assert_eq!(proxy_target(BASE, "", None).unwrap().as_str(), BASE);
    }

    #[test]
    fn everything_else_is_refused() {
        for raw in [
            "../admin",
            "users/../../admin",
            "./x",
            "%2e%2e/admin",
            "%2E%2E/admin",
            ".%2e/x",
            "users%2F..%2Fadmin",
            "..%5cadmin",
            "..\\admin",
            "/etc/passwd",
            "//evil.example/x",
            "https://evil.example/x",
            "http:/evil.example",
            "x#frag",
        ] {
            assert!(proxy_target(BASE, raw, None).is_err(), "{raw}");
        }
    }
}
