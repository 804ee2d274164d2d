//! OPA bundles: a gzip'd tarball of a manifest, data files, Rego sources and a compiled
//! policy module, read as the untrusted input it is.
//!
//! Reading happens in two passes. `archive` inflates the tarball under hard limits and vets
//! every entry's name and kind, yielding plain files; this module then interprets them
//! (manifest, data, Rego, wasm) against the manifest's roots. The split means the manifest
//! may sit anywhere in the tarball, and that no content is interpreted before the whole
//! archive is known to be within limits and free of hostile entries.

mod archive;
mod data;
mod rego;

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use tracing::debug;

use crate::artifact::RegoSource;

pub use archive::{is_gzip, write_bundle};
pub use data::merge_data;

use data::Roots;

/// The manifest's entry name, after normalisation.
const MANIFEST: &str = ".manifest";
/// The policy module's entry name when the manifest names none, as `opa build -t wasm` writes.
const DEFAULT_WASM: &str = "policy.wasm";
/// Every WebAssembly module starts with these four bytes.
const WASM_MAGIC: &[u8] = b"\0asm";

/// How much a bundle may make us inflate and hold in memory.
///
/// Why: bundles come from the network and from other teams' pipelines; a few kilobytes of
/// gzip can inflate to gigabytes, so the reader needs ceilings it stops at, not checks it
/// makes after the fact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BundleLimits {
    /// Total uncompressed bytes across all entries, skipped ones included (they are inflated
    /// all the same).
    pub max_bytes: u64,
    /// Number of tar entries, directories included.
    pub max_entries: usize,
}

impl Default for BundleLimits {
    /// 64 MiB and 10 000 entries: well above what `opa build` produces for real policy sets,
    /// well below what would hurt a small host.
    fn default() -> Self {
        BundleLimits {
            max_bytes: 64 * 1024 * 1024,
            max_entries: 10_000,
        }
    }
}

/// A bundle's contents, checked and ready to hand to the evaluator.
#[derive(Debug, Clone, PartialEq)]
pub struct Bundle {
    pub manifest: Manifest,
    /// The bundle's data document, always an object: each `data.json`/`data.yaml` mounted at
    /// its directory path (`/a/b/data.json` → `data.a.b`).
    pub data: Value,
    /// The compiled policy module, if the bundle has one. `None` is not an error here: a
    /// Rego-only bundle is valid, and only the caller knows whether it needed wasm.
    pub wasm: Option<Vec<u8>>,
    /// Rego sources, sorted by path, so a bundle always loads the same way.
    pub rego: Vec<RegoSource>,
}

/// The bundle's `/.manifest`: which revision this is and which parts of `data` it owns.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// Opaque revision string, reported back in decisions and status; `""` if unset.
    pub revision: String,
    /// Slash paths under `data` this bundle owns, without leading or trailing `/`.
    /// Missing from the manifest means `[""]` (everything); an explicit `[]` owns nothing, so
    /// such a bundle may carry neither data nor Rego.
    pub roots: Vec<String>,
    /// Entrypoint-to-module mapping for the compiled policy, kept as written.
    pub wasm: Vec<WasmResolver>,
    /// Free-form metadata (always an object when present).
    pub metadata: Option<Value>,
    /// Rego language version the sources were written for (0 or 1), if stated.
    pub rego_version: Option<i64>,
}

impl Default for Manifest {
    /// What a bundle without a manifest means: no revision, owns all of `data`, no resolvers.
    fn default() -> Self {
        Manifest {
            revision: String::new(),
            roots: vec![String::new()],
            wasm: Vec::new(),
            metadata: None,
            rego_version: None,
        }
    }
}

/// One `wasm` entry of the manifest: the entrypoint (`example/allow`) a module answers.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct WasmResolver {
    pub entrypoint: String,
    /// The module's entry path in the tarball, as written (usually `/policy.wasm`).
    pub module: String,
}

