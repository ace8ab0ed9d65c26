//! `${{NAME}}` and `${{NAME:=default}}` in resource files, replaced from the environment before
//! the YAML is parsed, as APISIX's standalone mode does (quoted, the value is a string; plain, it
//! takes its YAML type). A variable that is unset and has no default leaves a marker, which the
//! loader reports with the field's path; a `${{` text is never taken literally.

/// The marker an unset variable leaves, so its field can be named after parsing.
pub(crate) const UNSET_MARK: &str = "__tollgate_unset_env__";

/// The text with every `${{...}}` replaced; `Err` for a `${{` without its `}}` or a bad name.
pub(crate) fn substitute(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<std::borrow::Cow<'_, str>, String> {
    if !text.contains("${{") {
        return Ok(std::borrow::Cow::Borrowed(text));
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 3..];
        let Some(end) = after.find("}}") else {
            let line = text[..text.len() - rest.len() + start]
                .lines()
                .count()
                .max(1);
            return Err(format!("line {line}: `${{{{` without its closing `}}}}`"));
        };
        let inner = &after[..end];
        let (name, default) = match inner.split_once(":=") {
            Some((n, d)) => (n.trim(), Some(d.trim())),
            None => (inner.trim(), None),
        };
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            let line = text[..text.len() - rest.len() + start]
                .lines()
                .count()
                .max(1);
            return Err(format!(
                "line {line}: `${{{{{inner}}}}}` does not name an environment variable"
            ));
        }
        match (lookup(name), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => {
                out.push_str(UNSET_MARK);
                out.push_str(name);
                out.push_str("__");
            }
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(std::borrow::Cow::Owned(out))
}

/// The variable named by an unset marker inside `s`, if any.
pub(crate) fn unset_name(s: &str) -> Option<&str> {
    let i = s.find(UNSET_MARK)?;
    let tail = &s[i + UNSET_MARK.len()..];
    tail.find("__").map(|j| &tail[..j])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        (k == "KEY").then(|| "v4lue".to_owned())
    }

    #[test]
    fn substitutes_values_and_defaults() {
        assert_eq!(substitute("a: ${{KEY}}", env).unwrap(), "a: v4lue");
        assert_eq!(
            substitute("a: \"${{ KEY }}\"", env).unwrap(),
            "a: \"v4lue\""
        );
        assert_eq!(substitute("a: ${{NOPE:=10}}", env).unwrap(), "a: 10");
        assert_eq!(substitute("a: ${{NOPE:=}}x", env).unwrap(), "a: x");
        assert_eq!(substitute("a: ${{KEY:=d}}", env).unwrap(), "a: v4lue");
        assert_eq!(substitute("plain", env).unwrap(), "plain");
    }

    #[test]
    fn unset_leaves_a_marker_and_bad_forms_fail() {
        let s = substitute("k: ${{NOPE}}", env).unwrap();
        assert_eq!(unset_name(&s), Some("NOPE"));
        assert!(substitute("k: ${{NOPE", env).is_err());
        assert!(substitute("k: ${{a b}}", env).is_err());
        assert!(substitute("k: ${{}}", env).is_err());
    }
}
