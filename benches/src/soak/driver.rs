//! [`run`]: set-up, warm-up, baseline, load with reloads and sampling, drain, report.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::AlertDescription;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::client::{self, GATEWAY_ANSWER, INSIDE, OUTSIDE, Outcome, Target};
use super::level::{self, Level, Ports, names};
use super::origin::{self, UPSTREAM_ANSWER};
use super::report::{End, KindTotals, Report};
use super::sample::{self, Sample};
use super::{Kind, SoakConfig, SoakError};

/// How long the gateway may take to answer `/readyz` 200 after it was started.
const READY_WITHIN: Duration = Duration::from_secs(60);
/// How long a reload may take to show (the new name resolving to the gateway).
const RELOAD_WITHIN: Duration = Duration::from_secs(30);
/// How long the gateway may take to close its last connection once the load stopped.
const DRAIN_WITHIN: Duration = Duration::from_secs(60);
/// Unexpected outcomes kept verbatim per kind.
const EXAMPLES: usize = 5;

/// What the load tasks, the reloader and the sampler share.
struct Shared {
    config: SoakConfig,
    target: Target,
    ports: Ports,
    pid: u32,
    config_path: PathBuf,
    totals: Mutex<BTreeMap<Kind, KindTotals>>,
    samples: Mutex<Vec<Sample>>,
    phase: Mutex<&'static str>,
    started: Instant,
    reloads_sent: Mutex<u64>,
}

impl Shared {
    fn with_totals<R>(&self, f: impl FnOnce(&mut BTreeMap<Kind, KindTotals>) -> R) -> R {
        let mut totals = self.totals.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut totals)
    }

    fn started(&self, kind: Kind) {
        self.with_totals(|t| t.entry(kind).or_default().started += 1);
    }

    fn skipped(&self, kind: Kind) {
        self.with_totals(|t| t.entry(kind).or_default().skipped += 1);
    }

    fn record(&self, kind: Kind, outcome: Outcome) {
        if self.config.verbose
            && let Outcome::Unexpected(what) = &outcome
        {
            eprintln!("lnm-soak: unexpected {kind}: {what}");
        }
        self.with_totals(|t| {
            let entry = t.entry(kind).or_default();
            match outcome {
                Outcome::Success => entry.success += 1,
                Outcome::Refusal => entry.refusal += 1,
                Outcome::Unexpected(what) => {
                    entry.unexpected += 1;
                    if entry.examples.len() < EXAMPLES {
                        entry.examples.push(what);
                    }
                }
            }
        });
    }

    fn set_phase(&self, phase: &'static str) {
        *self.phase.lock().unwrap_or_else(|p| p.into_inner()) = phase;
    }

    /// Samples the gateway now (a failed `/metrics` scrape is an unexpected [`Kind::Admin`]).
    async fn sample(&self) -> Sample {
        let (rss_kib, threads) = sample::proc_status(self.pid).unwrap_or((0, 0));
        let fds = sample::fd_count(self.pid).unwrap_or(0);
        self.started(Kind::Admin);
        let metrics = match sample::admin_get(self.ports.admin, "/metrics").await {
            Ok((status, body)) if status.starts_with("HTTP/1.1 200") => {
                self.record(Kind::Admin, Outcome::Success);
                sample::parse_metrics(&body)
            }
            Ok((status, _)) => {
                self.record(
                    Kind::Admin,
                    Outcome::Unexpected(format!("/metrics: {status}")),
                );
                BTreeMap::new()
            }
            Err(e) => {
                self.record(Kind::Admin, Outcome::Unexpected(format!("/metrics: {e}")));
                BTreeMap::new()
            }
        };
        let (ok, refused, errors) = self.with_totals(|t| {
            t.values().fold((0, 0, 0), |(a, b, c), k| {
                (a + k.success, b + k.refusal, c + k.unexpected)
            })
        });
        Sample {
            t: self.started.elapsed().as_secs_f64(),
            phase: *self.phase.lock().unwrap_or_else(|p| p.into_inner()),
            rss_kib,
            fds,
            threads,
            conns_allowed: sample::sum(&metrics, "lnm_connections_total", "decision=\"allow\""),
            conns_denied: sample::sum(&metrics, "lnm_connections_total", "decision=\"deny\""),
            conns_active: sample::sum(&metrics, "lnm_connections_active", ""),
            dns_queries: sample::sum(&metrics, "lnm_dns_queries_total", ""),
            ok,
            refused,
            errors,
        }
    }
}