/// Why a bundle was refused. Every variant names the entry, field or data path at fault,
/// because the person reading the log has the tarball, not our code.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BundleError {
    #[error("bundle is not a valid gzip'd tarball: {reason}; rebuild it with `opa build`")]
    NotGzipTarball { reason: String },
    #[error("bundle entry {entry:?} has an invalid name: {reason}")]
    InvalidEntryName { entry: String, reason: &'static str },
    #[error("bundle entry {entry:?} escapes the bundle root through a `..` component")]
    PathTraversal { entry: String },
    #[error(
        "bundle entry {entry:?} is an absolute path; entries must be relative to the bundle root"
    )]
    AbsolutePath { entry: String },
    #[error("bundle entry {entry:?} appears more than once (after normalising its name)")]
    DuplicateEntry { entry: String },
    #[error(
        "bundle entry {entry:?} is a {kind}; bundles may only hold regular files and directories"
    )]
    UnsupportedEntryType { entry: String, kind: String },
    #[error("bundle is larger than the limit of {limit} uncompressed bytes at entry {entry:?}")]
    TooLarge { entry: String, limit: u64 },
    #[error("bundle has more than the limit of {limit} entries at entry {entry:?}")]
    TooManyEntries { entry: String, limit: usize },
    #[error("bundle entry \".manifest\" is not a valid manifest: {reason}")]
    Manifest { reason: String },
    #[error("bundle entry {entry:?} is not valid data: {reason}")]
    DataParse { entry: String, reason: String },
    #[error("bundle entry {entry:?} is root data and must be a JSON object")]
    RootDataNotObject { entry: String },
    #[error(
        "bundle entry {entry:?} conflicts with other bundle data at {path:?}: two files set a value there"
    )]
    DataFileConflict { entry: String, path: String },
    #[error("data conflict at {path:?}: both documents set a non-object value there")]
    DataConflict { path: String },
    #[error("bundle entry {entry:?} writes data at {path:?}, outside the manifest roots {roots:?}")]
    DataOutsideRoots {
        entry: String,
        path: String,
        roots: Vec<String>,
    },
    #[error("bundle entry {entry:?} is Rego but not valid UTF-8")]
    RegoNotUtf8 { entry: String },
    #[error("bundle entry {entry:?}: {reason}")]
    RegoPackage { entry: String, reason: String },
    #[error(
        "bundle entry {entry:?} declares package {package:?}, outside the manifest roots {roots:?}"
    )]
    RegoOutsideRoots {
        entry: String,
        package: String,
        roots: Vec<String>,
    },
    #[error("bundles with several wasm modules are not supported; the manifest names {modules:?}")]
    SeveralWasmModules { modules: Vec<String> },
    #[error("the manifest's wasm resolvers name module {module:?}, which is not in the bundle")]
    MissingWasmModule { module: String },
    #[error("bundle entry {entry:?} is not a WebAssembly module (no \\0asm magic)")]
    NotWasm { entry: String },
}

/// Reads and checks a bundle tarball.
///
/// Why one call: a bundle is accepted or refused as a whole — a policy must never run
/// against half its data — so every rule (limits, entry names, roots, data conflicts, module
/// resolution) is applied before anything is returned.
pub fn read_bundle(bytes: &[u8], limits: &BundleLimits) -> Result<Bundle, BundleError> {
    let mut files = archive::unpack(bytes, limits)?;
    let manifest = match files.remove(MANIFEST) {
        Some(raw) => parse_manifest(&raw)?,
        None => Manifest::default(),
    };
    let roots = Roots::new(&manifest.roots);
    let wasm = take_wasm(&manifest, &mut files)?;

    let mut data = Value::Object(Map::new());
    let mut rego = Vec::new();
    for (entry, content) in files {
        let (dir, file) = entry.rsplit_once('/').unwrap_or(("", &entry));
        let mount: Vec<&str> = dir.split('/').filter(|s| !s.is_empty()).collect();
        match file {
            "data.json" | "data.yaml" | "data.yml" => {
                let value = parse_data(&entry, &content)?;
                add_data(&mut data, &entry, &mount, value, &roots, &manifest.roots)?;
            }
            _ if file.ends_with(".rego") => {
                rego.push(read_rego(entry, content, &roots, &manifest.roots)?);
            }
            ".signatures.json" if mount.is_empty() => {
                debug!(entry = %entry, "bundle signatures are not verified; ignoring them");
            }
            _ => {
                debug!(entry = %entry, "ignoring bundle entry: not data, Rego or the policy module")
            }
        }
    }
    Ok(Bundle {
        manifest,
        data,
        wasm,
        rego,
    })
}

