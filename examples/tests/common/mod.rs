//! Helpers shared by the tests that run lnm's binaries (each test file uses some of them).
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The `lnm-gateway` binary of this build.
pub(crate) const GATEWAY: &str = env!("CARGO_BIN_EXE_lnm-gateway");

/// A path of the repository.
pub(crate) fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// A free port on 127.0.0.1 (bound and released: the gateway binds it next).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Asks `server` for `name` A over UDP and returns the answer's addresses as text (none when
/// there is no answer within 2 s).
pub(crate) fn dns_a(server: SocketAddr, name: &str) -> Vec<String> {
    let query = lnm_dns::Query::build(name, lnm_dns::Rtype::A).unwrap();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    socket.send_to(query.as_bytes(), server).unwrap();
    let mut buf = vec![0u8; 512];
    let Ok(n) = socket.recv(&mut buf) else {
        return vec![];
    };
    buf.truncate(n);
    lnm_dns::Response::new(buf)
        .answers()
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// Kills the child if the test fails half-way.
pub(crate) struct Running(pub std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running `lnm-gateway` started with `args`, and the lines of its stderr, gathered by a
/// thread until the process exits (join the handle after stopping it).
pub(crate) fn spawn_logged(args: &[&str]) -> (Running, std::thread::JoinHandle<Vec<String>>) {
    let mut command = std::process::Command::new(GATEWAY);
    command.args(args);
    spawn_logged_command(command)
}

/// [`spawn_logged`] for a command of the test's own (a shell that sets limits first, say).
pub(crate) fn spawn_logged_command(
    mut command: std::process::Command,
) -> (Running, std::thread::JoinHandle<Vec<String>>) {
    use std::io::{BufRead, BufReader};
    let mut child = Running(
        command
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = child.0.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    (child, log)
}