/// Runs a soak of `config.gateway` and reports on it.
///
/// An `Err` means the run could not be set up (a socket, the binary, readiness); everything
/// that goes wrong under load is in the [`Report`], whose [`Report::passed`] says whether
/// every verdict held.
pub async fn run(config: SoakConfig) -> Result<Report, SoakError> {
    let workdir = match &config.workdir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!(
            "lnm-soak-{}-{:x}",
            std::process::id(),
            lnm_core::random_u64() & 0xffff
        )),
    };
    std::fs::create_dir_all(&workdir).map_err(|source| SoakError::Write {
        path: workdir.clone(),
        source,
    })?;
    let config_path = workdir.join("gateway.yaml");
    let log_path = workdir.join("gateway.log");

    // The origins, the upstream DNS server, the gateway's addresses.
    let pki = lnm_proxy::sim::TestPki::new(&names::CERT)?;
    let any: SocketAddr = SocketAddr::new(INSIDE, 0);
    let tls_origin = lnm_proxy::sim::tls_origin(&pki, any, "soak").await?;
    let http_origin = origin::http_origin().await?;
    let upstream_dns = origin::upstream_dns().await?;
    std::net::UdpSocket::bind((OUTSIDE, 0)).map_err(|source| SoakError::Bind {
        what: format!("{OUTSIDE} (the outsiders' source address)"),
        source,
    })?;
    let ports = Ports {
        tls: origin::free_addr(INSIDE, "the TLS listener")?,
        http: origin::free_addr(INSIDE, "the HTTP listener")?,
        dns: origin::free_addr(INSIDE, "the DNS server")?,
        admin: origin::free_addr(INSIDE, "the admin endpoint")?,
        tls_origin,
        http_origin,
        upstream_dns,
    };
    level::write_atomically(
        &config_path,
        &level::config_yaml(&ports, 0, config.sniff_timeout),
    )
    .await?;
    let mut gateway = Level::spawn(
        &config.gateway,
        &config_path,
        &log_path,
        &config.gateway_log,
        config.gateway_workers,
    )?;
    wait_ready(&mut gateway, ports.admin).await?;
    let hello = client::client_hello(pki.client.clone(), names::TLS)
        .map_err(|e| SoakError::Sim(lnm_proxy::sim::SimError::Pki(Box::new(e))))?;
    let target = Target {
        tls: ports.tls,
        http: ports.http,
        dns: ports.dns,
        connector: pki.connector(),
        hello,
    };
    let load_average_start = load_average();
    let shared = Arc::new(Shared {
        target,
        ports,
        pid: gateway.pid,
        config_path: config_path.clone(),
        totals: Mutex::new(BTreeMap::new()),
        samples: Mutex::new(Vec::new()),
        phase: Mutex::new("idle"),
        started: Instant::now(),
        reloads_sent: Mutex::new(0),
        config,
    });
    let progress = |what: &str| {
        if shared.config.verbose {
            eprintln!(
                "lnm-soak: {:>6.1}s {what}",
                shared.started.elapsed().as_secs_f64()
            );
        }
    };

    // The sampler runs from the first sample at idle to the end.
    let sampling = CancellationToken::new();
    let sampler = tokio::spawn(sampler(shared.clone(), sampling.clone()));
    let idle = shared.sample().await;

    // Warm-up: every kind of load once, so that lazily made state exists in the baseline.
    progress("warm-up");
    shared.set_phase("warmup");
    let load = Load::start(&shared, false);
    tokio::time::sleep(shared.config.warmup).await;
    load.stop().await;
    shared.set_phase("baseline");
    let baseline = drained(&shared).await;
    progress(&format!(
        "baseline: {} KiB, {} descriptors",
        baseline.rss_kib, baseline.fds
    ));

    // The load, with reloads.
    shared.set_phase("load");
    let load_started = shared.started.elapsed().as_secs_f64();
    progress("load");
    let load = Load::start(&shared, true);
    tokio::time::sleep(shared.config.duration).await;
    progress("stopping the load");
    load.stop().await;
    shared.set_phase("drained");
    let end = drained(&shared).await;
    progress(&format!(
        "drained: {} KiB, {} descriptors",
        end.rss_kib, end.fds
    ));
    sampling.cancel();
    let _ = sampler.await;

    // Still alive and healthy, then a clean stop.
    let exited_early = gateway.exited();
    let healthz = sample::admin_get(shared.ports.admin, "/healthz")
        .await
        .map(|(status, _)| status)
        .unwrap_or_else(|e| format!("no answer: {e}"));
    let (exit, log) = gateway.stop(Duration::from_secs(30)).await;
    let reloads_sent = *shared
        .reloads_sent
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let mut samples =
        std::mem::take(&mut *shared.samples.lock().unwrap_or_else(|p| p.into_inner()));
    for s in &mut samples {
        s.t -= load_started;
    }
    let totals = std::mem::take(&mut *shared.totals.lock().unwrap_or_else(|p| p.into_inner()));
    Ok(Report::new(
        &shared.config,
        samples,
        totals,
        End {
            idle,
            baseline,
            end,
            healthz,
            exited_early: exited_early.map(|s| s.to_string()),
            exit: exit.map_or_else(|| "killed after 30 s".to_owned(), |s| s.to_string()),
            exit_success: exit.is_some_and(|s| s.success()),
            log,
            reloads_sent,
            load_average: (load_average_start, load_average()),
            workdir,
        },
    ))
}

