//! Compiling Rego to Wasm by running the public `opa` CLI.
//!
//! wasmgate does not reimplement OPA's compiler: `.rego` sources are handed to
//! `opa build -t wasm`, exactly as a user would, and the bundle it writes is read back.
//! Custom builtins (such as `flipt.is_auth_method`) are unknown to `opa`'s type checker, so a
//! capabilities file is generated: `opa capabilities --current` plus one declaration per
//! registered builtin.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::artifact::RegoSource;
use crate::builtins::Builtins;

/// The environment variable consulted when the config names no `opa` path.
pub const OPA_ENV: &str = "WASMGATE_OPA";

#[derive(Debug, thiserror::Error)]
pub enum OpaError {
    #[error(
        "no `opa` binary found, and compiling .rego to Wasm needs one: set `wasmgate.opa` in the config \
         (`--opa` for `wasmgate eval`), set the {OPA_ENV} environment variable, or put `opa` on PATH"
    )]
    NotFound,
    #[error(
        "`opa` configured as {0} does not exist, is not a file, or (as a bare name) is not on PATH"
    )]
    Missing(PathBuf),
    #[error("running `{command}` failed: {error}")]
    Spawn {
        command: String,
        error: std::io::Error,
    },
    #[error("`{command}` did not finish within {timeout:?}; it was killed")]
    Timeout { command: String, timeout: Duration },
    #[error("`{command}` exited with {status}:\n{stderr}")]
    Failed {
        command: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error(
        "`opa capabilities --current` printed something that is not a capabilities document: {0}"
    )]
    Capabilities(String),
    #[error("preparing the build directory: {0}")]
    Io(#[from] std::io::Error),
    #[error("rego source path `{0}` is not a safe relative path")]
    UnsafePath(String),
}

/// Find `opa`: the configured path first, then `$WASMGATE_OPA`, then `PATH`.
pub fn locate(configured: Option<&Path>) -> Result<PathBuf, OpaError> {
    locate_with(
        configured,
        std::env::var_os(OPA_ENV).map(PathBuf::from),
        std::env::var_os("PATH"),
    )
}

fn locate_with(
    configured: Option<&Path>,
    from_env: Option<PathBuf>,
    path_var: Option<std::ffi::OsString>,
) -> Result<PathBuf, OpaError> {
    let on_path = |name: &Path| {
        path_var
            .iter()
            .flat_map(std::env::split_paths)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    };
    let explicit = configured
        .map(Path::to_path_buf)
        .or(from_env.filter(|p| !p.as_os_str().is_empty()));
    match explicit {
        // A bare name (`opa`, `opa-1.17`) is looked up on PATH, as a shell would.
        Some(name) if name.components().count() == 1 && !name.is_absolute() => {
            on_path(&name).ok_or(OpaError::Missing(name))
        }
        Some(path) if path.is_file() => Ok(path),
        Some(path) => Err(OpaError::Missing(path)),
        None => on_path(Path::new("opa")).ok_or(OpaError::NotFound),
    }
}

/// Compile `sources` to an OPA bundle (`.tar.gz` bytes) holding `/policy.wasm` with the
/// given entrypoints. Runs `opa build -t wasm -e <ep>... [--capabilities <file>] -o <out> <dir>`.
pub fn build_wasm_bundle(
    opa: &Path,
    sources: &[RegoSource],
    entrypoints: &[String],
    builtins: &Builtins,
    timeout: Duration,
) -> Result<Vec<u8>, OpaError> {
    // One deadline for the whole compile: `opa capabilities` and `opa build` together.
    let deadline = Instant::now() + timeout;
    let work = tempfile::Builder::new()
        .prefix("wasmgate-opa-build")
        .tempdir()?;
    let src_dir = work.path().join("src");
    for source in sources {
        let rel = Path::new(&source.path);
        if rel.is_absolute()
            || rel
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(OpaError::UnsafePath(source.path.clone()));
        }
        let dest = src_dir.join(rel);
        std::fs::create_dir_all(dest.parent().unwrap_or(&src_dir))?;
        std::fs::write(dest, &source.text)?;
    }

    let out = work.path().join("bundle.tar.gz");
    let mut cmd = Command::new(opa);
    cmd.args(["build", "-t", "wasm"]);
    for ep in entrypoints {
        cmd.arg("-e").arg(ep);
    }
    if !builtins.is_empty() {
        let caps = work.path().join("capabilities.json");
        std::fs::write(&caps, capabilities(opa, builtins, deadline, timeout)?)?;
        cmd.arg("--capabilities").arg(caps);
    }
    cmd.arg("-o").arg(&out).arg(&src_dir);
    run(&mut cmd, deadline, timeout)?;
    Ok(std::fs::read(out)?)
}

/// OPA's current capabilities with every registered builtin declared.
fn capabilities(
    opa: &Path,
    builtins: &Builtins,
    deadline: Instant,
    timeout: Duration,
) -> Result<Vec<u8>, OpaError> {
    let stdout = run(
        Command::new(opa).args(["capabilities", "--current"]),
        deadline,
        timeout,
    )?;
    let mut caps: serde_json::Value =
        serde_json::from_slice(&stdout).map_err(|e| OpaError::Capabilities(e.to_string()))?;
    let list = caps
        .get_mut("builtins")
        .and_then(serde_json::Value::as_array_mut)
        .ok_or_else(|| OpaError::Capabilities("no `builtins` array".into()))?;
    list.retain(|b| {
        b.get("name")
            .and_then(|n| n.as_str())
            .is_none_or(|n| builtins.get(n).is_none())
    });
    list.extend(builtins.iter().map(|b| b.capability()));
    Ok(serde_json::to_vec_pretty(&caps).expect("JSON values serialise"))
}

