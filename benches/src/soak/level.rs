//! The gateway under test: its configuration file, its process, its log.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

use super::SoakError;

/// The allowlisted names (besides the rotating one) and what the driver asks for.
pub(crate) mod names {
    /// An exact rule, served by the TLS origin.
    pub(crate) const TLS: &str = "tls.soak.example";
    /// Matches `*.wild.soak.example`, served by the TLS origin.
    pub(crate) const WILD: &str = "a.wild.soak.example";
    /// Another name under the wildcard (DNS only).
    pub(crate) const WILD_DNS: &str = "b.wild.soak.example";
    /// An exact rule, served by the HTTP origin.
    pub(crate) const HTTP: &str = "http.soak.example";
    /// Not allowlisted (no rule).
    pub(crate) const DENIED: &str = "denied.soak.example";
    /// The apex of the wildcard: not allowlisted.
    pub(crate) const APEX: &str = "wild.soak.example";
    /// Another domain.
    pub(crate) const OTHER: &str = "x.other.example";
    /// The names the TLS origin's certificate covers.
    pub(crate) const CERT: [&str; 2] = ["*.soak.example", "*.wild.soak.example"];

    /// The rotating name of configuration generation `generation`.
    pub(crate) fn rotating(generation: u64) -> String {
        format!("rot-{generation}.soak.example")
    }
}

/// The addresses a level's configuration names.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ports {
    pub(crate) tls: SocketAddr,
    pub(crate) http: SocketAddr,
    pub(crate) dns: SocketAddr,
    pub(crate) admin: SocketAddr,
    pub(crate) tls_origin: SocketAddr,
    pub(crate) http_origin: SocketAddr,
    pub(crate) upstream_dns: SocketAddr,
}

/// The level's configuration at `generation`: the static names, `rot-{generation}` allowed,
/// the previous rotating name resolvable (in `hosts`) but no longer allowed.
pub(crate) fn config_yaml(ports: &Ports, generation: u64, sniff: Duration) -> String {
    let current = names::rotating(generation);
    let previous = match generation {
        0 => String::new(),
        n => format!(", {}: 127.0.0.1", names::rotating(n - 1)),
    };
    let sniff_ms = sniff.as_millis();
    format!(
        "# lnm-soak: generation {generation}\n\
         level: 4\n\
         allowList:\n\
         \x20 domains:\n\
         \x20   - {{destinationUrl: {tls}, destinationType: external}}\n\
         \x20   - {{destinationUrl: {http}, destinationType: external}}\n\
         \x20   - {{destinationUrl: \"*.wild.soak.example\", destinationType: external}}\n\
         \x20   - {{destinationUrl: {current}, destinationType: external}}\n\
         \x20 sourceIpRange:\n\
         \x20   - {{addressPrefix: 127.0.0.1, prefixLen: 32}}\n\
         listeners:\n\
         \x20 - {{bind: \"{tls_bind}\", protocol: tls, destinationPort: {tls_origin}}}\n\
         \x20 - {{bind: \"{http_bind}\", protocol: http, destinationPort: {http_origin}}}\n\
         dns: {{bind: \"{dns}\", answerIpv4: [127.0.0.1], upstream: [\"{upstream}\"], ttl: 60}}\n\
         resolver:\n\
         \x20 hosts: {{{tls}: 127.0.0.1, {wild}: 127.0.0.1, {http}: 127.0.0.1, {current}: 127.0.0.1{previous}}}\n\
         admin: {{bind: \"{admin}\"}}\n\
         limits: {{maxConnections: 10000, maxConnectionsPerSource: 10000}}\n\
         timeouts: {{sniff: {sniff_ms}ms, connect: 5s, idle: 60s, shutdownDrain: 5s}}\n",
        tls = names::TLS,
        http = names::HTTP,
        wild = names::WILD,
        tls_bind = ports.tls,
        http_bind = ports.http,
        tls_origin = ports.tls_origin.port(),
        http_origin = ports.http_origin.port(),
        dns = ports.dns,
        upstream = ports.upstream_dns,
        admin = ports.admin,
    )
}

/// Writes `text` to `path` atomically (a sibling file renamed over it), so the gateway never
/// reads half a file.
pub(crate) async fn write_atomically(path: &Path, text: &str) -> Result<(), SoakError> {
    let tmp = path.with_extension("yaml.new");
    let write = |source| SoakError::Write {
        path: path.to_owned(),
        source,
    };
    tokio::fs::write(&tmp, text).await.map_err(write)?;
    tokio::fs::rename(&tmp, path).await.map_err(write)
}

