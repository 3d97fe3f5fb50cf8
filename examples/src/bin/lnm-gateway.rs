//! `lnm-gateway`: runs one Purdue level of lnm from its configuration file.
//!
//! ```sh
//! lnm-gateway --config level3.yaml            # run until SIGINT/SIGTERM (then drain); SIGHUP reloads
//! lnm-gateway --config /etc/lnm/config.yaml --watch-interval 2s   # also reload when the file changes
//! lnm-gateway --config level3.yaml --workers 4  # thread-per-core workers (default: one per CPU)
//! lnm-gateway --config level3.yaml --check    # validate, print the effective config, exit 0 or 2
//! lnm-gateway export-dns --config level4.yaml --format dnsmasq   # DNS config for the level below
//! ```
//!
//! The file is an Azure IoT LNM custom resource (or its `spec`) or the lnm format (YAML or
//! JSON). Logs go to stderr, written in batches at most 100 ms after the line (and all of them
//! at exit); `RUST_LOG` overrides `logLevel`. `admin.bind` serves `/metrics` (Prometheus),
//! `/healthz` and `/readyz`; `openTelemetryMetricsCollectorAddr` receives the same metrics over
//! OTLP/gRPC every `metricsExport.interval` (and once more at stop).
//!
//! The running gateway follows its configuration file: every `--watch-interval` (default 2 s;
//! `off` disables it) it looks at the file it was started with — through symlinks, so the
//! atomic symlink swap by which Kubernetes updates a ConfigMap volume counts as a change, as
//! does an edit in place — and reloads it as SIGHUP does. A file that does not load is logged
//! and the running configuration stays (it is not retried until the file changes again).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use lnm_dns::RewriteConfig;
use lnm_dns::export::{self, ExportConfig};
use lnm_policy::Config;
use lnm_proxy::Gateway;
use lnm_proxy::telemetry::TelemetryBuilder;
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
    /// How often to look for a change of the configuration file (reloaded like SIGHUP), e.g.
    /// `2s`, `500ms`; `off`: only SIGHUP reloads.
    #[arg(long, default_value = "2s", value_parser = parse_interval)]
    watch_interval: Interval,
    /// Thread-per-core workers, each with its own SO_REUSEPORT sockets; overrides the
    /// configuration's `workers` (default: one per CPU this process may use).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    workers: Option<u16>,
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

/// `--watch-interval`: a period, or `None` for `off`.
#[derive(Debug, Clone, Copy)]
struct Interval(Option<Duration>);

