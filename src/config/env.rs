//! The two ways the environment reaches the configuration: `${NAME}` inside string values, and
//! Flipt's `FLIPT_AUTHORIZATION_*` variables that replace file values.
//!
//! Both take the environment as a lookup function so tests can supply one without touching the
//! process environment (tests run in parallel and `set_var` would race).

use yaml_serde::{Mapping, Value};

use super::yaml::FieldError;

/// Looks up an environment variable; `None` when it is unset.
pub(super) type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Replaces every `${NAME}` (NAME = `[A-Za-z_][A-Za-z0-9_]*`) in `text` with the variable's value.
///
/// Anything else, including `$NAME`, `${}` or an unclosed `${`, is left as written: secrets and
/// OPA configs legitimately contain `$`. The result is not scanned again, so a value that
/// itself contains `${…}` stays literal. An unset variable is an error rather than an empty
/// string, because an empty policy path or bucket name would fail later with a far less
/// helpful message.
pub(super) fn expand(text: &str, field: &str, env: Env<'_>) -> Result<String, FieldError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after
            .find('}')
            .map(|end| (&after[..end], &after[end + 1..]))
        {
            Some((name, tail)) if is_variable_name(name) => {
                let value = env(name).ok_or_else(|| {
                    FieldError::new(field, format!("environment variable {name} is not set"))
                })?;
                out.push_str(&value);
                rest = tail;
            }
            _ => {
                out.push_str("${");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Flipt's environment names for the `authorization` keys (viper: `FLIPT_` + path with `_`).
const FLIPT_OVERRIDES: &[(&str, &[&str])] = &[
    ("FLIPT_AUTHORIZATION_REQUIRED", &["required"]),
    ("FLIPT_AUTHORIZATION_BACKEND", &["backend"]),
    (
        "FLIPT_AUTHORIZATION_LOCAL_POLICY_PATH",
        &["local", "policy", "path"],
    ),
    (
        "FLIPT_AUTHORIZATION_LOCAL_POLICY_POLL_INTERVAL",
        &["local", "policy", "poll_interval"],
    ),
    (
        "FLIPT_AUTHORIZATION_LOCAL_DATA_PATH",
        &["local", "data", "path"],
    ),
    (
        "FLIPT_AUTHORIZATION_LOCAL_DATA_POLL_INTERVAL",
        &["local", "data", "poll_interval"],
    ),
    (
        "FLIPT_AUTHORIZATION_BUNDLE_CONFIGURATION",
        &["bundle", "configuration"],
    ),
    ("FLIPT_AUTHORIZATION_OBJECT_TYPE", &["object", "type"]),
    (
        "FLIPT_AUTHORIZATION_OBJECT_S3_REGION",
        &["object", "s3", "region"],
    ),
    (
        "FLIPT_AUTHORIZATION_OBJECT_S3_BUCKET",
        &["object", "s3", "bucket"],
    ),
    (
        "FLIPT_AUTHORIZATION_OBJECT_S3_PREFIX",
        &["object", "s3", "prefix"],
    ),
    (
        "FLIPT_AUTHORIZATION_OBJECT_S3_ENDPOINT",
        &["object", "s3", "endpoint"],
    ),
];

/// The fields that took their value from a Flipt variable, so errors about them can say so:
/// "poll_interval is invalid" is baffling when the file does not contain the bad value.
#[derive(Debug, Default)]
pub(super) struct Overrides(Vec<(String, &'static str)>);

impl Overrides {
    /// Adds the variable's name to an error about a field it set.
    pub(super) fn annotate(&self, mut error: FieldError) -> FieldError {
        if let Some((_, variable)) = self.0.iter().find(|(field, _)| *field == error.field) {
            error.message = format!("{} (set by {variable})", error.message);
        }
        error
    }
}

/// Writes the set `FLIPT_AUTHORIZATION_*` variables into the tree, as strings, before it is
/// read, so they go through the same parsing, `${NAME}` expansion and validation as file values.
///
/// Missing sections are created, which lets a deployment configure authorization from the
/// environment alone, as Flipt allows. Like viper's default, a variable set to the empty string
/// counts as unset.
pub(super) fn apply_flipt_overrides(
    root: &mut Mapping,
    env: Env<'_>,
) -> Result<Overrides, FieldError> {
    let mut applied = Overrides::default();
    for &(variable, keys) in FLIPT_OVERRIDES {
        let Some(value) = env(variable).filter(|v| !v.is_empty()) else {
            continue;
        };
        let (last, parents) = keys.split_last().expect("every override names a key");
        let mut path = String::from("authorization");
        let mut section = mapping_entry(root, "authorization", &path)?;
        for key in parents {
            path = format!("{path}.{key}");
            section = mapping_entry(section, key, &path)?;
        }
        section.insert(Value::from(*last), Value::String(value));
        applied.0.push((format!("{path}.{last}"), variable));
    }
    Ok(applied)
}

/// The mapping under `key`, created when absent or null.
fn mapping_entry<'m>(
    parent: &'m mut Mapping,
    key: &str,
    path: &str,
) -> Result<&'m mut Mapping, FieldError> {
    let child = parent.entry(Value::from(key)).or_insert(Value::Null);
    if child.is_null() {
        *child = Value::Mapping(Mapping::new());
    }
    child
        .as_mapping_mut()
        .ok_or_else(|| FieldError::new(path, "expected a mapping"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOME_DIR" => Some("/home/u".into()),
            "EMPTY" => Some(String::new()),
            "NESTED" => Some("${HOME_DIR}".into()),
            _ => None,
        }
    }

    #[test]
    fn expands_variables_anywhere_and_leaves_other_dollars_alone() {
        let table = [
            ("${HOME_DIR}", "/home/u"),
            ("${HOME_DIR}/p.rego", "/home/u/p.rego"),
            ("a${HOME_DIR}b${HOME_DIR}c", "a/home/ub/home/uc"),
            ("x${EMPTY}y", "xy"),
            ("$HOME_DIR", "$HOME_DIR"),
            ("${}", "${}"),
            ("${1X}", "${1X}"),
            ("${HOME-DIR}", "${HOME-DIR}"),
            ("${unclosed", "${unclosed"),
            ("$${HOME_DIR}", "$/home/u"),
            ("${NESTED}", "${HOME_DIR}"),
            ("no variables", "no variables"),
        ];
        for (input, want) in table {
            assert_eq!(expand(input, "f", &env).as_deref(), Ok(want), "{input:?}");
        }
    }

    #[test]
    fn unset_variable_names_the_field_and_the_variable() {
        let err = expand("a/${MISSING}/b", "wasmgate.opa", &env).unwrap_err();
        assert_eq!(err.field, "wasmgate.opa");
        assert_eq!(err.message, "environment variable MISSING is not set");
    }
}
