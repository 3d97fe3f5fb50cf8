//! `lnm-gateway`: runs one Purdue level of lnm from its configuration file.
//!
//! ```sh
//! lnm-gateway --config level3.yaml           # run until SIGINT/SIGTERM, then drain
//! lnm-gateway --config level3.yaml --check   # validate, print the effective config, exit 0 or 2
//! ```
//!
//! The file is an Azure IoT LNM custom resource (or its `spec`) or the lnm format (YAML or
//! JSON). Logs go to stderr; `RUST_LOG` overrides `logLevel`. Today the gateway runs the proxy
//! listeners; the DNS server, the admin endpoint and SIGHUP reload are not implemented yet.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use lnm_policy::Config;
use lnm_proxy::Gateway;
use tracing_subscriber::EnvFilter;

/// Runs one level of lnm (Layered Network Management).
#[derive(Debug, Parser)]
#[command(name = "lnm-gateway", version, about)]
struct Args {
    /// The level's configuration file (YAML or JSON).
    #[arg(long, short)]
    config: PathBuf,
    /// Validate the configuration, print it with every default filled in, and exit.
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let loaded = match Config::load(&args.config) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("lnm-gateway: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(loaded.config.log_level.map_or("info", |l| l.as_str())));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    for warning in &loaded.warnings {
        tracing::warn!(file = %args.config.display(), "{warning}");
    }
    if args.check {
        return match serde_saphyr::to_string(&loaded.config) {
            Ok(text) => {
                #[allow(clippy::print_stdout)]
                {
                    print!("{text}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("lnm-gateway: cannot print the configuration: {e}");
                ExitCode::from(2)
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("lnm-gateway: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(loaded.config))
}

async fn run(config: Config) -> ExitCode {
    let gateway = match Gateway::start(&config).await {
        Ok(gateway) => gateway,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(level = ?config.level, listeners = ?gateway.addrs(), "gateway running");
    wait_for_stop().await;
    tracing::info!(drain = ?config.timeouts.shutdown_drain, "stopping: no new connections, draining");
    let closed = gateway.shutdown().await;
    tracing::info!(closed, "stopped");
    ExitCode::SUCCESS
}

async fn wait_for_stop() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            tracing::error!("cannot watch SIGTERM: {e}");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