/// What the gateway logged, counted as it was read.
#[derive(Debug, Clone, Default)]
pub struct LogSummary {
    /// Lines in all.
    pub lines: u64,
    /// `WARN` lines.
    pub warn: u64,
    /// `ERROR` lines.
    pub error: u64,
    /// Lines that mention a panic.
    pub panics: u64,
    /// `configuration reloaded` lines (complete reloads).
    pub reloaded: u64,
    /// Reloads with changes that need a restart.
    pub reload_partial: u64,
    /// Rejected reloads.
    pub reload_rejected: u64,
    /// The first warning and error lines (at most 40).
    pub notable: Vec<String>,
    /// The last lines (at most 10).
    pub tail: std::collections::VecDeque<String>,
}

impl LogSummary {
    fn add(&mut self, line: &str) {
        self.lines += 1;
        let notable = if line.contains(" ERROR ") {
            self.error += 1;
            true
        } else if line.contains(" WARN ") {
            self.warn += 1;
            true
        } else {
            false
        };
        if line.contains("panicked") {
            self.panics += 1;
        }
        if line.contains("configuration reloaded;") {
            self.reload_partial += 1;
        } else if line.contains("configuration reloaded") {
            self.reloaded += 1;
        }
        if line.contains("reload rejected") {
            self.reload_rejected += 1;
        }
        if (notable || line.contains("panicked")) && self.notable.len() < 40 {
            self.notable.push(line.to_owned());
        }
        if self.tail.len() == 10 {
            self.tail.pop_front();
        }
        self.tail.push_back(line.to_owned());
    }
}

/// Sends `signal` to process `pid`.
pub(crate) fn send_signal(pid: u32, signal: rustix::process::Signal) -> Result<(), SoakError> {
    let error = |source| SoakError::Signal { pid, source };
    let raw = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| error(std::io::Error::other("not a process id")))?;
    rustix::process::kill_process(raw, signal).map_err(|e| error(e.into()))
}

/// The running gateway.
pub(crate) struct Level {
    child: Child,
    pub(crate) pid: u32,
    pub(crate) log: Arc<Mutex<LogSummary>>,
    log_task: tokio::task::JoinHandle<()>,
}

impl Level {
    /// Starts `gateway --config config_path --watch-interval off` (reloads come from SIGHUP
    /// only, so each one is counted), its stderr copied to `log_path` and summarised.
    pub(crate) fn spawn(
        gateway: &Path,
        config_path: &Path,
        log_path: &Path,
        log_filter: &str,
        threads: Option<usize>,
    ) -> Result<Level, SoakError> {
        let mut command = Command::new(gateway);
        command
            .arg("--config")
            .arg(config_path)
            .args(["--watch-interval", "off"])
            .env("RUST_LOG", log_filter)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(n) = threads {
            command.args(["--workers", &n.to_string()]);
        }
        let mut child = command.spawn().map_err(|source| SoakError::Spawn {
            gateway: gateway.to_owned(),
            source,
        })?;
        let pid = child.id().ok_or_else(|| SoakError::Spawn {
            gateway: gateway.to_owned(),
            source: std::io::Error::other("exited at once"),
        })?;
        let stderr = child.stderr.take().ok_or_else(|| SoakError::Spawn {
            gateway: gateway.to_owned(),
            source: std::io::Error::other("no stderr pipe"),
        })?;
        let log = Arc::new(Mutex::new(LogSummary::default()));
        let summary = log.clone();
        let log_path = log_path.to_owned();
        let log_task = tokio::spawn(async move {
            let mut file = tokio::fs::File::create(&log_path).await.ok();
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(f) = file.as_mut()
                    && f.write_all(format!("{line}\n").as_bytes()).await.is_err()
                {
                    file = None;
                }
                if let Ok(mut s) = summary.lock() {
                    s.add(&line);
                }
            }
            if let Some(f) = file.as_mut() {
                let _ = f.flush().await;
            }
        });
        Ok(Level {
            child,
            pid,
            log,
            log_task,
        })
    }

    /// Sends `signal` to the gateway.
    pub(crate) fn signal(&self, signal: rustix::process::Signal) -> Result<(), SoakError> {
        send_signal(self.pid, signal)
    }

    /// The exit status if the gateway has exited.
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// A copy of the log summary so far.
    pub(crate) fn log_summary(&self) -> LogSummary {
        self.log.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Sends SIGTERM and waits up to `within` for the exit (then kills); returns the status,
    /// `None` when it had to be killed, and the complete log summary.
    pub(crate) async fn stop(mut self, within: Duration) -> (Option<ExitStatus>, LogSummary) {
        let status = match self.signal(rustix::process::Signal::TERM) {
            Ok(()) => tokio::time::timeout(within, self.child.wait())
                .await
                .ok()
                .and_then(Result::ok),
            Err(_) => None,
        };
        if status.is_none() {
            let _ = self.child.kill().await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut self.log_task).await;
        let summary = self.log_summary();
        (status, summary)
    }
}
