//! The `wasmgate` command: evaluate a policy once (`eval`) or run the decision server
//! (`serve`).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::json;

use wasmgate::artifact::PolicyContent;
use wasmgate::config::Config;
use wasmgate::policy::{EnginePreference, LoadOptions, Loader};
use wasmgate::source::local;

#[derive(Parser)]
#[command(
    name = "wasmgate",
    version,
    about = "Evaluate OPA policies compiled to WebAssembly"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Evaluate one entrypoint once and print `{"result": ...}` (or `{}` when undefined).
    Eval(EvalArgs),
    /// Run the HTTP decision server with hot reload.
    Serve {
        /// The YAML configuration (Flipt `authorization:` schema plus `wasmgate:`).
        #[arg(long, short)]
        config: PathBuf,
        /// Override `wasmgate.listen`.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
    /// Check a configuration file and print it as understood.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
}

#[derive(clap::Args)]
struct EvalArgs {
    /// The policy: a `.wasm` module, an OPA bundle `.tar.gz`, a `.rego` file or a directory
    /// of `.rego` files (told apart by content).
    #[arg(long, short)]
    policy: PathBuf,
    /// The entrypoint to evaluate, e.g. `flipt/authz/v1/allow`.
    #[arg(long, short)]
    entrypoint: String,
    /// The input document as a JSON file, or `-` for stdin. Without it there is no input.
    #[arg(long, short)]
    input: Option<PathBuf>,
    /// A JSON data document, merged over any bundle data.
    #[arg(long, short)]
    data: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Engine::Auto)]
    engine: Engine,
    /// Path to `opa` (else `$WASMGATE_OPA`, else `PATH`); needed to compile `.rego` to Wasm.
    #[arg(long)]
    opa: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Engine {
    /// Wasm, falling back to the interpreter for `.rego` when no `opa` exists.
    Auto,
    /// Wasm only.
    Wasm,
    /// The `regorus` interpreter.
    Interpreted,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.command {
        Command::Serve { .. } => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .init();
    let outcome = match cli.command {
        Command::Eval(args) => eval(args),
        Command::Serve { config, listen } => serve(&config, listen),
        Command::Check { config } => check(&config),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wasmgate: error: {}", render(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, each said once: most of wasmgate's errors already
/// include their cause in their own message.
fn render(error: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}

fn eval(args: EvalArgs) -> Result<()> {
    let max_bytes = LoadOptions::default().bundle_limits.max_bytes;
    let policy: PolicyContent = local::read_policy(&args.policy, max_bytes)?;
    let data = args
        .data
        .as_deref()
        .map(|p| local::read_data(p, max_bytes).map(|(v, _)| v))
        .transpose()?;
    let input = args.input.as_deref().map(read_input).transpose()?;
    let options = LoadOptions {
        engine: match args.engine {
            Engine::Auto => EnginePreference::Auto,
            Engine::Wasm => EnginePreference::Wasm,
            Engine::Interpreted => EnginePreference::Interpreted,
        },
        opa: args.opa,
        entrypoints: vec![args.entrypoint.trim_matches('/').to_string()],
        pool_size: 1,
        ..LoadOptions::default()
    };
    let set = Loader::new(options)
        .load(policy, data)
        .with_context(|| format!("loading {}", args.policy.display()))?;
    let info = set.info();
    eprintln!(
        "wasmgate: engine {} ({} policy, revision {})",
        info.engine, info.artifact, info.revision
    );
    let result = set
        .evaluate_json(&args.entrypoint, input.as_deref())
        .with_context(|| format!("evaluating {}", args.entrypoint))?;
    let out = match result {
        Some(value) => json!({ "result": value }),
        None => json!({}),
    };
    println!("{out}");
    Ok(())
}

/// Read an input document and check it is JSON, so a typo is reported as such rather than
/// as a policy error.
fn read_input(path: &Path) -> Result<Vec<u8>> {
    let max = LoadOptions::default().bundle_limits.max_bytes;
    let bytes = if path == Path::new("-") {
        let mut buf = Vec::new();
        std::io::stdin()
            .take(max + 1)
            .read_to_end(&mut buf)
            .context("reading input from stdin")?;
        if buf.len() as u64 > max {
            bail!("input on stdin is over the limit of {max} bytes");
        }
        buf
    } else {
        local::read_limited(path, max)?
    };
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&bytes) {
        bail!("input {} is not valid JSON: {e}", path.display());
    }
    Ok(bytes)
}

fn check(path: &Path) -> Result<()> {
    let config = Config::load(path)?;
    println!("{config:#?}");
    Ok(())
}

fn serve(path: &Path, listen: Option<std::net::SocketAddr>) -> Result<()> {
    let config = Config::load(path)?;
    let addr = listen.unwrap_or(config.wasmgate.listen);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let authz = wasmgate::Authorizer::start(config)
            .await
            .context("starting the authorizer")?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        let bound = listener.local_addr()?;
        tracing::info!("wasmgate serving decisions on http://{bound}");
        // Tests and scripts read this line to learn the port when listening on :0.
        println!("listening on http://{bound}");
        wasmgate::server::serve(listener, authz, shutdown_signal())
            .await
            .context("serving HTTP")
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
}
