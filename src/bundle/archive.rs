//! The tarball layer: inflating a bundle under hard limits, vetting every entry name and
//! kind, and writing a bundle back out.
//!
//! Nothing here knows what a data file or a manifest is; it hands `read_bundle` a map from
//! normalised entry path to bytes, so the rules about content live in one place and the rules
//! about hostile archives live in another.

use std::cell::Cell;
use std::collections::{BTreeMap, HashSet};
use std::io::{self, Read, Write};

use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use tar::EntryType;

use super::{BundleError, BundleLimits};

/// Bytes of tar framing (header block, padding, one pax or GNU long-name record) allowed per
/// entry on top of `max_bytes`. Framing is inflated too, and the tar crate buffers long-name
/// records whole, so without its own ceiling a bomb could hide in a single huge "long name".
const FRAMING_PER_ENTRY: u64 = 4 * 1024;
/// Slack for the end-of-archive blocks and record padding some tar writers add.
const FRAMING_BASE: u64 = 1024 * 1024;
/// Upper bound on the buffer reserved from an entry's *declared* size: the header is
/// untrusted, so memory is only committed as bytes actually arrive.
const PREALLOC_MAX: u64 = 1024 * 1024;
/// Data files are mounted at their directory path, and every component becomes one level of
/// JSON nesting that later code walks recursively (drop, serialisation, merging); a bound on
/// path depth keeps a crafted name from turning into a stack overflow far from here.
const MAX_PATH_COMPONENTS: usize = 64;

/// Whether `bytes` start with the gzip magic number.
///
/// Why: artifacts are recognised by content, not file name (see `artifact`), and a bundle is
/// always gzip'd, so two bytes are enough to route it here before anything is parsed.
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b])
}

/// Writes a gzip'd bundle tarball the way `opa build` does: each entry a regular file named
/// `/` + its normalised path (`data.json` and `./data.json` both become `/data.json`).
///
/// Why it exists: tests and tooling need real bundles without shelling out to `opa`. The
/// output is deterministic (mtime 0, mode 0644) so it can be hashed or compared. It refuses,
/// with `InvalidInput`, any name `read_bundle` would refuse, and duplicates, so whatever it
/// writes reads back.
pub fn write_bundle(entries: &[(&str, &[u8])]) -> io::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
    // The tar crate strips a leading '/' unless told otherwise; OPA writes it, so do we.
    tar.preserve_absolute(true);
    let mut seen = HashSet::new();
    for (name, content) in entries {
        let path = normalise_name(name.as_bytes())
            .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err))?;
        if path.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                BundleError::InvalidEntryName {
                    entry: (*name).to_owned(),
                    reason: "it names the bundle root, not a file",
                },
            ));
        }
        if !seen.insert(path.clone()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                BundleError::DuplicateEntry { entry: path },
            ));
        }
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(EntryType::Regular);
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        tar.append_data(&mut header, format!("/{path}"), *content)?;
    }
    let mut gz = tar.into_inner()?;
    gz.flush()?;
    gz.finish()
}

