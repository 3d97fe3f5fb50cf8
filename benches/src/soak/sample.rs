//! What the driver samples: the gateway's `/proc` figures and its `/metrics` counters.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One sample of the gateway, with the driver's own counts at that moment.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Sample {
    /// Seconds since the load started (negative: before, in the warm-up or the baseline).
    pub t: f64,
    /// `warmup`, `baseline`, `load` or `drained`.
    pub phase: &'static str,
    /// Resident set size, KiB (`VmRSS`).
    pub rss_kib: u64,
    /// Open descriptors (`/proc/<pid>/fd`).
    pub fds: u64,
    /// Threads.
    pub threads: u64,
    /// `lnm_connections_total{decision="allow"}`: connections served.
    pub conns_allowed: u64,
    /// `lnm_connections_total{decision="deny"}`: connections refused.
    pub conns_denied: u64,
    /// `lnm_connections_active`.
    pub conns_active: u64,
    /// `lnm_dns_queries_total`, every outcome.
    pub dns_queries: u64,
    /// The driver's expected successes so far.
    pub ok: u64,
    /// The driver's expected refusals so far.
    pub refused: u64,
    /// The driver's unexpected errors so far.
    pub errors: u64,
}

impl Sample {
    /// The sample as the report's columns: t, phase, RSS, descriptors, threads, the gateway's
    /// counters, the driver's counts (one row of the CSV and of the Markdown table).
    pub fn cells(&self) -> [String; 12] {
        [
            format!("{:.1}", self.t + 0.0),
            self.phase.to_owned(),
            self.rss_kib.to_string(),
            self.fds.to_string(),
            self.threads.to_string(),
            self.conns_allowed.to_string(),
            self.conns_denied.to_string(),
            self.conns_active.to_string(),
            self.dns_queries.to_string(),
            self.ok.to_string(),
            self.refused.to_string(),
            self.errors.to_string(),
        ]
    }
}

/// `VmRSS` (KiB) and `Threads` of `pid`.
pub(crate) fn proc_status(pid: u32) -> io::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok((field("VmRSS:"), field("Threads:")))
}

/// Open descriptors of `pid`.
pub(crate) fn fd_count(pid: u32) -> io::Result<u64> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count() as u64)
}

/// `GET path` from the admin endpoint: the status line and the body.
pub(crate) async fn admin_get(admin: SocketAddr, path: &str) -> io::Result<(String, String)> {
    let fetch = async {
        let mut s = TcpStream::connect(admin).await?;
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: admin\r\n\r\n").as_bytes())
            .await?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await?;
        Ok::<_, io::Error>(String::from_utf8_lossy(&out).into_owned())
    };
    let text = tokio::time::timeout(Duration::from_secs(15), fetch)
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{path}: no answer in 15 s"),
            )
        })??;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.lines().next().unwrap_or("").to_owned();
    Ok((status, body.to_owned()))
}

/// Prometheus text as `series → value` (`name{labels}` as written).
pub(crate) fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.trim().parse::<f64>().ok()?))
        })
        .collect()
}

/// The sum of every series of `name` whose labels contain `label` (empty: all).
pub(crate) fn sum(metrics: &BTreeMap<String, f64>, name: &str, label: &str) -> u64 {
    metrics
        .iter()
        .filter(|(series, _)| {
            (series.as_str() == name || series.starts_with(&format!("{name}{{")))
                && series.contains(label)
        })
        .map(|(_, v)| *v)
        .sum::<f64>() as u64
}
