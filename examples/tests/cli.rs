//! The binaries as users run them: `lnm-gateway --check`, `export-dns`, a running level with
//! SIGHUP reload and SIGTERM drain (the `purdue-demo` quick start is tested in `demo.rs`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{GATEWAY, Running, dns_a, free_port, repo, spawn_logged, spawn_logged_command};

fn temp(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("lnm-cli-{}-{name}", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(GATEWAY).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_prints_the_effective_config() {
    let config = repo("examples/configs/level3.yaml");
    let (code, out, err) = run(&["--config", config.to_str().unwrap(), "--check"]);
    assert_eq!(code, 0, "{err}");
    for expected in [
        "parentIpAddr",
        "broker.l3.contoso.local:8883",
        "shutdownDrain: 30s",
        "answerIpv4",
    ] {
        assert!(out.contains(expected), "{expected} missing from\n{out}");
    }
}

#[test]
fn an_azure_lnm_custom_resource_runs_unchanged() {
    let config = repo("lnm-policy/testdata/azure-level4.yaml");
    let (code, out, err) = run(&["--config", config.to_str().unwrap(), "--check"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("enableArcDomains: true"), "{out}");
    assert!(err.contains("`image` has no meaning for lnm"), "{err}");
}

#[test]
fn bad_configs_exit_2_naming_file_key_and_line() {
    let bad = temp(
        "bad.yaml",
        "level: 3\nallowList:\n  domains:\n    - {destinationUrl: a.example, destinationType: external, port: 1}\n",
    );
    let (code, _, err) = run(&["--config", bad.to_str().unwrap(), "--check"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("bad.yaml") && err.contains("`port`") && err.contains("line 4"),
        "{err}"
    );
    let looped = temp(
        "loop.yaml",
        "parentIpAddr: 127.0.0.1\nlisteners: [{bind: \"127.0.0.1:8443\"}]\nparentPort: 8443\n",
    );
    let (code, _, err) = run(&["--config", looped.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("static loop"), "{err}");
    let (code, _, err) = run(&["--config", "/nonexistent/lnm.yaml", "--check"]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/lnm.yaml"), "{err}");
}

#[test]
fn export_dns_for_the_level_below() {
    let config = repo("examples/configs/level3.yaml");
    let (code, out, err) = run(&[
        "export-dns",
        "--config",
        config.to_str().unwrap(),
        "--format",
        "dnsmasq",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("address=/*.blob.core.windows.net/10.3.0.1"),
        "{out}"
    );
    assert!(
        out.contains("host-record=management.azure.com,10.3.0.1"),
        "{out}"
    );
    let (code, out, _) = run(&[
        "export-dns",
        "--config",
        config.to_str().unwrap(),
        "--format",
        "coredns",
    ]);
    assert_eq!(code, 0);
    assert!(
        out.contains(r#"match "^([a-z0-9_-]+\.)+blob\.core\.windows\.net\.$""#),
        "{out}"
    );
}

fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

#[test]
fn a_running_level_reloads_on_sighup_and_drains_on_sigterm() {
    let (proxy, dns, admin) = (free_port(), free_port(), free_port());
    let yaml = |name: &str| {
        format!(
            "level: 4\nlogLevel: info\nallowList:\n  domains:\n    - {{destinationUrl: {name}, destinationType: external}}\n\
             listeners: [{{bind: \"127.0.0.1:{proxy}\", protocol: tls}}]\n\
             dns: {{bind: \"127.0.0.1:{dns}\", answerIpv4: [127.0.0.1]}}\n\
             admin: {{bind: \"127.0.0.1:{admin}\"}}\ntimeouts: {{shutdownDrain: 2s}}\n"
        )
    };
    let config = temp("running.yaml", &yaml("first.example"));
    let (mut child, log) = spawn_logged(&["--config", config.to_str().unwrap()]);
    let admin_addr: SocketAddr = format!("127.0.0.1:{admin}").parse().unwrap();
    let dns_addr: SocketAddr = format!("127.0.0.1:{dns}").parse().unwrap();
    let started = Instant::now();
    while !http_get(admin_addr, "/readyz").is_some_and(|r| r.starts_with("HTTP/1.1 200")) {
        assert!(started.elapsed() < Duration::from_secs(10), "never ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(dns_a(dns_addr, "first.example"), ["127.0.0.1"]);
    assert!(dns_a(dns_addr, "second.example").is_empty());
    let metrics = http_get(admin_addr, "/metrics").unwrap();
    assert!(
        metrics.contains("lnm_dns_queries_total{outcome=\"rewritten\"} 1"),
        "{metrics}"
    );

    let pid = child.0.id().to_string();
    std::fs::write(&config, yaml("second.example")).unwrap();
    Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    let started = Instant::now();
    while dns_a(dns_addr, "second.example").is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "reload not applied"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // A broken file is rejected and the running configuration stays.
    std::fs::write(&config, "allowList: [").unwrap();
    Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(dns_a(dns_addr, "second.example"), ["127.0.0.1"]);

    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{status}");
    let log = log.join().unwrap().join("\n");
    assert!(log.contains("configuration reloaded"), "{log}");
    assert!(
        log.contains("reload rejected, the running configuration stays"),
        "{log}"
    );
    assert!(log.contains("stopped"), "{log}");
}

#[test]
fn descriptor_exhaustion_backs_off_and_recovers() {
    use std::io::{Read, Write};
    let proxy = free_port();
    let config = temp(
        "fds.yaml",
        &format!(
            "level: 4\nallowList:\n  domains:\n    - {{destinationUrl: a.example, destinationType: external}}\n\
             listeners: [{{bind: \"127.0.0.1:{proxy}\", protocol: tls}}]\n"
        ),
    );
    // 48 descriptors: a handful for the runtime, the rest for connections.
    let script = format!(
        "ulimit -n 48 && exec {GATEWAY} --config {}",
        config.display()
    );
    let mut shell = Command::new("sh");
    shell.args(["-c", &script]);
    let (mut child, log) = spawn_logged_command(shell);
    let addr: SocketAddr = format!("127.0.0.1:{proxy}").parse().unwrap();
    let started = Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never listened"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Hold more connections than the gateway has descriptors (half a hello each).
    let mut held = Vec::new();
    for _ in 0..80 {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(&[22, 3, 1]).unwrap();
        held.push(s);
    }
    std::thread::sleep(Duration::from_millis(500));
    drop(held);
    // Descriptors free up: the gateway serves again (a denied name gets its alert).
    let started = Instant::now();
    let answered = loop {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut hello = vec![22, 3, 1, 0, 0];
        // A ClientHello without extensions: no SNI, so the answer is unrecognized_name.
        let body: Vec<u8> = [
            vec![3, 3],
            vec![7; 32],
            vec![0, 0, 2, 0x13, 0x01, 1, 0, 0, 0],
        ]
        .concat();
        let msg: Vec<u8> = [vec![1, 0, 0, body.len() as u8], body].concat();
        hello[3..5].copy_from_slice(&(msg.len() as u16).to_be_bytes());
        hello.extend_from_slice(&msg);
        s.write_all(&hello).unwrap();
        let mut reply = [0u8; 7];
        if s.read_exact(&mut reply).is_ok() {
            break reply;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "never served again"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(answered, [21, 3, 3, 0, 2, 2, 112]);
    Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    let _ = child.0.wait();
    let log = log.join().unwrap().join("\n");
    assert!(log.contains("backing off"), "{log}");
}

#[test]
fn nine_thousand_concurrent_connections() {
    use std::io::{Read, Write};
    // This test holds 9,000 client sockets itself: raise its own soft descriptor limit.
    let (_, hard) = rlimit::Resource::NOFILE.get().unwrap();
    if hard < 9_500 {
        assert!(
            std::env::var_os("CI").is_none(),
            "the descriptor hard limit {hard} is too low"
        );
        eprintln!("SKIPPED nine_thousand_concurrent_connections: descriptor hard limit {hard}");
        return;
    }
    rlimit::Resource::NOFILE.set(hard, hard).unwrap();
    let proxy = free_port();
    let config = temp(
        "9k.yaml",
        &format!(
            "level: 4\nlogLevel: warn\nallowList:\n  domains:\n    - {{destinationUrl: a.example, destinationType: external}}\n\
             listeners: [{{bind: \"127.0.0.1:{proxy}\", protocol: tls}}]\n\
             limits: {{maxConnections: 20000, maxConnectionsPerSource: 20000}}\ntimeouts: {{sniff: 60s}}\n"
        ),
    );
    let script = format!(
        "ulimit -n {hard} && exec {GATEWAY} --config {}",
        config.display()
    );
    let child = Running(Command::new("sh").args(["-c", &script]).spawn().unwrap());
    let addr: SocketAddr = format!("127.0.0.1:{proxy}").parse().unwrap();
    let started = Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never listened"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut held = Vec::with_capacity(9_000);
    let opening = Instant::now();
    for i in 0..9_000 {
        // Pace the opening so the accept queue never overflows (a dropped SYN costs 1 s).
        if i % 100 == 99 {
            std::thread::sleep(Duration::from_millis(40));
        }
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(&[22, 3, 1]).unwrap();
        held.push(s);
    }
    eprintln!("9,000 connections opened in {:?}", opening.elapsed());
    // All still open (nothing to read, no reset) and the gateway still answers a new client.
    std::thread::sleep(Duration::from_millis(500));
    for s in held.iter().step_by(97) {
        s.set_nonblocking(true).unwrap();
        let mut b = [0u8; 1];
        let r = (&*s).read(&mut b);
        assert!(
            matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "{r:?}"
        );
    }
    let mut fresh = std::net::TcpStream::connect(addr).unwrap();
    fresh
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    fresh.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let mut reply = [0u8; 7];
    fresh.read_exact(&mut reply).unwrap();
    assert_eq!(
        reply,
        [21, 3, 3, 0, 2, 2, 10],
        "unexpected_message alert for a non-TLS first flight (RFC 8446 section 5)"
    );
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", child.0.id())).unwrap_or_default();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS"))
        .unwrap_or("VmRSS: ?")
        .to_owned();
    eprintln!("gateway with 9,000 connections held: {rss}");
    let closing = Instant::now();
    drop(held);
    drop(child);
    eprintln!("closed in {:?}", closing.elapsed());
}

#[test]
fn workers_are_threads_with_their_own_sockets() {
    let (proxy, admin) = (free_port(), free_port());
    let config = temp(
        "workers.yaml",
        &format!(
            "level: 4\nworkers: 1\nallowList:\n  domains:\n    - {{destinationUrl: a.example, destinationType: external}}\n\
             listeners: [{{bind: \"127.0.0.1:{proxy}\", protocol: tls}}]\n\
             admin: {{bind: \"127.0.0.1:{admin}\"}}\n"
        ),
    );
    // The flag overrides the file's `workers`.
    let mut child = Running(
        Command::new(GATEWAY)
            .args(["--config", config.to_str().unwrap(), "--workers", "3"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let admin_addr: SocketAddr = format!("127.0.0.1:{admin}").parse().unwrap();
    let started = Instant::now();
    while !http_get(admin_addr, "/readyz").is_some_and(|r| r.starts_with("HTTP/1.1 200")) {
        assert!(started.elapsed() < Duration::from_secs(10), "never ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = child.0.id();
    let threads: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_owned())
        .collect();
    for worker in ["lnm-worker-1", "lnm-worker-2"] {
        assert!(threads.iter().any(|t| t == worker), "{threads:?}");
    }
    assert!(!threads.iter().any(|t| t == "lnm-worker-3"), "{threads:?}");
    // Three listening sockets share the proxy port, one per worker.
    let tcp = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let port = format!(":{proxy:04X}");
    let listening = tcp
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields[1].ends_with(&port) && fields[3] == "0A"
        })
        .count();
    assert_eq!(listening, 3);
    let _ = child.0.kill();

    let (code, _, err) = run(&["--config", config.to_str().unwrap(), "--workers", "0"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--workers"), "{err}");
    let bad = temp("workers-0.yaml", "level: 4\nworkers: 0\n");
    let (code, _, err) = run(&["--config", bad.to_str().unwrap(), "--check"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("workers"), "{err}");
}
