//! The container image (`scripts/build-image.sh`, built offline from the binary): its archive
//! is an OCI layout that `podman load` accepts, its process is not root, has no capability and
//! no shell, `/readyz` answers, and SIGTERM drains and exits 0.
//!
//! The image is built here from the test build of `lnm-gateway` (the script is the same for the
//! release binary, whose image `scripts/build-image.sh` keeps below 30 MB); the part of the
//! image that is not the binary is checked to stay small. Running the image needs root and
//! podman with runc (installed by `scripts/install-test-deps.sh`); without root the run is
//! skipped with a message — except under CI (`CI` set), which is root.

mod common;
use common::repo;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const GATEWAY: &str = env!("CARGO_BIN_EXE_lnm-gateway");

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Builds the image archive; returns its path and the script's report.
fn build(dir: &Path, image: &str) -> (PathBuf, String) {
    let archive = dir.join("image.oci.tar");
    let out = run(
        repo("scripts/build-image.sh").to_str().unwrap(),
        &[
            "--binary",
            GATEWAY,
            "--ref",
            image,
            "--output",
            archive.to_str().unwrap(),
            "--max-size-mb",
            "0",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    (archive, text(&out))
}

fn number_after(report: &str, label: &str) -> u64 {
    let start = report
        .find(label)
        .unwrap_or_else(|| panic!("{label} in {report}"))
        + label.len();
    report[start..]
        .trim_start()
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lnm-image-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_offline_build_writes_an_oci_archive() {
    let dir = temp_dir("layout");
    let (archive, report) = build(&dir, "localhost/lnm-gateway:layout-test");
    let listing = text(&run("tar", &["-tf", archive.to_str().unwrap()]));
    for entry in [
        "./oci-layout",
        "./index.json",
        "./manifest.json",
        "./blobs/sha256/",
    ] {
        assert!(listing.contains(entry), "{entry} in {listing}");
    }
    // What is not the binary (libc, the loader, /etc/passwd) stays small: the release image is
    // the release binary plus this.
    let overhead = number_after(&report, "uncompressed:") - number_after(&report, "binary:");
    assert!(
        overhead < 8_000_000,
        "{overhead} bytes beside the binary: {report}"
    );
    // Reproducible: the same binary gives the same archive.
    let again = dir.join("again.tar");
    std::fs::copy(&archive, &again).unwrap();
    build(&dir, "localhost/lnm-gateway:layout-test");
    assert!(std::fs::read(&archive).unwrap() == std::fs::read(&again).unwrap());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Kills and removes the container and the image, however the test ends.
struct Cleanup {
    container: String,
    image: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = run("podman", &["rm", "-f", &self.container]);
        let _ = run("podman", &["rmi", "-f", &self.image]);
    }
}

#[test]
fn the_image_runs_as_non_root_answers_readyz_and_drains_on_sigterm() {
    if text(&run("id", &["-u"])).trim() != "0" {
        assert!(
            std::env::var_os("CI").is_none(),
            "the image smoke test needs root (podman, nsenter), and CI is root"
        );
        eprintln!("SKIPPED the image smoke test: needs root (podman, nsenter)");
        return;
    }
    for (tool, package) in [
        ("podman", "podman"),
        ("runc", "runc"),
        ("nsenter", "util-linux"),
        ("curl", "curl"),
    ] {
        let found = std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()));
        assert!(
            found,
            "the image smoke test drives `{tool}`, which is not on PATH: run `scripts/test.sh` \
             (it installs the test tools, as root) or `apt-get install {package}`"
        );
    }
    let dir = temp_dir("smoke");
    let tag = format!("smoke-{}", std::process::id());
    let image = format!("localhost/lnm-gateway:{tag}");
    let container = format!("lnm-smoke-{}", std::process::id());
    let _cleanup = Cleanup {
        container: container.clone(),
        image: image.clone(),
    };
    let (archive, _) = build(&dir, &image);
    let out = run("podman", &["load", "-i", archive.to_str().unwrap()]);
    assert!(
        out.status.success() && text(&out).contains(&image),
        "{}",
        text(&out)
    );

    let inspect = |format: &str| {
        text(&run(
            "podman",
            &["image", "inspect", "--format", format, &image],
        ))
    };
    assert_eq!(inspect("{{.Config.User}}").trim(), "65532:65532");
    assert_eq!(
        inspect("{{.Config.Entrypoint}}").trim(),
        "[/usr/local/bin/lnm-gateway]"
    );
    assert!(inspect("{{.Config.Labels}}").contains("org.opencontainers.image.source"));

    let config = dir.join("config");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(
        config.join("config.yaml"),
        "level: 4\nallowList:\n  domains: [{destinationUrl: example.com, destinationType: external}]\n\
         listeners: [{bind: \"0.0.0.0:8443\", protocol: tls, destinationPort: 443}]\n\
         admin: {bind: \"0.0.0.0:9100\"}\ntimeouts: {shutdownDrain: 2s}\n",
    )
    .unwrap();
    run("chmod", &["-R", "a+rX", dir.to_str().unwrap()]);
    let volume = format!("{}:/etc/lnm:ro", config.display());
    // runc (Debian's) is the runtime this test is known to work with; rlimits are set below the
    // machine's hard limits so that no capability is needed to set them.
    let podman = |args: &[&str]| run("podman", &[&["--runtime", "runc"], args].concat());
    // No shell in the image.
    let out = podman(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
        "--entrypoint",
        "/bin/sh",
        &image,
        "-c",
        "true",
    ]);
    assert!(
        !out.status.success(),
        "the image has a shell: {}",
        text(&out)
    );
    let out = podman(&[
        "run",
        "-d",
        "--name",
        &container,
        "--network",
        "none",
        "--read-only",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--ulimit",
        "nofile=4096:4096",
        "--ulimit",
        "nproc=4096:4096",
        "-v",
        &volume,
        &image,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let pid = text(&podman(&[
        "inspect",
        "--format",
        "{{.State.Pid}}",
        &container,
    ]))
    .trim()
    .to_owned();
    assert_ne!(
        pid,
        "0",
        "the container runs: {}",
        text(&podman(&["logs", &container]))
    );

    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .unwrap()
            .to_owned()
    };
    assert!(
        line("Uid:")
            .split_whitespace()
            .skip(1)
            .all(|uid| uid == "65532"),
        "{}",
        line("Uid:")
    );
    assert!(
        line("CapEff:").ends_with("0000000000000000"),
        "{}",
        line("CapEff:")
    );

    let started = Instant::now();
    loop {
        let out = run(
            "nsenter",
            &[
                "-t",
                &pid,
                "-n",
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "http://127.0.0.1:9100/readyz",
            ],
        );
        if text(&out).trim() == "200" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "never ready: {}",
            text(&podman(&["logs", &container]))
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    assert!(
        podman(&["kill", "--signal", "TERM", &container])
            .status
            .success()
    );
    let code = text(&podman(&["wait", &container]));
    let logs = text(&podman(&["logs", &container]));
    assert_eq!(code.trim(), "0", "SIGTERM drains and exits 0: {logs}");
    assert!(
        logs.contains("draining") && logs.contains("stopped"),
        "{logs}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Stops the private containerd started by the test.
struct Containerd(std::process::Child, PathBuf);

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

/// K3s imports images with its containerd (`k3s ctr images import`): a private containerd
/// (Debian's) imports the archive under the image's name.
#[test]
fn containerd_imports_the_archive_as_k3s_does() {
    if text(&run("id", &["-u"])).trim() != "0" {
        assert!(
            std::env::var_os("CI").is_none(),
            "the containerd import test needs root, and CI is root"
        );
        eprintln!("SKIPPED the containerd import test: needs root");
        return;
    }
    for tool in ["containerd", "ctr"] {
        let found = std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()));
        assert!(
            found,
            "this test drives `{tool}`, which is not on PATH: run `scripts/test.sh` (it installs \
             the test tools, as root) or `apt-get install containerd`"
        );
    }
    let dir = temp_dir("containerd");
    let image = format!("ghcr.io/lnm-rs/lnm-gateway:import-{}", std::process::id());
    let (archive, _) = build(&dir, &image);
    let socket = dir.join("containerd.sock");
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "version = 2\nroot = \"{0}/root\"\nstate = \"{0}/state\"\n[grpc]\n  address = \"{1}\"\n",
            dir.display(),
            socket.display()
        ),
    )
    .unwrap();
    let daemon = Command::new("containerd")
        .arg("--config")
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("containerd starts");
    let _daemon = Containerd(daemon, dir.clone());
    let address = socket.to_str().unwrap().to_owned();
    let started = Instant::now();
    while !run("ctr", &["-a", &address, "version"]).status.success() {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "containerd never answered"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = run(
        "ctr",
        &[
            "-a",
            &address,
            "images",
            "import",
            archive.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let listed = text(&run("ctr", &["-a", &address, "images", "ls", "-q"]));
    assert!(listed.lines().any(|l| l == image), "{image} in {listed}");
}