/// Inflates and untars `bytes`, returning every regular file by normalised path (no leading
/// `/`, `.` and empty components dropped).
///
/// Limits are enforced on declared sizes before any content is read, and again on the bytes
/// that actually arrive, so neither a lying header nor a gzip bomb is ever fully inflated.
pub(super) fn unpack(
    bytes: &[u8],
    limits: &BundleLimits,
) -> Result<BTreeMap<String, Vec<u8>>, BundleError> {
    if !is_gzip(bytes) {
        return Err(BundleError::NotGzipTarball {
            reason: "it does not start with the gzip magic bytes 1f 8b".to_owned(),
        });
    }
    let tripped = Cell::new(false);
    let ceiling = limits
        .max_bytes
        .saturating_add(FRAMING_BASE)
        .saturating_add((limits.max_entries as u64).saturating_mul(FRAMING_PER_ENTRY));
    let mut archive = tar::Archive::new(Ceiling {
        inner: MultiGzDecoder::new(bytes),
        left: ceiling,
        tripped: &tripped,
    });
    // Describes where a stream error struck: inflating past the ceiling is a size problem,
    // anything else means the bytes are not a well-formed gzip'd tarball.
    let stream_error = |err: io::Error, last: Option<&str>| {
        let place = match last {
            Some(entry) => format!("after entry {entry:?}"),
            None => "before the first entry".to_owned(),
        };
        if tripped.get() {
            BundleError::TooLarge {
                entry: format!("(tar framing {place})"),
                limit: limits.max_bytes,
            }
        } else {
            BundleError::NotGzipTarball {
                reason: format!("{err} ({place})"),
            }
        }
    };

    let mut files = BTreeMap::new();
    let mut total: u64 = 0;
    let mut count: usize = 0;
    let mut last: Option<String> = None;
    let entries = archive.entries().map_err(|err| stream_error(err, None))?;
    for entry in entries {
        let mut entry = entry.map_err(|err| stream_error(err, last.as_deref()))?;
        let kind = entry.header().entry_type();
        let raw_name = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw_name).into_owned();
        count += 1;
        if count > limits.max_entries {
            return Err(BundleError::TooManyEntries {
                entry: shown,
                limit: limits.max_entries,
            });
        }
        // Every entry's content is inflated, even one we skip, so all of it counts.
        let declared = entry.size();
        let allowed = limits.max_bytes.saturating_sub(total);
        if declared > allowed {
            return Err(BundleError::TooLarge {
                entry: shown,
                limit: limits.max_bytes,
            });
        }
        last = Some(shown.clone());
        match kind {
            // A pax global header describes the archive, not a file; the tar crate hands it
            // over as an entry of its own.
            EntryType::XGlobalHeader => continue,
            EntryType::Directory => {
                // Directories carry nothing, but a hostile name is still a hostile bundle.
                normalise_name(&raw_name)?;
                continue;
            }
            EntryType::Regular | EntryType::Continuous => {}
            other => {
                return Err(BundleError::UnsupportedEntryType {
                    entry: shown,
                    kind: describe(other),
                });
            }
        }
        let path = normalise_name(&raw_name)?;
        if path.is_empty() {
            return Err(BundleError::InvalidEntryName {
                entry: shown,
                reason: "it names the bundle root, not a file",
            });
        }
        let mut content = Vec::with_capacity(declared.min(PREALLOC_MAX) as usize);
        (&mut entry)
            .take(allowed.saturating_add(1))
            .read_to_end(&mut content)
            .map_err(|err| stream_error(err, Some(&shown)))?;
        if content.len() as u64 > allowed {
            return Err(BundleError::TooLarge {
                entry: shown,
                limit: limits.max_bytes,
            });
        }
        total += content.len() as u64;
        if files.insert(path.clone(), content).is_some() {
            return Err(BundleError::DuplicateEntry { entry: path });
        }
    }
    // The tar reader stops at the end-of-archive block; reading on to the end of the gzip
    // stream verifies its CRC trailer, so a truncated download is an error, not a bundle
    // that silently lost its tail.
    io::copy(&mut archive.into_inner(), &mut io::sink())
        .map_err(|err| stream_error(err, last.as_deref()))?;
    Ok(files)
}

/// Normalises an entry name (or a manifest's module reference) to a relative slash path,
/// refusing anything that could point outside the bundle or mean different things on
/// different systems. Returns `""` for the bundle root itself.
pub(super) fn normalise_name(raw: &[u8]) -> Result<String, BundleError> {
    let shown = || String::from_utf8_lossy(raw).into_owned();
    let invalid = |reason| BundleError::InvalidEntryName {
        entry: shown(),
        reason,
    };
    let name = std::str::from_utf8(raw).map_err(|_| invalid("it is not UTF-8"))?;
    if name.is_empty() {
        return Err(invalid("it is empty"));
    }
    if name.contains('\0') {
        return Err(invalid("it contains a NUL byte"));
    }
    if name.contains('\\') {
        return Err(invalid("it contains a backslash"));
    }
    // `opa build` writes `/data.json`, `tar -C dir .` writes `./data.json`: both mean the
    // bundle root. Only one such prefix is stripped, so `//etc/passwd` stays absolute.
    let relative = name
        .strip_prefix('/')
        .or_else(|| name.strip_prefix("./"))
        .unwrap_or(name);
    if relative.starts_with('/') {
        return Err(BundleError::AbsolutePath { entry: shown() });
    }
    let mut parts = Vec::new();
    for part in relative.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(BundleError::PathTraversal { entry: shown() }),
            part => parts.push(part),
        }
    }
    if parts.first().is_some_and(|first| has_drive_prefix(first)) {
        return Err(invalid("it starts with a Windows drive prefix"));
    }
    if parts.len() > MAX_PATH_COMPONENTS {
        return Err(invalid("it has more than 64 path components"));
    }
    Ok(parts.join("/"))
}

fn has_drive_prefix(component: &str) -> bool {
    let bytes = component.as_bytes();
    bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':'
}

