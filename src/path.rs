//! Request path normalisation (CONTRACT "Requests"): percent-encoded unreserved characters are
//! decoded, duplicate slashes merged, dot segments removed. Routes match the fully decoded form,
//! except `%2F`, which stays those three characters; upstream gets the normalised form with every
//! other escape kept as sent.

use std::borrow::Cow;

/// Why a path is refused with 400.
#[derive(Debug, PartialEq, Eq)]
pub enum BadPath {
    Escape,
    Nul,
}

/// A normalised path: the bytes routes match against, and the path sent upstream.
#[derive(Debug, PartialEq, Eq)]
pub struct NormalPath<'a> {
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

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Normalises `path` (no query). Allocates only when the path needs a change.
pub fn normalize(path: &[u8]) -> Result<NormalPath<'_>, BadPath> {
    if path.contains(&0) {
        return Err(BadPath::Nul);
    }
    let has_escape = path.contains(&b'%');
    let needs_work = has_escape
        || path.windows(2).any(|w| w == b"//" || w == b"/.")
        || path.first() != Some(&b'/');
    if !needs_work {
        return Ok(NormalPath {
            matching: Cow::Borrowed(path),
            upstream: Cow::Borrowed(path),
        });
    }
    // 1. Decode unreserved escapes; validate every escape.
    let mut step = Vec::with_capacity(path.len() + 1);
    if path.first() != Some(&b'/') {
        step.push(b'/');
    }
    let mut i = 0;
    while i < path.len() {
        let b = path[i];
        if b == b'%' {
            let (h, l) = match (
                path.get(i + 1).and_then(|&c| hex(c)),
                path.get(i + 2).and_then(|&c| hex(c)),
            ) {
                (Some(h), Some(l)) => (h, l),
                _ => return Err(BadPath::Escape),
            };
            let v = h * 16 + l;
            if v == 0 {
                return Err(BadPath::Nul);
            }
            if is_unreserved(v) {
                step.push(v);
            } else {
                step.extend_from_slice(&path[i..i + 3]);
            }
            i += 3;
        } else {
            step.push(b);
            i += 1;
        }
    }
    // 2. Merge slashes, 3. remove dot segments.
    let upstream = remove_dot_segments(&merge_slashes(&step));
    // Matching form: decode the remaining escapes except %2F.
    let matching = if upstream.contains(&b'%') {
        let mut m = Vec::with_capacity(upstream.len());
        let mut i = 0;
        while i < upstream.len() {
            if upstream[i] == b'%' && i + 2 < upstream.len() {
                let v = hex(upstream[i + 1]).unwrap_or(0) * 16 + hex(upstream[i + 2]).unwrap_or(0);
                if v == b'/' {
                    m.extend_from_slice(b"%2F");
                } else {
                    m.push(v);
                }
                i += 3;
            } else {
                m.push(upstream[i]);
                i += 1;
            }
        }
        Cow::Owned(m)
    } else {
        Cow::Owned(upstream.clone())
    };
    Ok(NormalPath {
        matching,
        upstream: Cow::Owned(upstream),
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
    let parts: Vec<&[u8]> = p[1..].split(|&b| b == b'/').collect();
    let last = parts.len() - 1;
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
    fn escapes() {
        assert_eq!(n("/a%20b"), ("/a b".into(), "/a%20b".into()));
        assert_eq!(n("/a%2Fb"), ("/a%2Fb".into(), "/a%2Fb".into()));
        assert_eq!(n("/%7Euser"), ("/~user".into(), "/~user".into()));
        assert_eq!(normalize(b"/a%zz"), Err(BadPath::Escape));
        assert_eq!(normalize(b"/a%2"), Err(BadPath::Escape));
        assert_eq!(normalize(b"/a%00"), Err(BadPath::Nul));
    }
}
