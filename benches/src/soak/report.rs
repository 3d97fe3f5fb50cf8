//! The report of a soak run: totals per kind, samples over time, verdicts; as Markdown and CSV.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use super::level::LogSummary;
use super::{Kind, Sample, SoakConfig};

/// What clients of one [`Kind`] got.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct KindTotals {
    /// Clients started.
    pub started: u64,
    /// Expected successes.
    pub success: u64,
    /// Expected refusals.
    pub refusal: u64,
    /// Unexpected errors.
    pub unexpected: u64,
    /// Clients not started because too many were in flight (not an error of the gateway).
    pub skipped: u64,
    /// The first unexpected outcomes, as they were described.
    pub examples: Vec<String>,
}

/// How the run ended, as the driver measured it.
#[derive(Debug, Clone)]
pub(crate) struct End {
    pub(crate) idle: Sample,
    pub(crate) baseline: Sample,
    pub(crate) end: Sample,
    pub(crate) healthz: String,
    pub(crate) exited_early: Option<String>,
    pub(crate) exit: String,
    pub(crate) exit_success: bool,
    pub(crate) log: LogSummary,
    pub(crate) reloads_sent: u64,
    pub(crate) load_average: (String, String),
    pub(crate) workdir: PathBuf,
}

/// One verdict: whether it held, and the figures it was decided on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Verdict {
    /// What was judged.
    pub name: &'static str,
    /// The rule.
    pub rule: &'static str,
    /// Whether it held.
    pub passed: bool,
    /// The figures.
    pub detail: String,
}

/// The verdicts of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Verdicts {
    /// Every verdict, in report order.
    pub all: Vec<Verdict>,
}

impl Verdicts {
    /// Whether every verdict held.
    pub fn passed(&self) -> bool {
        self.all.iter().all(|v| v.passed)
    }

    /// The verdict called `name`.
    pub fn get(&self, name: &str) -> Option<&Verdict> {
        self.all.iter().find(|v| v.name == name)
    }
}

/// The report of a soak run.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Report {
    /// The run's parameters, as text.
    pub parameters: Vec<(String, String)>,
    /// Every sample, `t` in seconds since the load started.
    pub samples: Vec<Sample>,
    /// Outcomes per kind.
    pub totals: BTreeMap<Kind, KindTotals>,
    /// The verdicts.
    pub verdicts: Verdicts,
    /// What the gateway logged.
    pub log: LogSummary,
    /// Where the gateway's configuration and log are.
    pub workdir: PathBuf,
    end: End,
}

/// Growth allowed for RSS: the last third's maximum may exceed the first third's by this factor
/// plus [`RSS_SLACK_KIB`].
const RSS_FACTOR: f64 = 1.10;
/// See [`RSS_FACTOR`].
const RSS_SLACK_KIB: u64 = 2048;
/// Descriptors the drained gateway may hold beyond its baseline.
const FD_SLACK: u64 = 2;