/// Parses `/.manifest` field by field, so an error can name the field at fault. Unknown
/// fields are ignored, as OPA does, so newer manifests still load.
fn parse_manifest(raw: &[u8]) -> Result<Manifest, BundleError> {
    let invalid = |reason: String| BundleError::Manifest { reason };
    let value: Value = serde_json::from_slice(raw).map_err(|err| invalid(err.to_string()))?;
    let Value::Object(mut fields) = value else {
        return Err(invalid("it is not a JSON object".to_owned()));
    };
    let defaults = Manifest::default();
    let roots: Vec<String> = manifest_field(&mut fields, "roots")?.unwrap_or(defaults.roots);
    Ok(Manifest {
        revision: manifest_field(&mut fields, "revision")?.unwrap_or_default(),
        roots: roots
            .iter()
            .map(|root| root.trim_matches('/').to_owned())
            .collect(),
        wasm: manifest_field(&mut fields, "wasm")?.unwrap_or_default(),
        metadata: manifest_field::<Map<String, Value>>(&mut fields, "metadata")?.map(Value::Object),
        rego_version: manifest_field(&mut fields, "rego_version")?,
    })
}

/// One manifest field; absent and `null` both mean "not set".
fn manifest_field<T: DeserializeOwned>(
    fields: &mut Map<String, Value>,
    name: &str,
) -> Result<Option<T>, BundleError> {
    match fields.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => {
            serde_json::from_value(value)
                .map(Some)
                .map_err(|err| BundleError::Manifest {
                    reason: format!("field `{name}`: {err}"),
                })
        }
    }
}

/// Removes the policy module from `files`: the one the manifest's resolvers name, or
/// `policy.wasm` when there are none.
fn take_wasm(
    manifest: &Manifest,
    files: &mut BTreeMap<String, Vec<u8>>,
) -> Result<Option<Vec<u8>>, BundleError> {
    // Resolvers write module paths the way entries are named (`/policy.wasm`); compare them
    // normalised. A reference that does not normalise cannot name an entry we kept.
    let modules: BTreeSet<String> = manifest
        .wasm
        .iter()
        .map(|resolver| {
            archive::normalise_name(resolver.module.as_bytes())
                .unwrap_or_else(|_| resolver.module.clone())
        })
        .collect();
    let mut modules = modules.into_iter();
    let (entry, module) = match (modules.next(), modules.next()) {
        (None, _) => match files.remove(DEFAULT_WASM) {
            Some(module) => (DEFAULT_WASM.to_owned(), module),
            None => return Ok(None),
        },
        (Some(name), None) => match files.remove(&name) {
            Some(module) => (name, module),
            None => return Err(BundleError::MissingWasmModule { module: name }),
        },
        (Some(first), Some(second)) => {
            return Err(BundleError::SeveralWasmModules {
                modules: [first, second].into_iter().chain(modules).collect(),
            });
        }
    };
    if !module.starts_with(WASM_MAGIC) {
        return Err(BundleError::NotWasm { entry });
    }
    Ok(Some(module))
}

/// Deepest data nesting accepted; the parsers refuse more anyway (serde's limit is 128),
/// but only after a scan that is quadratic in depth for YAML.
const MAX_DATA_DEPTH: usize = 128;

fn parse_data(entry: &str, content: &[u8]) -> Result<Value, BundleError> {
    if crate::artifact::nesting_exceeds(content, MAX_DATA_DEPTH) {
        return Err(BundleError::DataParse {
            entry: entry.to_owned(),
            reason: format!("nested deeper than {MAX_DATA_DEPTH} levels"),
        });
    }
    let parsed = if entry.ends_with(".json") {
        serde_json::from_slice(content).map_err(|err| err.to_string())
    } else {
        yaml_serde::from_slice(content).map_err(|err| err.to_string())
    };
    parsed.map_err(|reason| BundleError::DataParse {
        entry: entry.to_owned(),
        reason,
    })
}

/// Mounts one data file's value into the bundle data, after checking it against the roots.
fn add_data(
    data: &mut Value,
    entry: &str,
    mount: &[&str],
    value: Value,
    roots: &Roots,
    manifest_roots: &[String],
) -> Result<(), BundleError> {
    if mount.is_empty() && !value.is_object() {
        return Err(BundleError::RootDataNotObject {
            entry: entry.to_owned(),
        });
    }
    if let Some(path) = data::outside_roots(roots, mount, &value) {
        return Err(BundleError::DataOutsideRoots {
            entry: entry.to_owned(),
            path,
            roots: manifest_roots.to_vec(),
        });
    }
    data::mount(data, mount, value).map_err(|path| BundleError::DataFileConflict {
        entry: entry.to_owned(),
        path,
    })
}