fn describe(kind: EntryType) -> String {
    match kind {
        EntryType::Symlink => "symbolic link".to_owned(),
        EntryType::Link => "hard link".to_owned(),
        EntryType::Char => "character device".to_owned(),
        EntryType::Block => "block device".to_owned(),
        EntryType::Fifo => "fifo".to_owned(),
        EntryType::GNUSparse => "sparse file".to_owned(),
        other => format!("tar entry type {:?}", other.as_byte() as char),
    }
}

/// A reader that refuses to yield more than `left` bytes in total and records that it had to
/// refuse, so the caller can tell "too big" from "corrupt" whatever the tar crate makes of the
/// error on its way out.
struct Ceiling<'a, R> {
    inner: R,
    left: u64,
    tripped: &'a Cell<bool>,
}

impl<R: Read> Read for Ceiling<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            // At the ceiling exactly, a clean end of stream is still fine.
            let mut probe = [0u8; 1];
            if self.inner.read(&mut probe)? == 0 {
                return Ok(0);
            }
            self.tripped.set(true);
            return Err(io::Error::other("bundle inflates past its size limit"));
        }
        let room = usize::try_from(self.left)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let read = self.inner.read(&mut buf[..room])?;
        self.left -= read as u64;
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normalised(name: &str) -> Result<String, BundleError> {
        normalise_name(name.as_bytes())
    }

    #[test]
    fn leading_slash_and_dot_slash_mean_the_bundle_root() {
        assert_eq!(normalised("/data.json").unwrap(), "data.json");
        assert_eq!(normalised("./a/b/data.json").unwrap(), "a/b/data.json");
        assert_eq!(normalised("a//./b/").unwrap(), "a/b");
        assert_eq!(normalised("./").unwrap(), "");
    }

    #[test]
    fn parent_components_are_traversal() {
        for name in ["../x", "/a/../../x", "a/..", "./../x"] {
            assert!(
                matches!(normalised(name), Err(BundleError::PathTraversal { .. })),
                "{name}"
            );
        }
    }

    #[test]
    fn names_absolute_after_one_root_prefix_are_refused() {
        assert!(matches!(
            normalised("//etc/passwd"),
            Err(BundleError::AbsolutePath { .. })
        ));
        assert!(matches!(
            normalised(".//etc/passwd"),
            Err(BundleError::AbsolutePath { .. })
        ));
    }

    #[test]
    fn backslash_nul_drive_prefix_and_empty_names_are_refused() {
        for name in ["a\\b", "a\0b", "C:/x", "/c:x", ""] {
            assert!(
                matches!(normalised(name), Err(BundleError::InvalidEntryName { .. })),
                "{name:?}"
            );
        }
        assert!(normalise_name(b"\xff.json").is_err());
    }

    #[test]
    fn very_deep_names_are_refused() {
        let deep = "a/".repeat(MAX_PATH_COMPONENTS) + "data.json";
        assert!(matches!(
            normalised(&deep),
            Err(BundleError::InvalidEntryName { .. })
        ));
    }

    #[test]
    fn write_bundle_names_entries_with_a_leading_slash() {
        let bytes = write_bundle(&[("data.json", b"{}"), ("./a/policy.rego", b"")]).unwrap();
        let mut archive = tar::Archive::new(MultiGzDecoder::new(&bytes[..]));
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|entry| String::from_utf8(entry.unwrap().path_bytes().into_owned()).unwrap())
            .collect();
        assert_eq!(names, ["/data.json", "/a/policy.rego"]);
    }

    #[test]
    fn write_bundle_refuses_what_read_bundle_would_refuse() {
        for entries in [
            &[("../x", &b""[..])][..],
            &[("/data.json", &b""[..]), ("./data.json", b"")][..],
            &[("/", &b""[..])][..],
        ] {
            let err = write_bundle(entries).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{entries:?}");
        }
    }

    #[test]
    fn ceiling_stops_an_endless_stream() {
        let tripped = Cell::new(false);
        let mut reader = Ceiling {
            inner: io::repeat(0),
            left: 10,
            tripped: &tripped,
        };
        let err = io::copy(&mut reader, &mut io::sink()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Other);
        assert!(tripped.get());
    }

    #[test]
    fn ceiling_allows_a_stream_ending_exactly_at_it() {
        let tripped = Cell::new(false);
        let mut reader = Ceiling {
            inner: &[1u8, 2, 3][..],
            left: 3,
            tripped: &tripped,
        };
        assert_eq!(io::copy(&mut reader, &mut io::sink()).unwrap(), 3);
        assert!(!tripped.get());
    }
}