/// Run `opa` with a deadline: a hung `opa build` must not wedge every later reload.
/// stdout and stderr are drained on threads so a chatty child cannot block on a full pipe.
fn run(cmd: &mut Command, deadline: Instant, timeout: Duration) -> Result<Vec<u8>, OpaError> {
    let command = format!("{cmd:?}").replace('"', "");
    tracing::debug!(%command, "running opa");
    // Its own process group, so a timeout kills a wrapper script's children too.
    let mut child = cmd
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| OpaError::Spawn {
            command: command.clone(),
            error,
        })?;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut buf);
            }
            buf
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            // SAFETY: kill(2) with a negative pid signals the process group we created.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.kill();
            let _ = child.wait();
            return Err(OpaError::Timeout { command, timeout });
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    if !status.success() {
        return Err(OpaError::Failed {
            command,
            status,
            stderr: String::from_utf8_lossy(&stderr).trim().to_string(),
        });
    }
    Ok(stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_path_wins_over_env_and_path() {
        let dir = tempfile::tempdir().unwrap();
        let configured = dir.path().join("my-opa");
        std::fs::write(&configured, "").unwrap();
        let found =
            locate_with(Some(&configured), Some("/nonexistent/env-opa".into()), None).unwrap();
        assert_eq!(found, configured);
    }

    #[test]
    fn env_var_is_used_when_nothing_is_configured() {
        let dir = tempfile::tempdir().unwrap();
        let from_env = dir.path().join("env-opa");
        std::fs::write(&from_env, "").unwrap();
        assert_eq!(
            locate_with(None, Some(from_env.clone()), None).unwrap(),
            from_env
        );
    }

    #[test]
    fn path_is_searched_last() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("opa"), "").unwrap();
        let path_var = std::env::join_paths([Path::new("/nonexistent"), dir.path()]).unwrap();
        assert_eq!(
            locate_with(None, None, Some(path_var)).unwrap(),
            dir.path().join("opa")
        );
    }

    #[test]
    fn a_bare_configured_name_is_looked_up_on_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("opa-1.17"), "").unwrap();
        let path_var = std::env::join_paths([dir.path()]).unwrap();
        let found = locate_with(Some(Path::new("opa-1.17")), None, Some(path_var.clone())).unwrap();
        assert_eq!(found, dir.path().join("opa-1.17"));
        let err = locate_with(Some(Path::new("opa-2")), None, Some(path_var)).unwrap_err();
        assert!(matches!(err, OpaError::Missing(_)), "{err}");
    }

    #[test]
    fn an_empty_environment_variable_counts_as_unset() {
        let err = locate_with(None, Some(PathBuf::new()), Some("/nonexistent".into())).unwrap_err();
        assert!(matches!(err, OpaError::NotFound), "{err}");
    }

    #[test]
    fn missing_opa_names_the_three_ways_to_provide_it() {
        let err = locate_with(None, None, Some("/nonexistent".into())).unwrap_err();
        let msg = err.to_string();
        for hint in ["wasmgate.opa", OPA_ENV, "PATH"] {
            assert!(msg.contains(hint), "{msg} should mention {hint}");
        }
    }

    #[test]
    fn configured_path_that_does_not_exist_is_reported() {
        let err = locate_with(Some(Path::new("/nonexistent/opa")), None, None).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/opa"), "{err}");
    }

    #[test]
    fn source_paths_escaping_the_build_dir_are_refused() {
        let sources = [RegoSource {
            path: "../evil.rego".into(),
            text: String::new(),
        }];
        let err = build_wasm_bundle(
            Path::new("/bin/true"),
            &sources,
            &[],
            &Builtins::empty(),
            Duration::from_secs(5),
        )
        .unwrap_err();
        assert!(matches!(err, OpaError::UnsafePath(_)), "{err}");
    }

    #[test]
    fn a_hung_opa_is_killed_at_the_deadline() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let opa = dir.path().join("opa");
        // A wrapper whose child would outlive a plain kill of the wrapper.
        let pidfile = dir.path().join("sleep.pid");
        let script = format!(
            "#!/bin/sh\nsleep 30 &\necho $! > {}\nwait\n",
            pidfile.display()
        );
        std::fs::write(&opa, script).unwrap();
        std::fs::set_permissions(&opa, std::fs::Permissions::from_mode(0o755)).unwrap();
        let sources = [RegoSource {
            path: "p.rego".into(),
            text: "package p".into(),
        }];
        let started = Instant::now();
        let err = build_wasm_bundle(
            &opa,
            &sources,
            &["p/allow".into()],
            &Builtins::empty(),
            Duration::from_millis(300),
        )
        .unwrap_err();
        assert!(matches!(err, OpaError::Timeout { .. }), "{err}");
        assert!(
            err.to_string().contains("did not finish within 300ms"),
            "{err}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "killed, not waited for"
        );
    }
}
