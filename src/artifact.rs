//! Policy artifacts: what a source hands over, before anything is compiled.
//!
//! Three kinds arrive — an OPA-compiled `.wasm` module, an OPA bundle (`.tar.gz`), or Rego
//! sources — and the kind is told by content (magic bytes), not only by file name, so a
//! bundle saved as `policy.bin` still loads.

/// One Rego source file, by the path it had in its bundle or directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegoSource {
    pub path: String,
    pub text: String,
}

/// A policy artifact, classified.
#[derive(Debug, Clone)]
pub enum PolicyArtifact {
    /// A module compiled by `opa build -t wasm`.
    Wasm(Vec<u8>),
    /// An OPA bundle, already read and checked.
    Bundle(crate::bundle::Bundle),
    /// Rego sources to compile (with `opa`) or interpret (with `regorus`).
    Rego(Vec<RegoSource>),
}

/// The bytes of a policy as a source found them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyContent {
    /// One file: a `.wasm`, a bundle or a `.rego`, told apart by content.
    File { name: String, bytes: Vec<u8> },
    /// A directory of `.rego` files.
    RegoDir(Vec<RegoSource>),
}

/// Why bytes could not be turned into an artifact.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("{name}: {source}")]
    Bundle {
        name: String,
        source: crate::bundle::BundleError,
    },
    #[error(
        "{name}: not a policy: expected a Wasm module (\\0asm), an OPA bundle (gzip) or Rego source text"
    )]
    Unrecognised { name: String },
}

const WASM_MAGIC: &[u8] = b"\0asm";

/// Whether JSON (or YAML flow) text nests `[`/`{` deeper than `limit`. A byte scan, no
/// parse: parsers recurse (and YAML's slows quadratically), so hostile depth is refused
/// before one runs. Brackets inside double-quoted strings are skipped, escapes honoured.
pub fn nesting_exceeds(text: &[u8], limit: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in text {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

impl PolicyArtifact {
    /// Classify by content: Wasm magic, gzip magic, else UTF-8 Rego text.
    pub fn from_content(
        content: PolicyContent,
        limits: &crate::bundle::BundleLimits,
    ) -> Result<Self, ArtifactError> {
        let (name, bytes) = match content {
            PolicyContent::RegoDir(sources) => return Ok(Self::Rego(sources)),
            PolicyContent::File { name, bytes } => (name, bytes),
        };
        if bytes.starts_with(WASM_MAGIC) {
            return Ok(Self::Wasm(bytes));
        }
        if crate::bundle::is_gzip(&bytes) {
            return crate::bundle::read_bundle(&bytes, limits)
                .map(Self::Bundle)
                .map_err(|source| ArtifactError::Bundle { name, source });
        }
        match String::from_utf8(bytes) {
            Ok(text) if !text.contains('\0') => {
                Ok(Self::Rego(vec![RegoSource { path: name, text }]))
            }
            _ => Err(ArtifactError::Unrecognised { name }),
        }
    }

    /// A short name of the kind, for status and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Wasm(_) => "wasm",
            Self::Bundle(_) => "bundle",
            Self::Rego(_) => "rego",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::{BundleLimits, write_bundle};

    fn classify(bytes: &[u8]) -> Result<PolicyArtifact, ArtifactError> {
        let content = PolicyContent::File {
            name: "policy.bin".into(),
            bytes: bytes.to_vec(),
        };
        PolicyArtifact::from_content(content, &BundleLimits::default())
    }

    #[test]
    fn wasm_is_recognised_by_magic_whatever_the_name() {
        assert_eq!(classify(b"\0asm\x01\0\0\0").unwrap().kind(), "wasm");
    }

    #[test]
    fn bundle_is_recognised_by_gzip_magic() {
        let bundle = write_bundle(&[("/data.json", b"{}")]).unwrap();
        assert_eq!(classify(&bundle).unwrap().kind(), "bundle");
    }

    #[test]
    fn text_is_rego_named_after_its_file() {
        match classify(b"package a\nallow := true\n").unwrap() {
            PolicyArtifact::Rego(sources) => assert_eq!(sources[0].path, "policy.bin"),
            other => panic!("expected rego, got {}", other.kind()),
        }
    }

    #[test]
    fn binary_garbage_is_rejected_naming_the_file() {
        let err = classify(&[0xff, 0xfe, 0, 1]).unwrap_err();
        assert!(
            err.to_string().starts_with("policy.bin: not a policy"),
            "{err}"
        );
    }

    #[test]
    fn corrupt_bundle_error_names_the_file() {
        let err = classify(&[0x1f, 0x8b, 8, 0, 1, 2, 3]).unwrap_err();
        assert!(err.to_string().starts_with("policy.bin: "), "{err}");
    }
}