/// `off`, or a duration as the configuration writes them (`2s`, `500ms`, `1m`: humantime, the
/// same parser as `timeouts`).
fn parse_interval(text: &str) -> Result<Interval, String> {
    if text == "off" {
        return Ok(Interval(None));
    }
    let period = humantime::parse_duration(text)
        .map_err(|e| format!("{text:?}: {e} (a duration such as 2s or 500ms, or off)"))?;
    Ok(Interval((!period.is_zero()).then_some(period)))
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
        (None, Some(config)) => run_level(
            &config,
            args.check,
            args.watch_interval,
            args.workers.map(usize::from),
        ),
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

/// How long log lines may wait in memory before they are written out.
const LOG_FLUSH_PERIOD: Duration = Duration::from_millis(100);

fn run_level(path: &Path, check: bool, watch: Interval, workers: Option<usize>) -> ExitCode {
    let mut loaded = match load(path) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    loaded.config.workers = workers.or(loaded.config.workers);
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(loaded.config.log_level.map_or("info", |l| l.as_str())));
    use std::io::IsTerminal;
    // One line per connection: gathered in memory and written in batches by a thread of its
    // own, not one `write` per line on the workers; the guard writes the rest at exit.
    let (log, _flush_at_exit) = lnm_proxy::logging::batched(std::io::stderr(), LOG_FLUSH_PERIOD);
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(move || log.clone())
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
    // This thread's event loop is worker 0 (it also runs the admin endpoint, signals and the
    // file watch); the gateway starts the other workers, one current-thread runtime each.
    let built = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let runtime = match built {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("lnm-gateway: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(path.to_owned(), loaded.config, watch, workers))
}

async fn run(path: PathBuf, config: Config, watch: Interval, workers: Option<usize>) -> ExitCode {
    // `/metrics` when `admin` is set; the OTLP push when `openTelemetryMetricsCollectorAddr` is.
    let telemetry = match TelemetryBuilder::from_config(&config)
        .service_name("lnm-gateway")
        .install()
    {
        Ok(telemetry) => telemetry,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let mut gateway = match Gateway::start(&config, telemetry.render()).await {
        Ok(gateway) => gateway,
        Err(e) => {
            tracing::error!("{e}");
            telemetry.shutdown().await;
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(
        level = ?config.level, listeners = ?gateway.addrs(), dns = ?gateway.dns_addr(), admin = ?gateway.admin_addr(), workers = gateway.workers(),
        "gateway running"
    );
    let mut signals = Signals::new();
    let mut file = FileWatch::new(&path, watch.0);
    loop {
        let cause = tokio::select! {
            signal = signals.next() => match signal {
                Signal::Stop => break,
                Signal::Reload => "SIGHUP",
            },
            () = file.changed() => "file changed",
        };
        reload(&mut gateway, &path, cause, workers);
    }
    tracing::info!(drain = ?gateway.config().timeouts.shutdown_drain, "stopping: no new connections, draining");
    let closed = gateway.shutdown().await;
    // After the drain, so that the last push counts every connection.
    telemetry.shutdown().await;
    tracing::info!(closed, "stopped");
    ExitCode::SUCCESS
}

/// Loads `path` again and applies it (`workers` from the command line over the file's); a file
/// that does not load leaves the running configuration in place.
fn reload(gateway: &mut Gateway, path: &Path, cause: &str, workers: Option<usize>) {
    match Config::load(path) {
        Ok(mut loaded) => {
            // `--workers` holds for every version of the file.
            loaded.config.workers = workers.or(loaded.config.workers);
            for warning in &loaded.warnings {
                tracing::warn!(file = %path.display(), "{warning}");
            }
            let pending = gateway.reload(loaded.config);
            if pending.is_complete() {
                tracing::info!(file = %path.display(), cause, "configuration reloaded");
            } else {
                tracing::warn!(file = %path.display(), cause, not_applied = %pending, "configuration reloaded; some changes need a restart");
            }
        }
        Err(e) => {
            tracing::error!(
                cause,
                "reload rejected, the running configuration stays: {e}"
            )
        }
    }
}

/// What identifies one version of the configuration file, seen through symlinks: a ConfigMap
/// volume update swaps the `..data` symlink to a new directory (new path, new inode); an edit
/// in place changes the modification time or the length.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint {
    target: Option<PathBuf>,
    device: u64,
    inode: u64,
    modified: Option<std::time::SystemTime>,
    len: u64,
}

impl Fingerprint {
    fn of(path: &Path) -> Option<Fingerprint> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).ok()?;
        Some(Fingerprint {
            target: std::fs::canonicalize(path).ok(),
            device: meta.dev(),
            inode: meta.ino(),
            modified: meta.modified().ok(),
            len: meta.len(),
        })
    }
}

/// Follows the configuration file by looking at its [`Fingerprint`] every period.
struct FileWatch {
    path: PathBuf,
    period: Option<Duration>,
    last: Option<Fingerprint>,
}

impl FileWatch {
    fn new(path: &Path, period: Option<Duration>) -> Self {
        FileWatch {
            path: path.to_owned(),
            period,
            last: Fingerprint::of(path),
        }
    }

    /// Resolves when the file changed (never when watching is off). A file that is briefly
    /// missing is not a change: the next version that appears is.
    async fn changed(&mut self) {
        let Some(period) = self.period else {
            return std::future::pending().await;
        };
        loop {
            tokio::time::sleep(period).await;
            let now = Fingerprint::of(&self.path);
            if now.is_some() && now != self.last {
                self.last = now;
                return;
            }
        }
    }
}

enum Signal {
    Stop,
    Reload,
}

/// SIGTERM, SIGINT and SIGHUP, registered once for the life of the gateway.
struct Signals {
    term: Option<tokio::signal::unix::Signal>,
    hup: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        let (term, hup) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        );
        if term.is_err() || hup.is_err() {
            tracing::error!("cannot watch SIGTERM/SIGHUP; only Ctrl-C stops the gateway");
        }
        Signals {
            term: term.ok(),
            hup: hup.ok(),
        }
    }

    async fn next(&mut self) -> Signal {
        async fn recv(signal: Option<&mut tokio::signal::unix::Signal>) {
            match signal {
                Some(signal) => {
                    signal.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            _ = tokio::signal::ctrl_c() => Signal::Stop,
            () = recv(self.term.as_mut()) => Signal::Stop,
            () = recv(self.hup.as_mut()) => Signal::Reload,
        }
    }
}