fn read_rego(
    entry: String,
    content: Vec<u8>,
    roots: &Roots,
    manifest_roots: &[String],
) -> Result<RegoSource, BundleError> {
    let Ok(text) = String::from_utf8(content) else {
        return Err(BundleError::RegoNotUtf8 { entry });
    };
    let package = match rego::package_path(&text) {
        Ok(package) => package,
        Err(reason) => return Err(BundleError::RegoPackage { entry, reason }),
    };
    let segments: Vec<&str> = package.iter().map(String::as_str).collect();
    if !roots.cover(&segments) {
        return Err(BundleError::RegoOutsideRoots {
            entry,
            package: package.join("."),
            roots: manifest_roots.to_vec(),
        });
    }
    Ok(RegoSource { path: entry, text })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::Compression;
    use flate2::write::GzEncoder;
    use serde_json::json;
    use tar::EntryType;

    use super::*;

    const WASM: &[u8] = b"\0asm\x01\0\0\0";

    fn bundle(entries: &[(&str, &[u8])]) -> Vec<u8> {
        write_bundle(entries).expect("test bundle is well-formed")
    }

    fn read(entries: &[(&str, &[u8])]) -> Result<Bundle, BundleError> {
        read_bundle(&bundle(entries), &BundleLimits::default())
    }

    fn read_err(entries: &[(&str, &[u8])]) -> BundleError {
        read(entries).expect_err("bundle should be refused")
    }

    #[test]
    fn hostile_data_nesting_is_refused_before_parsing() {
        let deep = format!("a: {}{}", "[".repeat(100_000), "]".repeat(100_000));
        // The parser's own error would say "recursion limit"; this one comes from the scan.
        let err = read_err(&[("/data.yaml", deep.as_bytes())]);
        assert!(
            err.to_string().contains("nested deeper than 128 levels"),
            "{err}"
        );
        let ok = format!("{{\"a\": {}1{}}}", "[".repeat(100), "]".repeat(100));
        assert!(read(&[("/data.json", ok.as_bytes())]).is_ok());
    }

    /// A tarball the writer refuses to make: names are copied verbatim into the header.
    fn raw_bundle(entries: &[(&[u8], EntryType, &[u8])]) -> Vec<u8> {
        let mut tar = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
        for (name, kind, content) in entries {
            let mut header = tar::Header::new_gnu();
            header.as_old_mut().name[..name.len()].copy_from_slice(name);
            header.set_entry_type(*kind);
            header.set_size(content.len() as u64);
            header.set_mode(0o644);
            if kind.is_symlink() || kind.is_hard_link() {
                let target = b"/etc/passwd";
                header.as_old_mut().linkname[..target.len()].copy_from_slice(target);
            }
            header.set_cksum();
            tar.append(&header, *content).unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap()
    }

    fn read_raw(entries: &[(&[u8], EntryType, &[u8])]) -> BundleError {
        read_bundle(&raw_bundle(entries), &BundleLimits::default())
            .expect_err("bundle should be refused")
    }

    fn assert_mentions(err: &BundleError, needle: &str) {
        let shown = err.to_string();
        assert!(
            shown.contains(needle),
            "{shown:?} should mention {needle:?}"
        );
    }

    #[test]
    fn opa_build_wasm_bundle_reads_back_fully() {
        let manifest = br#"{"revision":"rev-42","roots":[""],
            "wasm":[{"entrypoint":"example/allow","module":"/policy.wasm"}],
            "metadata":{"team":"authz"},"rego_version":1,"unknown":true}"#;
        let rego = b"package example\n\nallow if input.admin\n";
        let bundle = read(&[
            ("/.manifest", manifest),
            ("/data.json", br#"{"roles":{"admin":["alice"]}}"#),
            ("/policy.wasm", WASM),
            ("/example/policy.rego", rego),
        ])
        .unwrap();
        assert_eq!(
            bundle.manifest,
            Manifest {
                revision: "rev-42".to_owned(),
                roots: vec![String::new()],
                wasm: vec![WasmResolver {
                    entrypoint: "example/allow".to_owned(),
                    module: "/policy.wasm".to_owned(),
                }],
                metadata: Some(json!({"team": "authz"})),
                rego_version: Some(1),
            }
        );
        assert_eq!(bundle.data, json!({"roles": {"admin": ["alice"]}}));
        assert_eq!(bundle.wasm.as_deref(), Some(WASM));
        assert_eq!(
            bundle.rego,
            [RegoSource {
                path: "example/policy.rego".to_owned(),
                text: String::from_utf8(rego.to_vec()).unwrap(),
            }]
        );
    }

    #[test]
    fn nested_data_files_mount_at_their_directory() {
        let bundle = read(&[
            ("/a/b/data.json", br#"{"x":1}"#),
            ("/c/data.yaml", b"y: [1, 2]\n"),
            ("/d/data.yml", b"- z\n"),
        ])
        .unwrap();
        assert_eq!(
            bundle.data,
            json!({"a": {"b": {"x": 1}}, "c": {"y": [1, 2]}, "d": ["z"]})
        );
    }

    #[test]
    fn root_data_merges_with_nested_data() {
        let bundle = read(&[
            ("/data.json", br#"{"a":{"top":true},"n":1}"#),
            ("/a/b/data.json", br#"{"x":1}"#),
        ])
        .unwrap();
        assert_eq!(
            bundle.data,
            json!({"a": {"top": true, "b": {"x": 1}}, "n": 1})
        );
    }

    #[test]
    fn bundle_without_data_has_an_empty_object() {
        assert_eq!(read(&[]).unwrap().data, json!({}));
    }

    #[test]
    fn data_inside_roots_is_accepted() {
        let bundle = read(&[
            ("/.manifest", br#"{"roots":["a", "/b/c/"]}"#),
            ("/a/x/data.json", br#"{"k":1}"#),
            ("/data.json", br#"{"b":{"c":{"d":2}}}"#),
            ("/a/p.rego", b"package a.p\n"),
        ])
        .unwrap();
        assert_eq!(bundle.manifest.roots, ["a", "b/c"]);
        assert_eq!(
            bundle.data,
            json!({"a": {"x": {"k": 1}}, "b": {"c": {"d": 2}}})
        );
    }

    #[test]
    fn data_outside_roots_is_rejected_naming_path_and_roots() {
        let err = read_err(&[
            ("/.manifest", br#"{"roots":["a"]}"#),
            ("/x/y/data.json", br#"{"k":1}"#),
        ]);
        assert_eq!(
            err,
            BundleError::DataOutsideRoots {
                entry: "x/y/data.json".to_owned(),
                path: "x/y".to_owned(),
                roots: vec!["a".to_owned()],
            }
        );
        assert_mentions(&err, "x/y/data.json");
        assert_mentions(&err, r#"["a"]"#);
    }

    #[test]
    fn root_data_key_outside_roots_is_rejected() {
        let err = read_err(&[
            ("/.manifest", br#"{"roots":["a/b"]}"#),
            ("/data.json", br#"{"a":{"b":1,"c":2}}"#),
        ]);
        assert!(
            matches!(&err, BundleError::DataOutsideRoots { path, .. } if path == "a/c"),
            "{err}"
        );
    }

    #[test]
    fn empty_roots_own_nothing() {
        let err = read_err(&[("/.manifest", br#"{"roots":[]}"#), ("/a/data.json", b"1")]);
        assert!(matches!(err, BundleError::DataOutsideRoots { .. }), "{err}");
    }

    #[test]
    fn rego_package_outside_roots_is_rejected() {
        let err = read_err(&[
            ("/.manifest", br#"{"roots":["a"]}"#),
            ("/x/policy.rego", b"package x.authz\n"),
        ]);
        assert_eq!(
            err,
            BundleError::RegoOutsideRoots {
                entry: "x/policy.rego".to_owned(),
                package: "x.authz".to_owned(),
                roots: vec!["a".to_owned()],
            }
        );
        assert_mentions(&err, "x/policy.rego");
    }

    #[test]
    fn rego_without_package_is_rejected_naming_the_file() {
        let err = read_err(&[("/p.rego", b"# nothing here\nallow := true\n")]);
        assert!(matches!(err, BundleError::RegoPackage { .. }), "{err}");
        assert_mentions(&err, "p.rego");
    }

    #[test]
    fn rego_that_is_not_utf8_is_rejected() {
        let err = read_err(&[("/p.rego", b"package p\n\xff\n")]);
        assert_eq!(
            err,
            BundleError::RegoNotUtf8 {
                entry: "p.rego".to_owned()
            }
        );
        assert_mentions(&err, "p.rego");
    }

    #[test]
    fn rego_sources_are_sorted_by_path() {
        let bundle = read(&[("/b.rego", b"package b\n"), ("/a/z.rego", b"package a\n")]).unwrap();
        let paths: Vec<&str> = bundle.rego.iter().map(|r| r.path.as_str()).collect();
        assert_eq!(paths, ["a/z.rego", "b.rego"]);
    }

    #[test]
    fn missing_manifest_means_defaults() {
        let bundle = read(&[("/data.json", b"{}")]).unwrap();
        assert_eq!(bundle.manifest, Manifest::default());
        assert_eq!(bundle.manifest.roots, [""]);
    }

    #[test]
    fn malformed_manifest_is_rejected_with_the_parser_message() {
        let err = read_err(&[("/.manifest", b"{\"revision\": ")]);
        assert!(matches!(err, BundleError::Manifest { .. }), "{err}");
        assert_mentions(&err, ".manifest");
        assert_mentions(&err, "EOF");
    }

    #[test]
    fn manifest_field_of_the_wrong_type_is_named() {
        for (manifest, field) in [
            (&br#"{"roots":"a"}"#[..], "roots"),
            (br#"{"wasm":[{"entrypoint":"e"}]}"#, "wasm"),
            (br#"{"metadata":[1]}"#, "metadata"),
        ] {
            let err = read_err(&[("/.manifest", manifest)]);
            assert_mentions(&err, ".manifest");
            assert_mentions(&err, &format!("`{field}`"));
        }
    }

    #[test]
    fn manifest_that_is_not_an_object_is_rejected() {
        let err = read_err(&[("/.manifest", b"[]")]);
        assert!(matches!(err, BundleError::Manifest { .. }), "{err}");
    }

    #[test]
    fn no_resolvers_and_no_policy_wasm_means_no_module() {
        let bundle = read(&[("/x.rego", b"package x\n")]).unwrap();
        assert_eq!(bundle.wasm, None);
    }

    #[test]
    fn policy_wasm_is_used_without_resolvers() {
        let bundle = read(&[("./policy.wasm", WASM)]).unwrap();
        assert_eq!(bundle.wasm.as_deref(), Some(WASM));
    }

    #[test]
    fn resolver_selects_the_module_it_names() {
        let bundle = read(&[
            (
                "/.manifest",
                br#"{"wasm":[{"entrypoint":"a/allow","module":"/m/authz.wasm"}]}"#,
            ),
            ("/m/authz.wasm", WASM),
            ("/policy.wasm", b"ignored"),
        ])
        .unwrap();
        assert_eq!(bundle.wasm.as_deref(), Some(WASM));
    }

    #[test]
    fn resolver_naming_a_missing_module_is_rejected() {
        let err = read_err(&[(
            "/.manifest",
            br#"{"wasm":[{"entrypoint":"a/allow","module":"/missing.wasm"}]}"#,
        )]);
        assert_eq!(
            err,
            BundleError::MissingWasmModule {
                module: "missing.wasm".to_owned()
            }
        );
        assert_mentions(&err, "missing.wasm");
    }

    #[test]
    fn several_wasm_modules_are_rejected() {
        let err = read_err(&[
            (
                "/.manifest",
                br#"{"wasm":[{"entrypoint":"a","module":"/one.wasm"},
                             {"entrypoint":"b","module":"/two.wasm"},
                             {"entrypoint":"c","module":"one.wasm"}]}"#,
            ),
            ("/one.wasm", WASM),
            ("/two.wasm", WASM),
        ]);
        assert_eq!(
            err,
            BundleError::SeveralWasmModules {
                modules: vec!["one.wasm".to_owned(), "two.wasm".to_owned()]
            }
        );
        assert_mentions(&err, "several wasm modules");
    }

    #[test]
    fn policy_wasm_without_the_magic_is_rejected() {
        let err = read_err(&[("/policy.wasm", b"MZ\x90\0 not wasm")]);
        assert_eq!(
            err,
            BundleError::NotWasm {
                entry: "policy.wasm".to_owned()
            }
        );
        assert_mentions(&err, "policy.wasm");
    }

    #[test]
    fn signatures_and_other_files_are_ignored() {
        let bundle = read(&[
            ("/.signatures.json", b"{\"signatures\":[]}"),
            ("/README.md", b"# hi"),
            ("/a/.manifest", b"not json"),
        ])
        .unwrap();
        assert_eq!(bundle.data, json!({}));
        assert!(bundle.rego.is_empty());
    }

    #[test]
    fn parent_dir_entries_are_rejected() {
        for name in [&b"../x"[..], b"/a/../../x"] {
            let err = read_raw(&[(name, EntryType::Regular, b"{}")]);
            assert!(matches!(err, BundleError::PathTraversal { .. }), "{err}");
            assert_mentions(&err, std::str::from_utf8(name).unwrap());
        }
    }

    #[test]
    fn absolute_entries_are_rejected() {
        let err = read_raw(&[(b"//etc/passwd", EntryType::Regular, b"root")]);
        assert!(matches!(err, BundleError::AbsolutePath { .. }), "{err}");
        assert_mentions(&err, "//etc/passwd");
    }

    #[test]
    fn backslash_entries_are_rejected() {
        let err = read_raw(&[(b"a\\data.json", EntryType::Regular, b"{}")]);
        assert!(matches!(err, BundleError::InvalidEntryName { .. }), "{err}");
        assert_mentions(&err, "backslash");
    }

    #[test]
    fn hostile_directory_names_are_rejected_too() {
        let err = read_raw(&[(b"../d/", EntryType::Directory, b"")]);
        assert!(matches!(err, BundleError::PathTraversal { .. }), "{err}");
    }

    #[test]
    fn directories_are_skipped() {
        let bytes = raw_bundle(&[
            (b"./", EntryType::Directory, b""),
            (b"./a/", EntryType::Directory, b""),
            (b"./a/data.json", EntryType::Regular, b"1"),
        ]);
        let bundle = read_bundle(&bytes, &BundleLimits::default()).unwrap();
        assert_eq!(bundle.data, json!({"a": 1}));
    }

    #[test]
    fn duplicate_entries_after_normalisation_are_rejected() {
        let err = read_raw(&[
            (b"/data.json", EntryType::Regular, b"{}"),
            (b"./data.json", EntryType::Regular, b"{}"),
        ]);
        assert_eq!(
            err,
            BundleError::DuplicateEntry {
                entry: "data.json".to_owned()
            }
        );
        assert_mentions(&err, "data.json");
    }

    #[test]
    fn symlink_entries_are_rejected_not_followed() {
        let err = read_raw(&[(b"/data.json", EntryType::Symlink, b"")]);
        assert_eq!(
            err,
            BundleError::UnsupportedEntryType {
                entry: "/data.json".to_owned(),
                kind: "symbolic link".to_owned(),
            }
        );
        assert_mentions(&err, "/data.json");
    }

    #[test]
    fn hard_links_devices_and_fifos_are_rejected() {
        for kind in [
            EntryType::Link,
            EntryType::Char,
            EntryType::Block,
            EntryType::Fifo,
        ] {
            let err = read_raw(&[(b"/x", kind, b"")]);
            assert!(
                matches!(err, BundleError::UnsupportedEntryType { .. }),
                "{kind:?}: {err}"
            );
        }
    }

    #[test]
    fn root_data_that_is_not_an_object_is_rejected() {
        let err = read_err(&[("/data.json", b"[1]")]);
        assert_eq!(
            err,
            BundleError::RootDataNotObject {
                entry: "data.json".to_owned()
            }
        );
        assert_mentions(&err, "data.json");
    }

    #[test]
    fn data_files_writing_the_same_path_conflict() {
        let err = read_err(&[
            ("/a/data.json", br#"{"b":1}"#),
            ("/a/b/data.json", br#"{"c":2}"#),
        ]);
        assert!(
            matches!(&err, BundleError::DataFileConflict { path, .. } if path == "a/b"),
            "{err}"
        );
        assert_mentions(&err, "data.json");
        assert_mentions(&err, "\"a/b\"");
    }

    #[test]
    fn malformed_data_is_rejected_naming_the_entry() {
        for (entry, content) in [("/a/data.json", &b"{"[..]), ("/b/data.yaml", b"x: [")] {
            let err = read_err(&[(entry, content)]);
            assert!(matches!(err, BundleError::DataParse { .. }), "{err}");
            assert_mentions(&err, &entry[1..]);
        }
    }

    #[test]
    fn yaml_alias_bomb_is_rejected_not_expanded() {
        // Nine levels of nine-fold aliases would expand to 9^9 strings.
        let mut yaml = String::from("l0: &l0 [x, x, x, x, x, x, x, x, x]\n");
        for level in 1..9 {
            let prev = format!("*l{}", level - 1);
            let items = [prev.as_str(); 9].join(", ");
            yaml.push_str(&format!("l{level}: &l{level} [{items}]\n"));
        }
        let err = read_err(&[("/bomb/data.yaml", yaml.as_bytes())]);
        assert!(matches!(err, BundleError::DataParse { .. }), "{err}");
        assert_mentions(&err, "bomb/data.yaml");
    }

    #[test]
    fn oversized_entry_is_rejected_before_inflating_it() {
        let zeros = vec![0u8; 1024 * 1024];
        let bytes = bundle(&[("/data.json", b"{}"), ("/big.bin", &zeros)]);
        let limits = BundleLimits {
            max_bytes: 64 * 1024,
            ..BundleLimits::default()
        };
        let err = read_bundle(&bytes, &limits).unwrap_err();
        assert_eq!(
            err,
            BundleError::TooLarge {
                entry: "/big.bin".to_owned(),
                limit: 64 * 1024
            }
        );
        assert_mentions(&err, "big.bin");
        assert_mentions(&err, "65536");
    }

    #[test]
    fn running_total_counts_every_entry() {
        let chunk = vec![b' '; 40 * 1024];
        let bytes = bundle(&[("/a.md", &chunk), ("/b.md", &chunk)]);
        let limits = BundleLimits {
            max_bytes: 64 * 1024,
            ..BundleLimits::default()
        };
        let err = read_bundle(&bytes, &limits).unwrap_err();
        assert!(
            matches!(&err, BundleError::TooLarge { entry, .. } if entry == "/b.md"),
            "{err}"
        );
    }

    #[test]
    fn long_name_record_cannot_inflate_past_the_ceiling() {
        // A GNU long-name record is buffered whole by the tar crate before we see an entry;
        // 8 MiB of it must trip the inflation ceiling, not be read into memory.
        let mut header = tar::Header::new_gnu();
        header.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
        header.set_entry_type(EntryType::GNULongName);
        header.set_size(8 * 1024 * 1024);
        header.set_cksum();
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        gz.write_all(header.as_bytes()).unwrap();
        gz.write_all(&vec![b'a'; 8 * 1024 * 1024]).unwrap();
        let bytes = gz.finish().unwrap();
        let limits = BundleLimits {
            max_bytes: 64 * 1024,
            max_entries: 4,
        };
        let err = read_bundle(&bytes, &limits).unwrap_err();
        assert!(matches!(err, BundleError::TooLarge { .. }), "{err}");
    }

    #[test]
    fn too_many_entries_are_rejected() {
        let bytes = bundle(&[("/a.md", b""), ("/b.md", b""), ("/c.md", b"")]);
        let limits = BundleLimits {
            max_entries: 2,
            ..BundleLimits::default()
        };
        let err = read_bundle(&bytes, &limits).unwrap_err();
        assert_eq!(
            err,
            BundleError::TooManyEntries {
                entry: "/c.md".to_owned(),
                limit: 2
            }
        );
        assert_mentions(&err, "/c.md");
    }

    #[test]
    fn garbage_bytes_are_not_a_gzip_tarball() {
        let err = read_bundle(b"definitely not a bundle", &BundleLimits::default()).unwrap_err();
        assert!(matches!(err, BundleError::NotGzipTarball { .. }), "{err}");
        assert_mentions(&err, "not a valid gzip'd tarball");
    }

    #[test]
    fn gzip_of_garbage_is_not_a_tarball() {
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        gz.write_all(&[7u8; 2048]).unwrap();
        let err = read_bundle(&gz.finish().unwrap(), &BundleLimits::default()).unwrap_err();
        assert!(matches!(err, BundleError::NotGzipTarball { .. }), "{err}");
    }

    #[test]
    fn truncated_gzip_is_not_a_gzip_tarball() {
        let text = b"package p\n".repeat(1000);
        let bytes = bundle(&[("/data.json", b"{}"), ("/p.rego", &text)]);
        for cut in [bytes.len() / 2, bytes.len() - 4] {
            let err = read_bundle(&bytes[..cut], &BundleLimits::default()).unwrap_err();
            assert!(
                matches!(err, BundleError::NotGzipTarball { .. }),
                "cut at {cut}: {err}"
            );
            assert_mentions(&err, "not a valid gzip'd tarball");
        }
    }

    #[test]
    fn is_gzip_checks_the_magic() {
        assert!(is_gzip(&bundle(&[])));
        assert!(!is_gzip(b"\0asm"));
        assert!(!is_gzip(b"\x1f"));
    }
}
