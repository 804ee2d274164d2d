//! The data document: mounting data files at their directory path, merging documents, and
//! checking that a bundle only writes under the roots its manifest claims.
//!
//! Paths are kept as segment lists, never as joined strings, so a JSON key that itself
//! contains `/` cannot pass for a deeper path when compared against a root.

use serde_json::map::Entry;
use serde_json::{Map, Value};

use super::BundleError;

/// Deep-merges `overlay` into `base`: objects merge key by key; any other pair of values
/// meeting at the same path is a conflict, reported with the slash path where they met
/// (`roles/admin`).
///
/// Why: bundle data and separately configured data are both visible to the policy as one
/// `data` document, and, as in OPA, neither may silently overwrite the other — two
/// non-object values at one path are an error even when equal, so the result never depends
/// on which document was loaded first.
pub fn merge_data(base: &mut Value, overlay: Value) -> Result<(), BundleError> {
    merge_into(base, overlay, &mut Vec::new()).map_err(|path| BundleError::DataConflict { path })
}

/// The recursive step of `merge_data`, returning the conflicting path on failure. Depth is
/// bounded by the overlay's nesting, which serde's JSON and YAML parsers cap at 128.
fn merge_into(base: &mut Value, overlay: Value, path: &mut Vec<String>) -> Result<(), String> {
    let (Value::Object(base), Value::Object(overlay)) = (base, overlay) else {
        return Err(path.join("/"));
    };
    for (key, value) in overlay {
        match base.entry(key) {
            Entry::Vacant(slot) => {
                slot.insert(value);
            }
            Entry::Occupied(slot) => {
                path.push(slot.key().clone());
                merge_into(slot.into_mut(), value, path)?;
                path.pop();
            }
        }
    }
    Ok(())
}

/// Places `value` at `mount` (a directory path) inside `data`, merging with whatever is
/// already there by `merge_data`'s rules. Returns the conflicting slash path on failure.
///
/// The walk down `mount` is a loop, not recursion, so path depth costs no stack here.
pub(super) fn mount(data: &mut Value, mount: &[&str], value: Value) -> Result<(), String> {
    let mut node = data;
    let mut path: Vec<String> = Vec::new();
    for (depth, segment) in mount.iter().enumerate() {
        let Value::Object(map) = node else {
            return Err(path.join("/"));
        };
        path.push((*segment).to_owned());
        node = match map.entry(*segment) {
            Entry::Vacant(slot) => {
                slot.insert(nest(&mount[depth + 1..], value));
                return Ok(());
            }
            Entry::Occupied(slot) => slot.into_mut(),
        };
    }
    merge_into(node, value, &mut path)
}

/// Wraps `value` in one single-key object per segment, innermost last.
fn nest(segments: &[&str], value: Value) -> Value {
    segments.iter().rev().fold(value, |inner, segment| {
        Value::Object(Map::from_iter([((*segment).to_owned(), inner)]))
    })
}

/// A manifest's roots as segment lists; `""` is the empty list, which covers everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Roots(Vec<Vec<String>>);

