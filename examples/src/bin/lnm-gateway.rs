//! `lnm-gateway`: runs one Purdue level of lnm from its configuration file.
//!
//! ```sh
//! lnm-gateway --config level3.yaml            # run until SIGINT/SIGTERM (then drain); SIGHUP reloads
//! lnm-gateway --config level3.yaml --check    # validate, print the effective config, exit 0 or 2
//! lnm-gateway export-dns --config level4.yaml --format dnsmasq   # DNS config for the level below
//! ```
//!
//! The file is an Azure IoT LNM custom resource (or its `spec`) or the lnm format (YAML or
//! JSON). Logs go to stderr; `RUST_LOG` overrides `logLevel`. `admin.bind` serves `/metrics`
//! (Prometheus), `/healthz` and `/readyz`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use lnm_dns::RewriteConfig;
use lnm_dns::export::{self, ExportConfig};
use lnm_policy::Config;
use lnm_proxy::Gateway;
use tracing_subscriber::EnvFilter;

/// Runs one level of lnm (Layered Network Management).
#[derive(Debug, Parser)]
#[command(
    name = "lnm-gateway",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
struct Args {
    /// The level's configuration file (YAML or JSON).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Validate the configuration, print it with every default filled in, and exit.
    #[arg(long)]
    check: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the DNS configuration the level below needs: this level's allowlisted names
    /// resolve to this level's gateway, everything else goes to `--upstream` (or is refused).
    ExportDns {
        /// This level's configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// The DNS software of the level below.
        #[arg(long, value_enum)]
        format: Format,
        /// Where the level below forwards other names (`ip:port`, repeatable).
        #[arg(long)]
        upstream: Vec<SocketAddr>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Dnsmasq,
    Coredns,
}

fn load(path: &Path) -> Result<lnm_policy::LoadedConfig, ExitCode> {
    Config::load(path).map_err(|e| {
        eprintln!("lnm-gateway: {e}");
        ExitCode::from(2)
    })
}

fn main() -> ExitCode {
    let args = Args::parse();
    match (args.command, args.config) {
        (
            Some(Command::ExportDns {
                config,
                format,
                upstream,
            }),
            _,
        ) => export_dns(&config, format, upstream),
        (None, Some(config)) => run_level(&config, args.check),
        (None, None) => {
            eprintln!("lnm-gateway: --config FILE is required (see --help)");
            ExitCode::from(2)
        }
    }
}

fn export_dns(path: &Path, format: Format, upstream: Vec<SocketAddr>) -> ExitCode {
    let loaded = match load(path) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let config = loaded.config;
    // The level below must reach this gateway: its DNS answers, else its listener addresses.
    let mut answers: Vec<Ipv4Addr> = config
        .dns
        .as_ref()
        .map(|d| d.answer_ipv4.clone())
        .unwrap_or_default();
    if answers.is_empty() {
        for l in config.effective_listeners() {
            if let IpAddr::V4(ip) = l.bind.ip()
                && !ip.is_unspecified()
                && !answers.contains(&ip)
            {
                answers.push(ip);
            }
        }
    }
    if answers.is_empty() {
        eprintln!(
            "lnm-gateway: {}: cannot tell this gateway's address: set dns.answerIpv4 or bind the listeners to an address",
            path.display()
        );
        return ExitCode::from(2);
    }
    let (v6, ttl) = config
        .dns
        .as_ref()
        .map_or((Vec::new(), 60), |d| (d.answer_ipv6.clone(), d.ttl));
    let export_config = ExportConfig::new(RewriteConfig::new(answers, v6).ttl(ttl), upstream);
    let allowlist = config.allowlist();
    let text = match format {
        Format::Dnsmasq => export::dnsmasq(&allowlist, &export_config),
        Format::Coredns => export::corefile(&allowlist, &export_config),
    };
    #[allow(clippy::print_stdout)]
    {
        print!("{text}");
    }
    ExitCode::SUCCESS
}

fn run_level(path: &Path, check: bool) -> ExitCode {
    let loaded = match load(path) {
        Ok(loaded) => loaded,
        Err(code) => return code,
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
        tracing::warn!(file = %path.display(), "{warning}");
    }
    if check {
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
    // One worker: run the event loop on this thread (no cross-thread wake-ups or work-stealing
    // bookkeeping); more: the multi-threaded scheduler (TOKIO_WORKER_THREADS, default: one per CPU).
    let single = std::env::var("TOKIO_WORKER_THREADS").is_ok_and(|n| n.trim() == "1");
    let built = if single {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    };
    let runtime = match built {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("lnm-gateway: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(path.to_owned(), loaded.config))
}

async fn run(path: PathBuf, config: Config) -> ExitCode {
    let render = if config.admin.is_some() {
        install_metrics()
    } else {
        None
    };
    let mut gateway = match Gateway::start(&config, render).await {
        Ok(gateway) => gateway,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(
        level = ?config.level, listeners = ?gateway.addrs(), dns = ?gateway.dns_addr(), admin = ?gateway.admin_addr(),
        "gateway running"
    );
    loop {
        match next_signal().await {
            Signal::Stop => break,
            Signal::Reload => match Config::load(&path) {
                Ok(loaded) => {
                    for warning in &loaded.warnings {
                        tracing::warn!(file = %path.display(), "{warning}");
                    }
                    let pending = gateway.reload(loaded.config);
                    if pending.is_complete() {
                        tracing::info!(file = %path.display(), "configuration reloaded");
                    } else {
                        tracing::warn!(file = %path.display(), not_applied = %pending, "configuration reloaded; some changes need a restart");
                    }
                }
                Err(e) => tracing::error!("reload rejected, the running configuration stays: {e}"),
            },
        }
    }
    tracing::info!(drain = ?gateway.config().timeouts.shutdown_drain, "stopping: no new connections, draining");
    let closed = gateway.shutdown().await;
    tracing::info!(closed, "stopped");
    ExitCode::SUCCESS
}

/// Installs the Prometheus exporter as the `metrics` recorder; returns its renderer.
fn install_metrics() -> Option<lnm_proxy::admin::RenderMetrics> {
    // Latency histograms (seconds): decisions take microseconds, connects milliseconds.
    const BUCKETS: &[f64] = &[
        1e-6, 1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0,
    ];
    let builder = metrics_exporter_prometheus::PrometheusBuilder::new();
    let builder = match builder.set_buckets(BUCKETS) {
        Ok(builder) => builder,
        Err(e) => {
            tracing::warn!("metrics buckets rejected: {e}");
            return None;
        }
    };
    let recorder = builder.build_recorder();
    let handle = recorder.handle();
    if let Err(e) = metrics::set_global_recorder(recorder) {
        tracing::warn!("metrics recorder not installed: {e}");
        return None;
    }
    let upkeep = handle.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            upkeep.run_upkeep();
        }
    });
    Some(Arc::new(move || handle.render()))
}

enum Signal {
    Stop,
    Reload,
}

async fn next_signal() -> Signal {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot watch SIGTERM/SIGHUP; only Ctrl-C stops the gateway");
        let _ = tokio::signal::ctrl_c().await;
        return Signal::Stop;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => Signal::Stop,
        _ = term.recv() => Signal::Stop,
        _ = hup.recv() => Signal::Reload,
    }
}
