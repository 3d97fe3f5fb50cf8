//! Proof of isolation with network namespaces: four hosts — the cloud, the level-4 gateway,
//! the level-3 gateway and a level-2 host — joined by veth pairs, each level seeing only its
//! neighbours. Level 2 has no route to the cloud: it reaches the origin only through the lnm
//! chain (DNS at level 3, proxy at level 3 then level 4), and an unlisted name fails.
//!
//! ```text
//!  lnm-l2 10.23.0.2 ── 10.23.0.1 lnm-l3 10.34.0.2 ── 10.34.0.1 lnm-l4 10.100.0.2 ── 10.100.0.1 lnm-cloud
//! ```
//!
//! Needs root (`ip netns`, veth), iproute2, curl, openssl and dig (`scripts/install-test-deps.sh`).
//! It lives in this package because it runs the real `lnm-gateway` binary inside the
//! namespaces. Without root it says so and does nothing — except under CI (`CI` set), where a
//! missing root is a failure, so the proof cannot silently vanish.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const GATEWAY: &str = env!("CARGO_BIN_EXE_lnm-gateway");
const NAMESPACES: [&str; 4] = ["lnm-cloud", "lnm-l4", "lnm-l3", "lnm-l2"];

fn sh(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", args.join(" ")))
}

fn ok(args: &[&str]) {
    let out = sh(args);
    assert!(
        out.status.success(),
        "{} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn in_ns(ns: &str, args: &[&str]) -> Output {
    let mut all = vec!["ip", "netns", "exec", ns];
    all.extend_from_slice(args);
    sh(&all)
}

/// Tears everything down, also when the test fails half-way.
struct Lab {
    dir: PathBuf,
    children: Vec<Child>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in NAMESPACES {
            let _ = sh(&["ip", "netns", "del", ns]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn link(lab_a: &str, ip_a: &str, lab_b: &str, ip_b: &str, name: &str) {
    let (a, b) = (format!("{name}a"), format!("{name}b"));
    ok(&["ip", "link", "add", &a, "type", "veth", "peer", "name", &b]);
    ok(&["ip", "link", "set", &a, "netns", lab_a]);
    ok(&["ip", "link", "set", &b, "netns", lab_b]);
    ok(&["ip", "-n", lab_a, "addr", "add", ip_a, "dev", &a]);
    ok(&["ip", "-n", lab_b, "addr", "add", ip_b, "dev", &b]);
    ok(&["ip", "-n", lab_a, "link", "set", &a, "up"]);
    ok(&["ip", "-n", lab_b, "link", "set", &b, "up"]);
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn spawn_in(lab: &mut Lab, ns: &str, args: &[&str], log: &str) {
    let log = std::fs::File::create(lab.dir.join(log)).unwrap();
    let child = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    lab.children.push(child);
}

fn wait_port(ns: &str, addr: &str) {
    let started = Instant::now();
    loop {
        let out = in_ns(ns, &["ss", "-Hltn", "src", addr]);
        if !String::from_utf8_lossy(&out.stdout).trim().is_empty() {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{addr} never listened in {ns}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn level_2_reaches_the_cloud_only_through_the_lnm_chain() {
    if sh(&["id", "-u"]).stdout != b"0\n" {
        assert!(
            std::env::var_os("CI").is_none(),
            "the isolation proof needs root, and CI is root"
        );
        eprintln!(
            "SKIPPED level_2_reaches_the_cloud_only_through_the_lnm_chain: needs root (ip netns)"
        );
        return;
    }
    for ns in NAMESPACES {
        let _ = sh(&["ip", "netns", "del", ns]);
    }
    let dir = std::env::temp_dir().join(format!("lnm-isolation-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut lab = Lab {
        dir: dir.clone(),
        children: Vec::new(),
    };
    for ns in NAMESPACES {
        ok(&["ip", "netns", "add", ns]);
        ok(&["ip", "-n", ns, "link", "set", "lo", "up"]);
    }
    link(
        "lnm-cloud",
        "10.100.0.1/24",
        "lnm-l4",
        "10.100.0.2/24",
        "lnmc",
    );
    link("lnm-l4", "10.34.0.1/24", "lnm-l3", "10.34.0.2/24", "lnm4");
    link("lnm-l3", "10.23.0.1/24", "lnm-l2", "10.23.0.2/24", "lnm3");

    // The cloud: an HTTPS origin with a self-signed certificate for the name.
    let key = dir.join("key.pem");
    let cert = dir.join("cert.pem");
    ok(&[
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=management.azure.com",
        "-addext",
        "subjectAltName=DNS:management.azure.com,DNS:evil.example.com",
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        cert.to_str().unwrap(),
    ]);
    spawn_in(
        &mut lab,
        "lnm-cloud",
        &[
            "openssl",
            "s_server",
            "-accept",
            "10.100.0.1:443",
            "-cert",
            cert.to_str().unwrap(),
            "-key",
            key.to_str().unwrap(),
            "-www",
            "-quiet",
        ],
        "origin.log",
    );

    let l4 = write(
        &dir,
        "l4.yaml",
        "level: 4\nallowList:\n  domains:\n    - {destinationUrl: management.azure.com, destinationType: external}\n\
         listeners: [{bind: \"10.34.0.1:443\", protocol: tls}]\n\
         resolver:\n  hosts: {management.azure.com: 10.100.0.1, evil.example.com: 10.100.0.1}\n",
    );
    let l3 = write(
        &dir,
        "l3.yaml",
        "level: 3\nparentIpAddr: 10.34.0.1\nallowList:\n  domains:\n    - {destinationUrl: management.azure.com, destinationType: external}\n\
         \x20 sourceIpRange: [{addressPrefix: 10.23.0.0, prefixLen: 24}]\n\
         listeners: [{bind: \"10.23.0.1:443\", protocol: tls}]\n\
         dns: {bind: \"10.23.0.1:53\", answerIpv4: [10.23.0.1]}\n",
    );
    spawn_in(
        &mut lab,
        "lnm-l4",
        &[GATEWAY, "--config", l4.to_str().unwrap()],
        "l4.log",
    );
    spawn_in(
        &mut lab,
        "lnm-l3",
        &[GATEWAY, "--config", l3.to_str().unwrap()],
        "l3.log",
    );
    wait_port("lnm-cloud", "10.100.0.1:443");
    wait_port("lnm-l4", "10.34.0.1:443");
    wait_port("lnm-l3", "10.23.0.1:443");

    // Level 2 has no route to the cloud.
    let direct = in_ns(
        "lnm-l2",
        &[
            "curl",
            "-sS",
            "--max-time",
            "3",
            "--cacert",
            cert.to_str().unwrap(),
            "https://10.100.0.1/",
        ],
    );
    assert!(
        !direct.status.success(),
        "level 2 must not reach the cloud directly"
    );

    // Through lnm: level 3's DNS answers with level 3's gateway, the proxy chain does the rest.
    let dig = in_ns(
        "lnm-l2",
        &[
            "dig",
            "@10.23.0.1",
            "management.azure.com",
            "A",
            "+short",
            "+time=2",
            "+tries=1",
        ],
    );
    let answer = String::from_utf8_lossy(&dig.stdout).trim().to_owned();
    assert_eq!(answer, "10.23.0.1", "level 3 DNS answer");
    let resolve = format!("management.azure.com:443:{answer}");
    let curl = in_ns(
        "lnm-l2",
        &[
            "curl",
            "-sS",
            "--max-time",
            "10",
            "--cacert",
            cert.to_str().unwrap(),
            "--resolve",
            &resolve,
            "https://management.azure.com/",
        ],
    );
    let body = String::from_utf8_lossy(&curl.stdout);
    assert!(
        curl.status.success() && body.contains("s_server"),
        "through the chain: {body}\n{}\nl3: {}\nl4: {}",
        String::from_utf8_lossy(&curl.stderr),
        std::fs::read_to_string(dir.join("l3.log")).unwrap_or_default(),
        std::fs::read_to_string(dir.join("l4.log")).unwrap_or_default()
    );

    // An unlisted name: no rewrite at DNS, and refused by the proxy even when asked directly.
    let dig = in_ns(
        "lnm-l2",
        &[
            "dig",
            "@10.23.0.1",
            "evil.example.com",
            "A",
            "+time=2",
            "+tries=1",
        ],
    );
    assert!(String::from_utf8_lossy(&dig.stdout).contains("status: REFUSED"));
    let evil = in_ns(
        "lnm-l2",
        &[
            "curl",
            "-sS",
            "--max-time",
            "10",
            "--cacert",
            cert.to_str().unwrap(),
            "--resolve",
            "evil.example.com:443:10.23.0.1",
            "https://evil.example.com/",
        ],
    );
    assert!(!evil.status.success());
    let err = String::from_utf8_lossy(&evil.stderr).to_lowercase();
    assert!(err.contains("unrecognized name"), "{err}");
    // The gateway writes its log in batches (at most 100 ms after the line).
    let refusal_logged =
        |log: &str| log.contains("evil.example.com") && log.contains("not allowlisted");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let l3_log = loop {
        let log = std::fs::read_to_string(dir.join("l3.log")).unwrap_or_default();
        if refusal_logged(&log) || std::time::Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(refusal_logged(&l3_log), "{l3_log}");
}
