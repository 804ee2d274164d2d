//! Local files: a policy file (`.rego`, `.wasm`, bundle) or a directory of `.rego` files,
//! and an optional JSON data file.
//!
//! Change detection is by content hash, not modification time: Flipt's one-second mtime
//! check misses an edit made within the same second as the last load, and editors that
//! preserve mtimes defeat it entirely.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::artifact::{PolicyContent, RegoSource};

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{path}: not a regular file")]
    NotAFile { path: PathBuf },
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {size} bytes is over the limit of {limit} bytes (wasmgate.max_bundle_size)")]
    TooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },
    #[error("{path}: no .rego files in this directory")]
    EmptyDir { path: PathBuf },
    #[error("{path}: {name} is not UTF-8 text")]
    NotUtf8 { path: PathBuf, name: String },
    #[error("{path}: not valid JSON: {detail}")]
    Json { path: PathBuf, detail: String },
    #[error("{path}: the data document must be a JSON object, found {found}")]
    NotObject { path: PathBuf, found: &'static str },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SourceError + '_ {
    move |source| SourceError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Read the policy at `path`: one file, or every `.rego` file below a directory (sorted by
/// relative path, so the content hash does not depend on directory order).
pub fn read_policy(path: &Path, max_bytes: u64) -> Result<PolicyContent, SourceError> {
    let meta = std::fs::metadata(path).map_err(io(path))?;
    if !meta.is_dir() {
        let bytes = read_limited(path, max_bytes)?;
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        return Ok(PolicyContent::File { name, bytes });
    }
    let mut files = Vec::new();
    collect_rego(path, path, &mut files)?;
    if files.is_empty() {
        return Err(SourceError::EmptyDir {
            path: path.to_path_buf(),
        });
    }
    files.sort();
    let mut total = 0u64;
    let mut sources = Vec::with_capacity(files.len());
    for (rel, full) in files {
        let bytes = read_limited(&full, max_bytes.saturating_sub(total))?;
        total += bytes.len() as u64;
        let text = String::from_utf8(bytes).map_err(|_| SourceError::NotUtf8 {
            path: path.to_path_buf(),
            name: rel.clone(),
        })?;
        sources.push(RegoSource { path: rel, text });
    }
    Ok(PolicyContent::RegoDir(sources))
}

fn collect_rego(
    root: &Path,
    dir: &Path,
    out: &mut Vec<(String, PathBuf)>,
) -> Result<(), SourceError> {
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let path = entry.path();
        // Hidden entries are skipped: Kubernetes mounts a ConfigMap as symlinks into a
        // `..data` directory, and reading both would load every rule twice.
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let is_rego = path.extension().is_some_and(|e| e == "rego");
        // Follow symlinks (ConfigMaps, deploy tools) to what they point at. A dangling link
        // matters only if it claims to be Rego.
        let kind = match std::fs::metadata(&path) {
            Ok(kind) => kind,
            Err(e) if is_rego => return Err(io(&path)(e)),
            Err(_) => continue,
        };
        if kind.is_dir() {
            collect_rego(root, &path, out)?;
        } else if is_rego {
            // Anything named .rego is read; a FIFO or device is then refused by name.
            let rel = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .to_string_lossy()
                .replace('\\', "/");
            out.push((rel, path));
        }
    }
    Ok(())
}

/// Read a regular file of at most `max_bytes`. FIFOs and devices are refused (a read from
/// one could block forever or never end), and the read itself is bounded in case the file
/// grows between the size check and the read.
pub fn read_limited(path: &Path, max_bytes: u64) -> Result<Vec<u8>, SourceError> {
    let meta = std::fs::metadata(path).map_err(io(path))?;
    if !meta.is_file() {
        return Err(SourceError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    let too_large = |size| SourceError::TooLarge {
        path: path.to_path_buf(),
        size,
        limit: max_bytes,
    };
    if meta.len() > max_bytes {
        return Err(too_large(meta.len()));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    std::fs::File::open(path)
        .and_then(|f| f.take(max_bytes + 1).read_to_end(&mut bytes))
        .map_err(io(path))?;
    if bytes.len() as u64 > max_bytes {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Read a JSON data file; its top-level keys become `data.<key>`, as in Flipt.
pub fn read_data(path: &Path, max_bytes: u64) -> Result<(Value, String), SourceError> {
    let bytes = read_limited(path, max_bytes)?;
    let hash = hex::encode(Sha256::digest(&bytes));
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| SourceError::Json {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    let found = match &value {
        Value::Object(_) => return Ok((value, hash)),
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
    };
    Err(SourceError::NotObject {
        path: path.to_path_buf(),
        found,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_of_rego_is_read_recursively_in_sorted_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("b.rego"), "package b").unwrap();
        std::fs::write(dir.path().join("sub/a.rego"), "package a").unwrap();
        std::fs::write(dir.path().join("notes.md"), "ignored").unwrap();
        let PolicyContent::RegoDir(sources) = read_policy(dir.path(), 1 << 20).unwrap() else {
            panic!("expected a directory of rego");
        };
        let paths: Vec<_> = sources.iter().map(|s| s.path.as_str()).collect();
        assert_eq!(paths, ["b.rego", "sub/a.rego"]);
    }

    #[test]
    fn empty_directory_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_policy(dir.path(), 1 << 20).unwrap_err();
        assert!(matches!(err, SourceError::EmptyDir { .. }), "{err}");
    }

    #[test]
    fn oversized_policy_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.wasm");
        std::fs::write(&file, vec![0u8; 2048]).unwrap();
        let err = read_policy(&file, 1024).unwrap_err();
        assert!(
            err.to_string()
                .contains("2048 bytes is over the limit of 1024"),
            "{err}"
        );
    }

    #[test]
    fn missing_file_error_names_the_path() {
        let err = read_policy(Path::new("/nonexistent/policy.rego"), 1024).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/policy.rego"),
            "{err}"
        );
    }

    #[test]
    fn data_must_be_a_json_object() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("data.json");
        std::fs::write(&file, "[1,2]").unwrap();
        let err = read_data(&file, 1024).unwrap_err();
        assert!(
            err.to_string()
                .contains("must be a JSON object, found an array"),
            "{err}"
        );
        std::fs::write(&file, "{not json").unwrap();
        let err = read_data(&file, 1024).unwrap_err();
        assert!(
            err.to_string().contains("data.json: not valid JSON"),
            "{err}"
        );
    }

    #[test]
    fn data_hash_changes_with_content_not_with_time() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("data.json");
        std::fs::write(&file, r#"{"a":1}"#).unwrap();
        let (_, first) = read_data(&file, 1024).unwrap();
        std::fs::write(&file, r#"{"a":1}"#).unwrap();
        assert_eq!(
            read_data(&file, 1024).unwrap().1,
            first,
            "same bytes, same hash"
        );
        std::fs::write(&file, r#"{"a":2}"#).unwrap();
        assert_ne!(
            read_data(&file, 1024).unwrap().1,
            first,
            "edited within the same second"
        );
    }

    #[test]
    fn symlinked_rego_is_followed_and_hidden_entries_are_skipped() {
        // The layout Kubernetes gives a mounted ConfigMap.
        let dir = tempfile::tempdir().unwrap();
        let stamp = dir.path().join("..2026_12_03");
        std::fs::create_dir(&stamp).unwrap();
        std::fs::write(stamp.join("policy.rego"), "package p").unwrap();
        std::os::unix::fs::symlink("..2026_12_03", dir.path().join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/policy.rego", dir.path().join("policy.rego")).unwrap();
        let PolicyContent::RegoDir(sources) = read_policy(dir.path(), 1 << 20).unwrap() else {
            panic!("expected a directory of rego");
        };
        let paths: Vec<_> = sources.iter().map(|s| s.path.as_str()).collect();
        assert_eq!(paths, ["policy.rego"], "read once, through the symlink");
    }

    #[test]
    fn fifos_and_devices_are_not_read() {
        let err = read_limited(Path::new("/dev/zero"), 1024).unwrap_err();
        assert!(
            err.to_string().contains("/dev/zero: not a regular file"),
            "{err}"
        );
    }

    #[test]
    fn only_rego_entries_can_fail_a_directory_load() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p.rego"), "package p").unwrap();
        std::os::unix::fs::symlink("/nonexistent", dir.path().join("README")).unwrap();
        assert!(
            read_policy(dir.path(), 1 << 20).is_ok(),
            "a dangling README is ignored"
        );
        std::os::unix::fs::symlink("/nonexistent", dir.path().join("gone.rego")).unwrap();
        let err = read_policy(dir.path(), 1 << 20).unwrap_err();
        assert!(err.to_string().contains("gone.rego"), "{err}");
    }
}