impl Roots {
    pub(super) fn new(roots: &[String]) -> Self {
        Roots(
            roots
                .iter()
                .map(|root| {
                    root.split('/')
                        .filter(|segment| !segment.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .collect(),
        )
    }

    /// Whether `path` is at or below some root.
    pub(super) fn cover(&self, path: &[&str]) -> bool {
        self.0
            .iter()
            .any(|root| root.len() <= path.len() && root.iter().zip(path).all(|(r, p)| r == p))
    }

    /// Whether some root lies strictly below `path`, so the bundle may own part of it.
    fn lie_below(&self, path: &[&str]) -> bool {
        self.0
            .iter()
            .any(|root| root.len() > path.len() && root.iter().zip(path).all(|(r, p)| r == p))
    }
}

/// Checks a data file's value, mounted at `mount`, against the roots; returns the first
/// slash path that lies outside every root.
///
/// The rule, as OPA applies it: a path is allowed if it is under a root. If it is not, but
/// a root lies below it and the value is an object, each key is checked the same way one
/// level down — so root `data.json` may hold `{"a": {...}}` when the roots are `["a/b"]` as
/// long as everything under `a` is under `a/b`. Anything else is outside the roots.
pub(super) fn outside_roots(roots: &Roots, mount: &[&str], value: &Value) -> Option<String> {
    let mut path: Vec<&str> = mount.to_vec();
    first_outside(roots, &mut path, value)
}

fn first_outside<'v>(roots: &Roots, path: &mut Vec<&'v str>, value: &'v Value) -> Option<String> {
    if roots.cover(path) {
        return None;
    }
    match value {
        Value::Object(map) if roots.lie_below(path) => map.iter().find_map(|(key, child)| {
            path.push(key);
            let found = first_outside(roots, path, child);
            path.pop();
            found
        }),
        _ => Some(path.join("/")),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn roots(list: &[&str]) -> Roots {
        Roots::new(&list.iter().map(|r| (*r).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn merge_data_joins_disjoint_keys() {
        let mut base = json!({"a": 1});
        merge_data(&mut base, json!({"b": 2})).unwrap();
        assert_eq!(base, json!({"a": 1, "b": 2}));
    }

    #[test]
    fn merge_data_merges_nested_objects() {
        let mut base = json!({"roles": {"admin": ["alice"]}});
        merge_data(&mut base, json!({"roles": {"viewer": ["bob"]}})).unwrap();
        assert_eq!(
            base,
            json!({"roles": {"admin": ["alice"], "viewer": ["bob"]}})
        );
    }

    #[test]
    fn merge_data_conflict_names_the_slash_path() {
        let mut base = json!({"roles": {"admin": ["alice"]}});
        let err = merge_data(&mut base, json!({"roles": {"admin": ["bob"]}})).unwrap_err();
        assert_eq!(
            err,
            BundleError::DataConflict {
                path: "roles/admin".to_owned()
            }
        );
        assert!(err.to_string().contains("roles/admin"), "{err}");
    }

    #[test]
    fn merge_data_equal_leaves_still_conflict() {
        let mut base = json!({"limit": 1});
        assert!(merge_data(&mut base, json!({"limit": 1})).is_err());
    }

    #[test]
    fn merge_data_object_against_leaf_conflicts() {
        let mut base = json!({"roles": "none"});
        let err = merge_data(&mut base, json!({"roles": {"admin": []}})).unwrap_err();
        assert_eq!(
            err,
            BundleError::DataConflict {
                path: "roles".to_owned()
            }
        );
    }

    #[test]
    fn mount_creates_missing_parents() {
        let mut data = json!({});
        mount(&mut data, &["a", "b"], json!({"c": 1})).unwrap();
        mount(&mut data, &["a", "d"], json!(2)).unwrap();
        assert_eq!(data, json!({"a": {"b": {"c": 1}, "d": 2}}));
    }

    #[test]
    fn mount_through_a_leaf_conflicts_at_the_leaf() {
        let mut data = json!({"a": 5});
        assert_eq!(
            mount(&mut data, &["a", "b"], json!({})),
            Err("a".to_owned())
        );
    }

    #[test]
    fn roots_cover_their_subtree_only() {
        let roots = roots(&["a/b"]);
        assert!(roots.cover(&["a", "b"]));
        assert!(roots.cover(&["a", "b", "c"]));
        assert!(!roots.cover(&["a"]));
        assert!(!roots.cover(&["a", "bc"]));
    }

    #[test]
    fn empty_root_covers_everything() {
        assert!(roots(&[""]).cover(&[]));
        assert!(roots(&["/"]).cover(&["x", "y"]));
    }

    #[test]
    fn object_above_a_root_is_checked_key_by_key() {
        let roots = roots(&["a/b"]);
        assert_eq!(
            outside_roots(&roots, &[], &json!({"a": {"b": {"x": 1}}})),
            None
        );
        assert_eq!(
            outside_roots(&roots, &[], &json!({"a": {"b": 1, "c": 2}})),
            Some("a/c".to_owned())
        );
        assert_eq!(
            outside_roots(&roots, &[], &json!({"a": 1})),
            Some("a".to_owned())
        );
    }

    #[test]
    fn key_containing_a_slash_is_one_segment() {
        let roots = roots(&["a/b"]);
        assert_eq!(
            outside_roots(&roots, &[], &json!({"a/b": 1})),
            Some("a/b".to_owned())
        );
    }
}
