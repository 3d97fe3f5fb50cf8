//! `lnm-gateway` follows its mounted configuration file: a Kubernetes ConfigMap volume is
//! updated by an atomic symlink swap (`config.yaml` → `..data/config.yaml`, `..data` →
//! `..<timestamp>`; kubelet writes a new timestamped directory, then renames a new `..data`
//! symlink over the old one). This test does exactly that and checks that a valid change is
//! applied (the allowlist, through the level's DNS answers) and a bad one is logged and the
//! running configuration kept.

use std::net::SocketAddr;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::{dns_a, free_port, spawn_logged};

/// A directory laid out as kubelet lays out a ConfigMap volume.
struct ConfigMapVolume {
    dir: PathBuf,
    version: u32,
}

impl ConfigMapVolume {
    fn new(text: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("lnm-follow-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut volume = ConfigMapVolume { dir, version: 0 };
        volume.update(text);
        symlink("..data/config.yaml", volume.dir.join("config.yaml")).unwrap();
        volume
    }

    fn config(&self) -> PathBuf {
        self.dir.join("config.yaml")
    }

    /// kubelet's update: a new timestamped directory, a new `..data_tmp` symlink renamed over
    /// `..data` (atomic), then the old directory removed.
    fn update(&mut self, text: &str) {
        let old = (self.version > 0).then(|| {
            self.dir
                .join(format!("..2026_12_01_00_00_{:02}", self.version))
        });
        self.version += 1;
        let name = format!("..2026_12_01_00_00_{:02}", self.version);
        let new = self.dir.join(&name);
        std::fs::create_dir(&new).unwrap();
        std::fs::write(new.join("config.yaml"), text).unwrap();
        let tmp = self.dir.join("..data_tmp");
        symlink(&name, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.join("..data")).unwrap();
        if let Some(old) = old {
            std::fs::remove_dir_all(old).unwrap();
        }
    }
}

impl Drop for ConfigMapVolume {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_configmap_symlink_swap_reloads_and_a_bad_file_keeps_the_running_config() {
    let (proxy, dns) = (free_port(), free_port());
    let yaml = |name: &str| {
        format!(
            "level: 4\nlogLevel: info\nallowList:\n  domains:\n    - {{destinationUrl: {name}, destinationType: external}}\n\
             listeners: [{{bind: \"127.0.0.1:{proxy}\", protocol: tls}}]\n\
             dns: {{bind: \"127.0.0.1:{dns}\", answerIpv4: [127.0.0.1]}}\n\
             timeouts: {{shutdownDrain: 1s}}\n"
        )
    };
    let mut volume = ConfigMapVolume::new(&yaml("first.example"));
    let (mut child, log) = spawn_logged(&[
        "--config",
        volume.config().to_str().unwrap(),
        "--watch-interval",
        "50ms",
    ]);
    let dns_addr: SocketAddr = format!("127.0.0.1:{dns}").parse().unwrap();
    wait_for("the first config answers", Duration::from_secs(10), || {
        dns_a(dns_addr, "first.example") == ["127.0.0.1"]
    });
    assert!(dns_a(dns_addr, "second.example").is_empty());

    // A valid change, by a symlink swap: applied at once, without a signal.
    volume.update(&yaml("second.example"));
    wait_for("the swapped config applies", Duration::from_secs(5), || {
        dns_a(dns_addr, "second.example") == ["127.0.0.1"]
    });
    assert!(
        dns_a(dns_addr, "first.example").is_empty(),
        "the old allowlist is gone"
    );

    // A bad change: rejected, the running configuration stays.
    volume.update(
        "level: 4\nallowList: {domains: [{destinationUrl: '*', destinationType: external}]}\n",
    );
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(dns_a(dns_addr, "second.example"), ["127.0.0.1"]);

    // And the next good one applies again.
    volume.update(&yaml("third.example"));
    wait_for(
        "the next good config applies",
        Duration::from_secs(5),
        || dns_a(dns_addr, "third.example") == ["127.0.0.1"],
    );

    Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{status}");
    let log = log.join().unwrap().join("\n");
    assert_eq!(
        log.matches("configuration reloaded").count(),
        2,
        "one reload per good version: {log}"
    );
    assert!(log.contains("cause=\"file changed\""), "{log}");
    assert_eq!(
        log.matches("reload rejected, the running configuration stays")
            .count(),
        1,
        "a bad version is rejected once, not retried: {log}"
    );
    assert!(Path::new(&volume.config()).exists());
}
