//! A path-tracking view of a parsed YAML tree.
//!
//! Every config error must name its field (`authorization.local.policy.poll_interval`), and
//! unknown keys inside the sections wasmgate owns must be rejected. serde's derive reports
//! neither well, so the tree is parsed to a `yaml_serde::Value` and read by hand through
//! [`Node`] and [`Section`], which carry the dotted path of what they hold.
//!
//! Conventions shared by every reader: a key with no value (`key:` / `~`) counts as absent;
//! string values have `${NAME}` expanded; a string also serves where a boolean or integer is
//! expected (`"true"`, `"4"`), because that is what `${NAME}` and `FLIPT_*` variables produce.

use yaml_serde::{Mapping, Value};

use super::byte_size::parse_byte_size;
use super::duration::{GoDuration, parse_signed};
use super::env::{Env, expand};

/// A field and what is wrong with it; the origin (file name) is added by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FieldError {
    pub(super) field: String,
    pub(super) message: String,
}

impl FieldError {
    pub(super) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

pub(super) type Result<T> = std::result::Result<T, FieldError>;

/// One value of the tree together with the path that names it in errors.
pub(super) struct Node<'a> {
    path: String,
    value: &'a Value,
    env: Env<'a>,
}

impl<'a> Node<'a> {
    /// The document itself, whose path is empty.
    pub(super) fn root(value: &'a Value, env: Env<'a>) -> Self {
        Self {
            path: String::new(),
            value,
            env,
        }
    }

    pub(super) fn error(&self, message: impl Into<String>) -> FieldError {
        FieldError::new(self.path.clone(), message)
    }

    /// A mapping whose keys must all be among `fields`: a misspelt key would otherwise fall
    /// back to a default without a word.
    pub(super) fn section(&self, fields: &[&str]) -> Result<Section<'a>> {
        let section = self.any_section()?;
        for key in section.map.keys() {
            if !key.as_str().is_some_and(|k| fields.contains(&k)) {
                return Err(FieldError::new(
                    section.path_of(&key_name(key)),
                    format!("unknown field (expected one of: {})", fields.join(", ")),
                ));
            }
        }
        Ok(section)
    }

    /// A mapping that may hold keys wasmgate does not read (the top level of a Flipt config).
    pub(super) fn any_section(&self) -> Result<Section<'a>> {
        match self.value {
            Value::Mapping(map) => Ok(Section {
                path: self.path.clone(),
                map,
                env: self.env,
            }),
            _ => Err(self.error("expected a mapping")),
        }
    }

    pub(super) fn string(&self) -> Result<String> {
        match self.value {
            Value::String(text) => expand(text, &self.path, self.env),
            // An all-digit bucket or prefix (`2024`) is a YAML integer but meant as text.
            Value::Number(n) if n.is_i64() || n.is_u64() => Ok(n.to_string()),
            _ => Err(self.error("expected a string")),
        }
    }

    pub(super) fn bool(&self) -> Result<bool> {
        match self.value {
            Value::Bool(b) => Ok(*b),
            Value::String(_) => {
                let text = self.string()?;
                parse_go_bool(&text)
                    .ok_or_else(|| self.error(format!("expected a boolean, got {text:?}")))
            }
            _ => Err(self.error("expected a boolean")),
        }
    }

    pub(super) fn usize(&self) -> Result<usize> {
        let expected = || self.error("expected a non-negative integer");
        match self.value {
            Value::Number(n) => n
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(expected),
            Value::String(_) => self.string()?.trim().parse().map_err(|_| expected()),
            _ => Err(expected()),
        }
    }

    /// A Go duration, sign kept: whether zero or negative is acceptable is the caller's call.
    pub(super) fn duration(&self) -> Result<GoDuration> {
        match self.value {
            Value::String(_) => {
                parse_signed(&self.string()?).map_err(|e| self.error(e.to_string()))
            }
            // `30` is ambiguous (Go would reject it, viper would read nanoseconds): refuse it.
            _ => Err(self.error("expected a duration string like 30s")),
        }
    }

    pub(super) fn byte_size(&self) -> Result<u64> {
        match self.value {
            Value::Number(n) => n.as_u64().ok_or_else(|| {
                self.error(format!(
                    "invalid byte size {n}: expected a non-negative whole number of bytes"
                ))
            }),
            Value::String(_) => parse_byte_size(&self.string()?).map_err(|e| self.error(e)),
            _ => Err(self.error("expected a byte size like 256MiB")),
        }
    }

    /// The items of a list, each named `path[index]`.
    pub(super) fn items(&self) -> Result<Vec<Node<'a>>> {
        match self.value {
            Value::Sequence(items) => Ok(items
                .iter()
                .enumerate()
                .map(|(i, value)| Node {
                    path: format!("{}[{i}]", self.path),
                    value,
                    env: self.env,
                })
                .collect()),
            _ => Err(self.error("expected a list")),
        }
    }
}

/// A mapping of the tree, to look fields up by name.
pub(super) struct Section<'a> {
    path: String,
    map: &'a Mapping,
    env: Env<'a>,
}

impl<'a> Section<'a> {
    /// The field, or `None` when it is absent or has no value.
    pub(super) fn get(&self, key: &str) -> Option<Node<'a>> {
        let value = self.map.get(key).filter(|v| !v.is_null())?;
        Some(Node {
            path: self.path_of(key),
            value,
            env: self.env,
        })
    }

    /// The path of a field, present or not, for errors such as "must be configured".
    pub(super) fn path_of(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// Reads an optional field with `read`.
    pub(super) fn read<T>(
        &self,
        key: &str,
        read: impl FnOnce(&Node<'a>) -> Result<T>,
    ) -> Result<Option<T>> {
        self.get(key).as_ref().map(read).transpose()
    }
}

/// How a mapping key appears in a path; non-string keys (`1:`, `true:`) are never valid fields.
fn key_name(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "~".to_owned(),
        _ => "<complex key>".to_owned(),
    }
}

/// Go's `strconv.ParseBool`, which is what Flipt applies to `FLIPT_AUTHORIZATION_REQUIRED`.
fn parse_go_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}
