//! One spelling per path, before plugins see it: a plugin that refuses
//! `/admin` must not be passed by `/./admin`, `/%61dmin` or `//admin`,
//! which the application may well read as `/admin`.
//!
//! The rules are RFC 3986's normalisations that do not change what a path
//! means (section 6.2.2): percent-encoded unreserved characters are decoded
//! (`%61` is `a`, `%2E` is `.`), other percent-encodings get upper-case hex,
//! and `.` and `..` segments are removed (section 5.2.4). Runs of `/` are
//! merged too, as most application frameworks do, unless `[limits]
//! merge_slashes = false` (for applications that carry URLs in paths). The
//! query is left as it is. The application gets the normalised path, so it
//! and the plugins see the same; `[limits] normalize_paths = false` turns
//! all of this off, for applications that check signatures over raw paths.

use http::uri::PathAndQuery;

/// The normal form of `target`, if it differs from `target`.
pub fn normalized(target: &PathAndQuery, merge_slashes: bool) -> Option<PathAndQuery> {
    let path = target.path();
    if !needs_work(path.as_bytes(), merge_slashes) {
        return None;
    }
    let mut normal = remove_dot_segments(&decode_unreserved(path), merge_slashes);
    if let Some(query) = target.query() {
        normal.push('?');
        normal.push_str(query);
    }
    PathAndQuery::try_from(normal).ok()
}

/// A quick look for anything to change: a `%`, a `.` segment, or `//`.
fn needs_work(path: &[u8], merge_slashes: bool) -> bool {
    path.iter().enumerate().any(|(at, &byte)| match byte {
        b'%' => true,
        b'.' => {
            let starts_segment = at == 0 || path[at - 1] == b'/';
            let rest = &path[at + 1..];
            starts_segment
                && (rest.is_empty()
                    || rest[0] == b'/'
                    || (rest[0] == b'.' && (rest.len() == 1 || rest[1] == b'/')))
        }
        b'/' => merge_slashes && path.get(at + 1) == Some(&b'/'),
        _ => false,
    })
}

fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"-._~".contains(&byte)
}

/// Decodes percent-encoded unreserved characters; other encodings keep
/// their escape with upper-case hex, and a `%` not followed by two hex
/// digits stays as it is. Works on bytes: a path may hold UTF-8 that a
/// client sent unescaped, which is copied as it is.
fn decode_unreserved(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let hex = |offset: usize| {
            bytes
                .get(at + offset)
                .and_then(|b| (*b as char).to_digit(16))
        };
        match (bytes[at], hex(1), hex(2)) {
            (b'%', Some(high), Some(low)) => {
                let decoded = (high * 16 + low) as u8;
                if is_unreserved(decoded) {
                    out.push(decoded);
                } else {
                    out.push(b'%');
                    out.extend(bytes[at + 1..at + 3].iter().map(u8::to_ascii_uppercase));
                }
                at += 3;
            }
            (byte, _, _) => {
                out.push(byte);
                at += 1;
            }
        }
    }
    // Only ASCII was decoded and every other byte copied whole, so this is
    // the UTF-8 it was.
    String::from_utf8(out).unwrap_or_else(|_| path.to_owned())
}

/// RFC 3986 section 5.2.4 on an absolute path, merging empty segments too
/// if `merge_slashes`.
fn remove_dot_segments(path: &str, merge_slashes: bool) -> String {
    let mut segments: Vec<&str> = Vec::new();
    let mut parts = path.split('/').skip(1).peekable();
    let mut ends_in_directory = false;
    while let Some(segment) = parts.next() {
        let last = parts.peek().is_none();
        match segment {
            "." => ends_in_directory = last,
            ".." => {
                segments.pop();
                ends_in_directory = last;
            }
            "" if merge_slashes && !last => {}
            _ => {
                segments.push(segment);
                ends_in_directory = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    for segment in &segments {
        out.push('/');
        out.push_str(segment);
    }
    if ends_in_directory || out.is_empty() {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normal(target: &str, merge_slashes: bool) -> String {
        let target = PathAndQuery::try_from(target).unwrap();
        normalized(&target, merge_slashes)
            .map(|n| n.as_str().to_owned())
            .unwrap_or_else(|| target.as_str().to_owned())
    }

    #[test]
    fn spellings_of_one_path_become_one() {
        for (given, expected) in [
            ("/admin/x", "/admin/x"),
            ("/./admin/x", "/admin/x"),
            ("/public/../admin/x", "/admin/x"),
            ("/%61dmin/x", "/admin/x"),
            ("/%2e%2E/admin", "/admin"),
            ("//admin///x", "/admin/x"),
            ("/a/b/..", "/a/"),
            ("/a/.", "/a/"),
            ("/..", "/"),
            ("/../../x", "/x"),
            ("/", "/"),
            ("/a/", "/a/"),
            ("/a/..b/.c", "/a/..b/.c"),
            ("/%7euser?q=/../x%2f", "/~user?q=/../x%2f"),
            ("/a%2fb/%c3%A9", "/a%2Fb/%C3%A9"),
            ("/100%", "/100%"),
            ("/%zz", "/%zz"),
            ("/caf\u{e9}/./%41", "/caf\u{e9}/A"),
        ] {
            assert_eq!(normal(given, true), expected, "{given}");
        }
    }

    #[test]
    fn slashes_can_be_kept() {
        assert_eq!(
            normal("/fetch/http://example.com//x", false),
            "/fetch/http://example.com//x"
        );
        assert_eq!(normal("//a/./b", false), "//a/b");
    }

    #[test]
    fn a_normal_path_is_not_copied() {
        let target = PathAndQuery::from_static("/api/v1/items?id=3");
        assert!(normalized(&target, true).is_none());
        let target = PathAndQuery::from_static("/file.txt/.well-known/a..b");
        assert!(normalized(&target, true).is_none());
    }
}