impl Report {
    pub(crate) fn new(
        config: &SoakConfig,
        samples: Vec<Sample>,
        totals: BTreeMap<Kind, KindTotals>,
        end: End,
    ) -> Report {
        let mut parameters = vec![
            ("gateway".to_owned(), config.gateway.display().to_string()),
            (
                "load".to_owned(),
                humantime::format_duration(config.duration).to_string(),
            ),
            (
                "warm-up".to_owned(),
                humantime::format_duration(config.warmup).to_string(),
            ),
            (
                "sample every".to_owned(),
                humantime::format_duration(config.sample_interval).to_string(),
            ),
            (
                "reload every".to_owned(),
                humantime::format_duration(config.reload_interval).to_string(),
            ),
            (
                "sniff timeout".to_owned(),
                humantime::format_duration(config.sniff_timeout).to_string(),
            ),
            (
                "client timeout".to_owned(),
                humantime::format_duration(config.op_timeout).to_string(),
            ),
            ("gateway log filter".to_owned(), config.gateway_log.clone()),
            (
                "gateway workers".to_owned(),
                config
                    .gateway_workers
                    .map_or("default (one per CPU)".to_owned(), |n| n.to_string()),
            ),
            ("rate scale".to_owned(), format!("{}", config.rate_scale)),
        ];
        let (conns, queries) = config.rates.iter().fold((0.0, 0.0), |(c, q), (k, r)| {
            let r = r * config.rate_scale;
            (
                c + if k.is_connection() { r } else { 0.0 },
                q + if k.is_query() { r } else { 0.0 },
            )
        });
        parameters.push((
            "offered load".to_owned(),
            format!("{conns:.0} connections/s, {queries:.0} queries/s"),
        ));
        parameters.push((
            "CPUs".to_owned(),
            std::thread::available_parallelism().map_or("?".to_owned(), |n| n.to_string()),
        ));
        parameters.push((
            "kernel".to_owned(),
            std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_owned())
                .unwrap_or_default(),
        ));
        parameters.push((
            "load average at start / end".to_owned(),
            format!("{} / {}", end.load_average.0, end.load_average.1),
        ));
        let verdicts = verdicts(&samples, &totals, &end);
        Report {
            parameters,
            samples,
            totals,
            verdicts,
            log: end.log.clone(),
            workdir: end.workdir.clone(),
            end,
        }
    }

    /// Whether every verdict held.
    pub fn passed(&self) -> bool {
        self.verdicts.passed()
    }

    /// The samples as CSV, one row per sample.
    pub fn csv(&self) -> String {
        let mut out = String::from(
            "t_s,phase,rss_kib,fds,threads,conns_allowed,conns_denied,conns_active,dns_queries,driver_ok,driver_refused,driver_errors\n",
        );
        for s in &self.samples {
            let _ = writeln!(out, "{}", s.cells().join(","));
        }
        out
    }

    /// The report as Markdown: verdicts, totals per kind, samples over time (at most
    /// `max_rows` rows, evenly spaced), the gateway's log.
    pub fn markdown(&self, title: &str, max_rows: usize) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "# {title}\n");
        let _ = writeln!(
            md,
            "**{}**: {} of {} verdicts held.\n",
            if self.passed() { "PASSED" } else { "FAILED" },
            self.verdicts.all.iter().filter(|v| v.passed).count(),
            self.verdicts.all.len()
        );
        md.push_str("## Verdicts\n\n| verdict | rule | result | figures |\n|---|---|---|---|\n");
        for v in &self.verdicts.all {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} |",
                v.name,
                v.rule,
                if v.passed { "pass" } else { "**FAIL**" },
                v.detail
            );
        }
        md.push_str("\n## Run\n\n| parameter | value |\n|---|---|\n");
        for (k, v) in &self.parameters {
            let _ = writeln!(md, "| {k} | {v} |");
        }

        md.push_str("\n## Outcomes per kind (warm-up and load)\n\n| kind | expected | started | success | refusal | unexpected | skipped |\n|---|---|---|---|---|---|---|\n");
        let mut sum = KindTotals::default();
        for kind in Kind::ALL {
            let Some(t) = self.totals.get(&kind) else {
                continue;
            };
            let _ = writeln!(
                md,
                "| {kind} | {} | {} | {} | {} | {} | {} |",
                kind.expectation(),
                t.started,
                t.success,
                t.refusal,
                t.unexpected,
                t.skipped
            );
            sum.started += t.started;
            sum.success += t.success;
            sum.refusal += t.refusal;
            sum.unexpected += t.unexpected;
            sum.skipped += t.skipped;
        }
        let _ = writeln!(
            md,
            "| **all** | | {} | {} | {} | {} | {} |",
            sum.started, sum.success, sum.refusal, sum.unexpected, sum.skipped
        );
        let examples: Vec<_> = self
            .totals
            .iter()
            .flat_map(|(k, t)| t.examples.iter().map(move |e| (k, e)))
            .collect();
        if !examples.is_empty() {
            md.push_str("\nUnexpected outcomes (first per kind):\n\n");
            for (kind, e) in examples {
                let _ = writeln!(md, "- `{kind}`: {e}");
            }
        }

        md.push_str("\n## The gateway over time\n\n");
        md.push_str("`t`: seconds since the load started; served / refused: the gateway's `lnm_connections_total` by decision (cumulative); active: `lnm_connections_active`; ok / refused / errors (driver): the driver's classification of its clients (cumulative).\n\n");
        md.push_str("| t (s) | phase | RSS (KiB) | fds | threads | served | refused | active | DNS queries | ok (driver) | refused (driver) | errors (driver) |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        for s in thin(&self.samples, max_rows) {
            let _ = writeln!(md, "| {} |", s.cells().join(" | "));
        }

        let end = &self.end;
        md.push_str(
            "\n## Start and end\n\n| moment | RSS (KiB) | fds | threads |\n|---|---|---|---|\n",
        );
        for (name, s) in [
            ("idle, after start", &end.idle),
            ("baseline, after the warm-up, drained", &end.baseline),
            ("end, after the load, drained", &end.end),
        ] {
            let _ = writeln!(md, "| {name} | {} | {} | {} |", s.rss_kib, s.fds, s.threads);
        }
        let load: Vec<_> = self.samples.iter().filter(|s| s.phase == "load").collect();
        if let (Some(max_rss), Some(max_fds)) = (
            load.iter().map(|s| s.rss_kib).max(),
            load.iter().map(|s| s.fds).max(),
        ) {
            let _ = writeln!(
                md,
                "| maximum under load | {max_rss} | {max_fds} | {} |",
                load.iter().map(|s| s.threads).max().unwrap_or(0)
            );
        }
        let _ = writeln!(
            md,
            "\n`/healthz` after the load: {}; exit after SIGTERM: {}.",
            end.healthz, end.exit
        );

        let log = &self.log;
        let _ = writeln!(
            md,
            "\n## The gateway's log\n\n{} lines: {} WARN, {} ERROR, {} panics; {} reloads sent, {} logged complete, {} partial, {} rejected.",
            log.lines,
            log.warn,
            log.error,
            log.panics,
            end.reloads_sent,
            log.reloaded,
            log.reload_partial,
            log.reload_rejected
        );
        if !log.notable.is_empty() {
            md.push_str("\nFirst WARN/ERROR lines:\n\n```text\n");
            for l in &log.notable {
                md.push_str(l);
                md.push('\n');
            }
            md.push_str("```\n");
        }
        md
    }
}

