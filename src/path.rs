//! Request path normalisation (CONTRACT "Requests"). Every escape is decoded once (`%2F` too, as
//! nginx does for `$uri`), duplicate slashes are merged and dot segments removed, in that order.
//! Routes match that decoded path; the upstream receives the same path re-encoded, so the gateway
//! and the upstream always agree on which resource a request names.

use std::borrow::Cow;

/// Why a path is refused with 400.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum BadPath {
    Escape,
    Nul,
}

/// A normalised path: the decoded bytes routes match against, and the path sent upstream.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct NormalPath<'a> {
    pub matching: Cow<'a, [u8]>,
    pub upstream: Cow<'a, [u8]>,
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Bytes written `%XX` in the upstream path: controls, space, `#`, `%`, `?`, DEL and non-ASCII
/// (the set nginx escapes when it re-encodes a URI), and `<`, `>`, `` ` ``, which an HTTP
/// request target cannot carry raw.
fn must_escape(b: u8) -> bool {
    b <= b' ' || matches!(b, b'#' | b'%' | b'?' | b'<' | b'>' | b'`' | 0x7f) || b >= 0x80
}

/// The path as the client wrote it: raw bytes for an origin-form target (non-UTF-8 kept), the
/// path component of an absolute-form one; and whether the target was origin-form.
pub(crate) fn client_path(req: &pingora_http::RequestHeader) -> (&[u8], bool) {
    let target = req.raw_path();
    if target.first() == Some(&b'/') {
        let path = target.split(|&b| b == b'?').next().unwrap_or_default();
        (path, true)
    } else {
        (req.uri.path().as_bytes(), false)
    }
}

/// Normalises `path` (no query). Allocates only when the path needs a change.
pub(crate) fn normalize(path: &[u8]) -> Result<NormalPath<'_>, BadPath> {
    if path.contains(&0) {
        return Err(BadPath::Nul);
    }
    let needs_work = path.first() != Some(&b'/')
        || path.windows(2).any(|w| w == b"//" || w == b"/.")
        || path.iter().any(|&b| b != b'%' && must_escape(b))
        || path.contains(&b'%');
    if !needs_work {
        return Ok(NormalPath {
            matching: Cow::Borrowed(path),
            upstream: Cow::Borrowed(path),
        });
    }
    // 1. Decode every escape once; a malformed one or a NUL is refused.
    let mut decoded = Vec::with_capacity(path.len() + 1);
    if path.first() != Some(&b'/') {
        decoded.push(b'/');
    }
    let mut i = 0;
    while i < path.len() {
        let b = path[i];
        if b == b'%' {
            let (Some(h), Some(l)) = (
                path.get(i + 1).and_then(|&c| hex(c)),
                path.get(i + 2).and_then(|&c| hex(c)),
            ) else {
                return Err(BadPath::Escape);
            };
            let v = h * 16 + l;
            if v == 0 {
                return Err(BadPath::Nul);
            }
            decoded.push(v);
            i += 3;
        } else {
            decoded.push(b);
            i += 1;
        }
    }
    // 2. Merge slashes, 3. remove dot segments.
    let matching = remove_dot_segments(&merge_slashes(&decoded));
    // The upstream form: the same path, re-encoded.
    let upstream = if matching.iter().any(|&b| must_escape(b)) {
        let mut out = Vec::with_capacity(matching.len() + 16);
        for &b in &matching {
            if must_escape(b) {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
            } else {
                out.push(b);
            }
        }
        Cow::Owned(out)
    } else {
        Cow::Owned(matching.clone())
    };
    Ok(NormalPath {
        matching: Cow::Owned(matching),
        upstream,
    })
}

fn merge_slashes(p: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(p.len());
    for &b in p {
        if b == b'/' && out.last() == Some(&b'/') {
            continue;
        }
        out.push(b);
    }
    out
}

