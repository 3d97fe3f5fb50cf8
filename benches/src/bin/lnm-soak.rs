//! `lnm-soak`: runs one lnm level (the real `lnm-gateway` binary) under mixed load for a set
//! time and writes a report (see `lnm_benches::soak`, and `benches/soak.sh`).
//!
//! ```sh
//! lnm-soak --gateway target/release/lnm-gateway --duration 10m --out soak.md --csv soak.csv
//! ```
//!
//! Exits 0 when every verdict held, 1 when one did not, 2 when the run could not be set up.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use lnm_benches::soak::{self, SoakConfig};

/// Soak test of one lnm level under mixed load.
#[derive(Debug, Parser)]
#[command(name = "lnm-soak", about)]
struct Args {
    /// The `lnm-gateway` binary.
    #[arg(long)]
    gateway: PathBuf,
    /// Load time after the warm-up (e.g. `10m`, `60s`).
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Warm-up before the baseline.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// A factor on every default rate (about 140 connections/s and 160 queries/s at 1).
    #[arg(long, default_value_t = 1.0)]
    rate_scale: f64,
    /// One kind's rate per second, e.g. `dns_unlisted=0` (repeatable; before `--rate-scale`).
    #[arg(long = "rate", value_parser = parse_rate)]
    rates: Vec<(soak::Kind, f64)>,
    /// How often the gateway is sampled.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    sample_interval: Duration,
    /// How often the configuration is rewritten and SIGHUP sent.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    reload_interval: Duration,
    /// The gateway's sniff timeout.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    sniff_timeout: Duration,
    /// The gateway's log filter (`RUST_LOG`).
    #[arg(long, default_value = "info")]
    gateway_log: String,
    /// The gateway's `--workers` (default: its own default).
    #[arg(long)]
    gateway_workers: Option<usize>,
    /// Where the gateway's configuration and log go (default: a new temporary directory).
    #[arg(long)]
    workdir: Option<PathBuf>,
    /// The Markdown report (default: stdout).
    #[arg(long)]
    out: Option<PathBuf>,
    /// The samples as CSV.
    #[arg(long)]
    csv: Option<PathBuf>,
    /// The report's title.
    #[arg(long, default_value = "lnm soak")]
    title: String,
    /// A note for the report (e.g. what else the machine was doing).
    #[arg(long)]
    note: Option<String>,
    /// Sample rows in the Markdown table at most.
    #[arg(long, default_value_t = 60)]
    max_rows: usize,
    /// No progress lines on stderr.
    #[arg(long)]
    quiet: bool,
}

/// `kind=rate`, the kind as the report names it.
fn parse_rate(text: &str) -> Result<(soak::Kind, f64), String> {
    let (name, rate) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: expected kind=rate"))?;
    let kind = soak::Kind::ALL
        .into_iter()
        .find(|k| k.as_str() == name && soak::Rates::default().get(*k) > 0.0)
        .ok_or_else(|| format!("{name:?}: not a kind of load"))?;
    let rate = rate.parse::<f64>().map_err(|e| format!("{rate:?}: {e}"))?;
    Ok((kind, rate))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let mut config = SoakConfig::new(args.gateway);
    config.duration = args.duration;
    config.warmup = args.warmup;
    config.rate_scale = args.rate_scale;
    for (kind, rate) in args.rates {
        config.rates.set(kind, rate);
    }
    config.sample_interval = args.sample_interval;
    config.reload_interval = args.reload_interval;
    config.sniff_timeout = args.sniff_timeout;
    config.gateway_log = args.gateway_log;
    config.gateway_workers = args.gateway_workers;
    config.workdir = args.workdir;
    config.verbose = !args.quiet;
    let report = match soak::run(config).await {
        Ok(report) => report,
        Err(e) => {
            eprintln!("lnm-soak: {e}");
            return ExitCode::from(2);
        }
    };
    let mut markdown = report.markdown(&args.title, args.max_rows);
    if let Some(note) = &args.note
        && let Some(end) = markdown.find("\n\n")
    {
        markdown.insert_str(end + 2, &format!("{note}\n\n"));
    }
    let written = match &args.out {
        Some(path) => {
            std::fs::write(path, &markdown).map_err(|e| format!("{}: {e}", path.display()))
        }
        None => {
            #[allow(clippy::print_stdout)]
            {
                print!("{markdown}");
            }
            Ok(())
        }
    };
    let written = written.and_then(|()| match &args.csv {
        Some(path) => {
            std::fs::write(path, report.csv()).map_err(|e| format!("{}: {e}", path.display()))
        }
        None => Ok(()),
    });
    if let Err(e) = written {
        eprintln!("lnm-soak: cannot write the report: {e}");
        return ExitCode::from(2);
    }
    for v in &report.verdicts.all {
        eprintln!(
            "lnm-soak: {:<30} {}  {}",
            v.name,
            if v.passed { "pass" } else { "FAIL" },
            v.detail
        );
    }
    eprintln!("lnm-soak: gateway files in {}", report.workdir.display());
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