/// At most `max` samples, evenly spaced, the first and last included.
fn thin(samples: &[Sample], max: usize) -> Vec<&Sample> {
    if samples.len() <= max || max < 2 {
        return samples.iter().collect();
    }
    let step = (samples.len() - 1) as f64 / (max - 1) as f64;
    (0..max)
        .map(|i| &samples[((i as f64 * step).round() as usize).min(samples.len() - 1)])
        .collect()
}

/// The first and last thirds of the load's samples.
fn thirds(samples: &[Sample]) -> Option<(Vec<&Sample>, Vec<&Sample>)> {
    let load: Vec<&Sample> = samples.iter().filter(|s| s.phase == "load").collect();
    if load.len() < 3 {
        return None;
    }
    let third = load.len() / 3;
    Some((load[..third].to_vec(), load[load.len() - third..].to_vec()))
}

fn verdicts(samples: &[Sample], totals: &BTreeMap<Kind, KindTotals>, end: &End) -> Verdicts {
    let mut all = Vec::new();
    let max = |v: &[&Sample], f: fn(&Sample) -> u64| v.iter().map(|s| f(s)).max().unwrap_or(0);

    all.push(match thirds(samples) {
        Some((first, last)) => {
            let (a, b) = (max(&first, |s| s.rss_kib), max(&last, |s| s.rss_kib));
            let bound = (a as f64 * RSS_FACTOR) as u64 + RSS_SLACK_KIB;
            Verdict {
                name: "RSS flat",
                rule: "max RSS of the load's last third ≤ max of its first third × 1.10 + 2 MiB",
                passed: b <= bound,
                detail: format!(
                    "first third max {a} KiB, last third max {b} KiB, bound {bound} KiB"
                ),
            }
        }
        None => too_few("RSS flat"),
    });
    all.push(match thirds(samples) {
        Some((first, last)) => {
            let (a, b) = (max(&first, |s| s.fds), max(&last, |s| s.fds));
            let bound = a + (a / 4).max(16);
            Verdict {
                name: "descriptors not growing",
                rule: "max fds of the load's last third ≤ max of its first third + max(25 %, 16)",
                passed: b <= bound,
                detail: format!("first third max {a}, last third max {b}, bound {bound}"),
            }
        }
        None => too_few("descriptors not growing"),
    });
    all.push(Verdict {
        name: "descriptors back to baseline",
        rule: "fds once the load stopped and the gateway drained ≤ baseline + 2",
        passed: end.end.fds <= end.baseline.fds + FD_SLACK && end.end.conns_active == 0,
        detail: format!(
            "baseline {} (idle at start {}), end {}, connections still active {}",
            end.baseline.fds, end.idle.fds, end.end.fds, end.end.conns_active
        ),
    });
    let unexpected: u64 = totals.values().map(|t| t.unexpected).sum();
    let outcomes: u64 = totals
        .values()
        .map(|t| t.success + t.refusal + t.unexpected)
        .sum();
    all.push(Verdict {
        name: "no unexpected errors",
        rule: "every client ended as an expected success or refusal",
        passed: unexpected == 0 && outcomes > 0,
        detail: format!("{unexpected} unexpected of {outcomes} outcomes"),
    });
    let reloads = totals.get(&Kind::Reload).map_or(0, |t| t.success);
    all.push(Verdict {
        name: "reloads applied",
        rule: "every SIGHUP applied (new name served, old refused) and logged as a complete reload",
        passed: end.reloads_sent > 0
            && reloads == end.reloads_sent
            && end.log.reloaded == end.reloads_sent
            && end.log.reload_partial == 0
            && end.log.reload_rejected == 0,
        detail: format!(
            "{} sent, {reloads} checked, {} logged complete",
            end.reloads_sent, end.log.reloaded
        ),
    });
    all.push(Verdict {
        name: "alive",
        rule: "the gateway never exited and answers /healthz 200 after the load",
        passed: end.exited_early.is_none() && end.healthz.starts_with("HTTP/1.1 200"),
        detail: format!(
            "/healthz: {}{}",
            end.healthz,
            end.exited_early
                .as_ref()
                .map_or(String::new(), |s| format!("; exited early: {s}"))
        ),
    });
    all.push(Verdict {
        name: "clean log and stop",
        rule: "no ERROR line, no panic; exit status 0 after SIGTERM",
        passed: end.log.error == 0 && end.log.panics == 0 && end.exit_success,
        detail: format!(
            "{} ERROR, {} panics, {} WARN; {}",
            end.log.error, end.log.panics, end.log.warn, end.exit
        ),
    });
    Verdicts { all }
}

fn too_few(name: &'static str) -> Verdict {
    Verdict {
        name,
        rule: "at least 3 samples under load",
        passed: false,
        detail: "too few samples".to_owned(),
    }
}