/// RFC 3986 section 5.2.4 on an absolute path.
fn remove_dot_segments(p: &[u8]) -> Vec<u8> {
    let mut segs: Vec<&[u8]> = Vec::new();
    let rest = p.get(1..).unwrap_or_default();
    let parts: Vec<&[u8]> = rest.split(|&b| b == b'/').collect();
    let last = parts.len().saturating_sub(1);
    let mut trailing_slash = false;
    for (i, seg) in parts.iter().enumerate() {
        match *seg {
            b"." => trailing_slash = i == last,
            b".." => {
                segs.pop();
                trailing_slash = i == last;
            }
            s => {
                segs.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut out = Vec::with_capacity(p.len());
    for s in &segs {
        out.push(b'/');
        out.extend_from_slice(s);
    }
    if trailing_slash || out.is_empty() {
        out.push(b'/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(p: &str) -> (String, String) {
        let r = normalize(p.as_bytes()).unwrap();
        (
            String::from_utf8_lossy(&r.matching).into(),
            String::from_utf8_lossy(&r.upstream).into(),
        )
    }

    #[test]
    fn plain_path_is_borrowed() {
        let r = normalize(b"/api/v1/users").unwrap();
        assert!(matches!(r.matching, Cow::Borrowed(_)));
        assert!(matches!(r.upstream, Cow::Borrowed(_)));
    }

    #[test]
    fn dots_and_slashes() {
        assert_eq!(n("/a/../b").0, "/b");
        assert_eq!(n("/a//../b").0, "/b");
        assert_eq!(n("/a/./b/").0, "/a/b/");
        assert_eq!(n("/a/b/..").0, "/a/");
        assert_eq!(n("/..").0, "/");
        assert_eq!(n("//x///y").0, "/x/y");
        assert_eq!(n("/a/%2E%2E/b").0, "/b");
    }

    #[test]
    fn encoded_slash_cannot_walk_around_a_route() {
        for p in [
            "/public/..%2Fprivate/x",
            "/public/%2e%2e%2fprivate/x",
            "/public%2F..%2Fprivate/x",
            "/public/..%2f..%2fprivate/x",
        ] {
            assert_eq!(n(p), ("/private/x".into(), "/private/x".into()), "{p}");
        }
    }

    #[test]
    fn escapes() {
        assert_eq!(n("/a%20b"), ("/a b".into(), "/a%20b".into()));
        assert_eq!(n("/a%2Fb"), ("/a/b".into(), "/a/b".into()));
        assert_eq!(n("/%7Euser"), ("/~user".into(), "/~user".into()));
        assert_eq!(n("/caf%c3%a9").1, "/caf%C3%A9");
        assert_eq!(n("/a%3Fb%23c").1, "/a%3Fb%23c");
        assert_eq!(n("/a%253Fb"), ("/a%3Fb".into(), "/a%253Fb".into()));
        assert_eq!(normalize(b"/a%zz"), Err(BadPath::Escape));
        assert_eq!(normalize(b"/a%2"), Err(BadPath::Escape));
        assert_eq!(normalize(b"/a%00"), Err(BadPath::Nul));
        assert_eq!(normalize(b"/a\0"), Err(BadPath::Nul));
    }

    #[test]
    fn every_upstream_path_is_a_valid_uri() {
        for b in 1u8..=255 {
            let p = [
                b'/',
                b'%',
                b"0123456789ABCDEF"[usize::from(b >> 4)],
                b"0123456789ABCDEF"[usize::from(b & 15)],
            ];
            let r = normalize(&p).unwrap();
            let s = std::str::from_utf8(&r.upstream).unwrap();
            assert!(
                http::uri::PathAndQuery::try_from(s).is_ok(),
                "byte {b:#x}: {s}"
            );
            assert!(
                http::uri::PathAndQuery::try_from(s).unwrap().path() == s,
                "byte {b:#x}: {s}"
            );
        }
    }

    #[test]
    fn raw_non_ascii_is_escaped_upstream() {
        let r = normalize("/café".as_bytes()).unwrap();
        assert_eq!(&*r.upstream, b"/caf%C3%A9");
        assert_eq!(&*r.matching, "/café".as_bytes());
    }
}