/// Polls `/readyz` until it answers 200; fails when the gateway exits or `READY_WITHIN` passes.
async fn wait_ready(gateway: &mut Level, admin: SocketAddr) -> Result<(), SoakError> {
    let started = Instant::now();
    let mut last = String::new();
    while started.elapsed() < READY_WITHIN {
        if let Some(status) = gateway.exited() {
            return Err(SoakError::NotReady {
                waited: started.elapsed(),
                detail: format!("exited {status}; log: {:?}", gateway.log_summary().tail),
            });
        }
        match sample::admin_get(admin, "/readyz").await {
            Ok((status, _)) if status.starts_with("HTTP/1.1 200") => return Ok(()),
            Ok((status, _)) => last = status,
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(SoakError::NotReady {
        waited: started.elapsed(),
        detail: format!("last answer: {last}; log: {:?}", gateway.log_summary().tail),
    })
}

/// Waits until the gateway holds no connection and its descriptors stopped falling (at most
/// `DRAIN_WITHIN`), then samples it.
async fn drained(shared: &Shared) -> Sample {
    let started = Instant::now();
    let mut previous: Option<Sample> = None;
    loop {
        let now = shared.sample().await;
        let settled = previous
            .as_ref()
            .is_some_and(|p| p.conns_active == 0 && now.conns_active == 0 && now.fds >= p.fds);
        if settled || started.elapsed() > DRAIN_WITHIN {
            shared.push(now.clone());
            return now;
        }
        previous = Some(now);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

impl Shared {
    fn push(&self, sample: Sample) {
        self.samples
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(sample);
    }
}

/// Samples every `sample_interval` until cancelled.
async fn sampler(shared: Arc<Shared>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(shared.config.sample_interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let sample = shared.sample().await;
        if shared.config.verbose && sample.phase == "load" {
            eprintln!(
                "lnm-soak: {:>6.1}s rss {} KiB, fds {}, threads {}, served {}, refused {}, active {}, dns {}, unexpected {}",
                sample.t,
                sample.rss_kib,
                sample.fds,
                sample.threads,
                sample.conns_allowed,
                sample.conns_denied,
                sample.conns_active,
                sample.dns_queries,
                sample.errors
            );
        }
        shared.push(sample);
    }
}

/// The running load: one loop per kind (and the reloader), every client a task.
struct Load {
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl Load {
    fn start(shared: &Arc<Shared>, reloads: bool) -> Load {
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        let in_flight = Arc::new(tokio::sync::Semaphore::new(shared.config.max_in_flight));
        for (kind, rate) in shared.config.rates.iter() {
            let rate = rate * shared.config.rate_scale;
            if rate <= 0.0 {
                continue;
            }
            let (shared, stop, spawner, in_flight) = (
                shared.clone(),
                stop.clone(),
                tasks.clone(),
                in_flight.clone(),
            );
            tasks.spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
                tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
                loop {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        _ = tick.tick() => {}
                    }
                    let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                        shared.skipped(kind);
                        continue;
                    };
                    shared.started(kind);
                    let shared = shared.clone();
                    spawner.spawn(async move {
                        let limit = shared.config.op_timeout
                            + if kind == Kind::TlsSlowCut {
                                shared.config.sniff_timeout
                            } else {
                                Duration::ZERO
                            };
                        let outcome = match tokio::time::timeout(limit, shared.target.run(kind))
                            .await
                        {
                            Ok(outcome) => outcome,
                            Err(_) => Outcome::Unexpected(format!("no outcome within {limit:?}")),
                        };
                        shared.record(kind, outcome);
                        drop(permit);
                    });
                }
            });
        }
        if reloads {
            let (shared, stop) = (shared.clone(), stop.clone());
            tasks.spawn(reloader(shared, stop));
        }
        Load { stop, tasks }
    }

    /// Stops starting clients and waits for those in flight.
    async fn stop(self) {
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// Every `reload_interval`: a new configuration generation, SIGHUP, and the check that it
/// was applied.
async fn reloader(shared: Arc<Shared>, stop: CancellationToken) {
    let period = shared.config.reload_interval;
    let mut tick = tokio::time::interval_at(Instant::now() + period, period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut generation = 0;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        generation += 1;
        shared.started(Kind::Reload);
        let outcome = reload(&shared, generation).await;
        shared.record(Kind::Reload, outcome);
    }
}

/// Generation `generation`: `rot-{generation}` becomes allowed, `rot-{generation - 1}` is
/// allowed no more. Success when the new name resolves to the gateway and is served, and
/// the old one is refused and forwarded.
async fn reload(shared: &Shared, generation: u64) -> Outcome {
    let yaml = level::config_yaml(&shared.ports, generation, shared.config.sniff_timeout);
    if let Err(e) = level::write_atomically(&shared.config_path, &yaml).await {
        return Outcome::Unexpected(e.to_string());
    }
    if let Err(e) = level::send_signal(shared.pid, rustix::process::Signal::HUP) {
        return Outcome::Unexpected(e.to_string());
    }
    *shared
        .reloads_sent
        .lock()
        .unwrap_or_else(|p| p.into_inner()) += 1;
    let (new, old) = (names::rotating(generation), names::rotating(generation - 1));
    let started = Instant::now();
    loop {
        match shared.target.dns(&new, INSIDE).await {
            Ok(r) if r.answers() == [GATEWAY_ANSWER] => break,
            _ if started.elapsed() > RELOAD_WITHIN => {
                return Outcome::Unexpected(format!(
                    "generation {generation}: {new} does not resolve to the gateway {RELOAD_WITHIN:?} after SIGHUP"
                ));
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let served = client::expect_served(shared.target.tls_get(&new, INSIDE, None).await, &new);
    if served != Outcome::Success {
        return Outcome::Unexpected(format!("generation {generation}, new name: {served:?}"));
    }
    let refused = client::expect_alert(
        shared.target.tls_get(&old, INSIDE, None).await,
        AlertDescription::UnrecognisedName,
    );
    if refused != Outcome::Refusal {
        return Outcome::Unexpected(format!("generation {generation}, old name: {refused:?}"));
    }
    match shared.target.dns(&old, INSIDE).await {
        Ok(r) if r.answers() == [UPSTREAM_ANSWER] => Outcome::Success,
        Ok(r) => Outcome::Unexpected(format!(
            "generation {generation}: {old} answered {:?}, not forwarded",
            r.answers()
        )),
        Err(e) => Outcome::Unexpected(format!("generation {generation}: {old}: {e}")),
    }
}

/// `/proc/loadavg`'s first three fields.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
