//! Just enough Rego to find a module's package, so a bundle cannot ship policy outside the
//! roots it claims. Compiling Rego is someone else's job; this reads one line.

/// The package path of a Rego module as segments (`package a.b["c-d"]` → `a`, `b`, `c-d`).
///
/// Why a hand-written reader: the package declaration is the first statement of every module
/// (only comments and blank lines may precede it), and its grammar is a plain reference, so
/// a full parser would be a heavy dependency for one line. On failure, says what is wrong.
pub(super) fn package_path(text: &str) -> Result<Vec<String>, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let statement = text
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty() && !line.starts_with('#'))
        .ok_or_else(|| "it has no `package` declaration".to_owned())?;
    let reference = statement
        .strip_prefix("package")
        .filter(|rest| rest.starts_with(char::is_whitespace))
        .ok_or_else(|| "its first statement is not a `package` declaration".to_owned())?;
    parse_reference(reference.trim_start())
        .ok_or_else(|| format!("cannot read the package path in `{statement}`"))
}

/// Parses `ident ( "." ident | "[" string "]" )*`, allowing a trailing comment.
fn parse_reference(text: &str) -> Option<Vec<String>> {
    let mut chars = text.chars().peekable();
    let mut segments = vec![identifier(&mut chars)?];
    loop {
        match chars.next() {
            Some('.') => segments.push(identifier(&mut chars)?),
            Some('[') => {
                segments.push(string(&mut chars)?);
                if chars.next() != Some(']') {
                    return None;
                }
            }
            None | Some('#') => return Some(segments),
            Some(c) if c.is_whitespace() => {
                let rest: String = chars.collect();
                let rest = rest.trim_start();
                return (rest.is_empty() || rest.starts_with('#')).then_some(segments);
            }
            Some(_) => return None,
        }
    }
}

type Chars<'a> = std::iter::Peekable<std::str::Chars<'a>>;

fn identifier(chars: &mut Chars<'_>) -> Option<String> {
    let mut ident = String::new();
    while let Some(&c) = chars.peek() {
        let allowed = c == '_' || c.is_alphabetic() || (!ident.is_empty() && c.is_numeric());
        if !allowed {
            break;
        }
        ident.push(c);
        chars.next();
    }
    (!ident.is_empty()).then_some(ident)
}

/// A double-quoted string with backslash escapes of `"` and `\`, or a raw backtick string.
fn string(chars: &mut Chars<'_>) -> Option<String> {
    let quote = chars.next().filter(|c| *c == '"' || *c == '`')?;
    let mut value = String::new();
    loop {
        match chars.next()? {
            c if c == quote => return Some(value),
            '\\' if quote == '"' => value.push(chars.next()?),
            c => value.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_package_becomes_segments() {
        assert_eq!(
            package_path("package a.b.c\n\nallow := true\n").unwrap(),
            ["a", "b", "c"]
        );
    }

    #[test]
    fn comments_and_blank_lines_may_precede_the_package() {
        let text = "\u{feff}# METADATA\n# title: x\n\n  package authz # trailing\n";
        assert_eq!(package_path(text).unwrap(), ["authz"]);
    }

    #[test]
    fn bracketed_segments_are_read_as_strings() {
        assert_eq!(
            package_path("package a[\"b-c\"].d").unwrap(),
            ["a", "b-c", "d"]
        );
    }

    #[test]
    fn missing_package_is_an_error() {
        assert!(package_path("# only a comment\n").is_err());
        assert!(package_path("import rego.v1\npackage a\n").is_err());
        assert!(package_path("packages a\n").is_err());
    }

    #[test]
    fn malformed_package_path_is_an_error() {
        for text in [
            "package a..b",
            "package a.",
            "package 1a",
            "package a b",
            "package a[\"b\"",
        ] {
            assert!(package_path(text).is_err(), "{text}");
        }
    }
}
