//! Real clients through a 3-level chain: curl, `openssl s_client` and Chromium's headless shell
//! (installed by `scripts/install-test-deps.sh`; these tests fail, rather than skip, when they
//! are missing).

use std::path::PathBuf;
use std::process::Stdio;

use lnm_core::hop::Parent;
use lnm_policy::config::ListenerProtocol;
use lnm_policy::{Allowlist, AllowlistHandle};
use lnm_proxy::ProxySettings;
use lnm_tests::*;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

fn allowlist() -> AllowlistHandle {
    Allowlist::builder()
        .external("management.azure.com")
        .unwrap()
        .external("*.blob.core.windows.net")
        .unwrap()
        .build()
        .into()
}

struct Setup {
    ca: PathBuf,
    tls: Level,
    http: Level,
}

async fn setup(tag: &str) -> Setup {
    init_logging();
    let pki = pki(&[
        "management.azure.com",
        "*.blob.core.windows.net",
        "evil.example.com",
    ]);
    let ca = std::env::temp_dir().join(format!("lnm-interop-{tag}-{}.pem", std::process::id()));
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let origin = tls_origin(&pki, "origin").await;
    let l4 = level(
        allowlist(),
        loopback_direct(),
        no_internal(),
        tls_settings(origin.port()).level(4),
    )
    .await;
    let tls = level(
        allowlist(),
        Parent::new([l4.addr]),
        no_internal(),
        tls_settings(origin.port()).level(3),
    )
    .await;
    let web = http_origin().await;
    let http_settings = |p| ProxySettings::new(ListenerProtocol::Http, p);
    let h4 = level(
        allowlist(),
        loopback_direct(),
        no_internal(),
        http_settings(web.port()),
    )
    .await;
    let http = level(
        allowlist(),
        Parent::new([h4.addr]),
        no_internal(),
        http_settings(web.port()),
    )
    .await;
    Setup { ca, tls, http }
}

async fn curl(args: &[String]) -> (bool, String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .await
        .expect("curl is installed (scripts/install-test-deps.sh)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn curl_through_the_chain() {
    lnm_tests::require_tool("curl", "curl", "curl_through_the_chain");
    let s = setup("curl").await;
    let port = s.tls.addr.port();
    let https = |name: &str, path: &str| {
        vec![
            "--cacert".to_string(),
            s.ca.display().to_string(),
            "--resolve".to_string(),
            format!("{name}:{port}:127.0.0.1"),
            format!("https://{name}:{port}{path}"),
        ]
    };
    let (ok, out, err) = curl(&https("management.azure.com", "/curl")).await;
    assert!(ok, "{err}");
    assert_eq!(out, "origin sni=management.azure.com path=/curl");
    let (ok, out, err) = curl(&https("acct.blob.core.windows.net", "/blob")).await;
    assert!(ok, "{err}");
    assert_eq!(out, "origin sni=acct.blob.core.windows.net path=/blob");

    let (ok, _, err) = curl(&https("evil.example.com", "/")).await;
    assert!(!ok);
    assert!(err.to_lowercase().contains("unrecognized name"), "{err}");

    let hport = s.http.addr.port();
    let http = |name: &str| {
        vec![
            "--resolve".to_string(),
            format!("{name}:{hport}:127.0.0.1"),
            format!("http://{name}:{hport}/"),
        ]
    };
    let (ok, out, err) = curl(&http("management.azure.com")).await;
    assert!(ok, "{err}");
    assert_eq!(
        out,
        format!("http-origin host=management.azure.com:{hport}")
    );
    let mut denied = http("evil.example.com");
    denied.extend([
        "-o".to_string(),
        "/dev/null".to_string(),
        "-w".to_string(),
        "%{http_code}".to_string(),
    ]);
    let (_, code, _) = curl(&denied).await;
    assert_eq!(code, "403");
}

async fn s_client(port: u16, name: &str, ca: &PathBuf, request: &str) -> (String, String) {
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-servername",
            name,
            "-CAfile",
        ])
        .arg(ca)
        .args(["-verify_return_error", "-quiet"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl is installed (scripts/install-test-deps.sh)");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(request.as_bytes()).await.unwrap();
    let out = tokio::time::timeout(std::time::Duration::from_secs(10), child.wait_with_output())
        .await
        .expect("s_client finished")
        .unwrap();
    drop(stdin);
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn openssl_s_client_through_the_chain() {
    lnm_tests::require_tool("openssl", "openssl", "openssl_s_client_through_the_chain");
    let s = setup("openssl").await;
    let port = s.tls.addr.port();
    let request = "GET /ossl HTTP/1.1\r\nHost: management.azure.com\r\nConnection: close\r\n\r\n";
    let (out, err) = s_client(port, "management.azure.com", &s.ca, request).await;
    assert!(
        out.ends_with("origin sni=management.azure.com path=/ossl"),
        "stdout: {out}\nstderr: {err}"
    );

    let (out, err) = s_client(port, "evil.example.com", &s.ca, request).await;
    assert!(out.is_empty(), "{out}");
    assert!(err.to_lowercase().contains("unrecognized name"), "{err}");
}

/// Chromium (headless shell) through the chain: a browser's own first flight (GREASE, an
/// X25519MLKEM768 key share, GREASE ECH) sniffed, allowed, relayed end to end, and a denied
/// name that never reaches an origin. Certificates are not what this test is about (the origin's
/// test CA is not in Chromium's store), hence `--ignore-certificate-errors`.
#[tokio::test]
async fn chromium_through_the_chain() {
    lnm_tests::require_tool(
        "chromium-headless-shell",
        "chromium-headless-shell",
        "chromium_through_the_chain",
    );
    let s = setup("chromium").await;
    let port = s.tls.addr.port();
    let profile = tempdir("chromium-profile");
    let page = |url: String| {
        let profile = profile.clone();
        async move {
            let out = Command::new("chromium-headless-shell")
                .args([
                    "--no-sandbox",
                    "--disable-gpu",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--ignore-certificate-errors",
                    &format!("--host-resolver-rules=MAP * 127.0.0.1:{port}"),
                    &format!("--user-data-dir={}", profile.display()),
                    "--dump-dom",
                    &url,
                ])
                .kill_on_drop(true)
                .output();
            let out = tokio::time::timeout(std::time::Duration::from_secs(60), out)
                .await
                .expect("chromium finished within 60 s")
                .expect("chromium-headless-shell is installed (scripts/install-test-deps.sh)");
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
    };
    let dom = page("https://management.azure.com/chromium".into()).await;
    assert!(
        dom.contains("origin sni=management.azure.com path=/chromium"),
        "the page came through the chain: {dom}"
    );
    let dom = page("https://acct.blob.core.windows.net/blob".into()).await;
    assert!(
        dom.contains("origin sni=acct.blob.core.windows.net path=/blob"),
        "{dom}"
    );
    let dom = page("https://evil.example.com/".into()).await;
    assert!(
        !dom.contains("origin sni="),
        "a denied name reaches no origin: {dom}"
    );
    let _ = std::fs::remove_dir_all(&profile);
}

fn tempdir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lnm-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
