//! A fresh copy of `examples/` in which a README's commands run as pasted, and the processes
//! they start.
//!
//! The READMEs use fixed ports (backends 9001–9003, services 9080 and 9000, gateways 8080, 8443
//! and 31400, the admin API 15000; the mutual-tls example's inbound port 8000 and second admin
//! API 15001) and `/tmp/…` directories; the copy gets free ports and a
//! `tmp/` of its own, in every file (README, YAML and `run.sh` alike), so examples run side by
//! side with each other and with other tests.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// The fixed ports the examples document.
const README_PORTS: [u16; 11] = [
    9001, 9002, 9003, 9080, 9000, 8080, 8443, 31400, 15000, 8000, 15001,
];
/// The admin port `sluice reload` and `sluice run` default to.
const ADMIN: u16 = 15000;

/// A copy of the examples with its own ports and temporary directory.
pub struct Sandbox {
    root: tempfile::TempDir,
    ports: Vec<(u16, u16)>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

/// The repository's `examples/` directory.
pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// Replaces the port number `from` by `to` wherever it stands alone (not inside a longer number).
fn replace_port(text: &str, from: u16, to: u16) -> String {
    let from = from.to_string();
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (i, _) in text.match_indices(&from) {
        let end = i + from.len();
        let before = i > 0 && bytes[i - 1].is_ascii_digit();
        let after = end < bytes.len() && bytes[end].is_ascii_digit();
        if !before && !after {
            out.push_str(&text[last..i]);
            out.push_str(&to.to_string());
            last = end;
        }
    }
    out.push_str(&text[last..]);
    out
}

impl Sandbox {
    /// Copies `examples/` (text files localized) into a new directory.
    pub fn new() -> Sandbox {
        let root = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let ports = README_PORTS.iter().map(|&p| (p, free_port())).collect();
        let sandbox = Sandbox { root, ports };
        sandbox.copy_dir(&examples_dir(), &sandbox.root.path().join("examples"));
        std::fs::create_dir_all(sandbox.root.path().join("tmp"))
            .unwrap_or_else(|e| panic!("mkdir tmp: {e}"));
        sandbox
    }

    /// `text` with the README's ports and `/tmp/` replaced by the sandbox's.
    pub fn localize(&self, text: &str) -> String {
        let tmp = format!("{}/tmp/", self.root.path().display());
        let text = text.replace("/tmp/", &tmp);
        self.ports
            .iter()
            .fold(text, |t, &(from, to)| replace_port(&t, from, to))
    }

    fn copy_dir(&self, from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("mkdir {}: {e}", to.display()));
        let entries =
            std::fs::read_dir(from).unwrap_or_else(|e| panic!("read {}: {e}", from.display()));
        for entry in entries.flatten() {
            let path = entry.path();
            let target = to.join(entry.file_name());
            if path.is_dir() {
                // Certificates made by an earlier `make-certs.sh` or `sluice ca init` in the
                // repository: a fresh clone has none.
                if entry.file_name() != "certs" && entry.file_name() != "ca" {
                    self.copy_dir(&path, &target);
                }
                continue;
            }
            let bytes =
                std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
            let out = match String::from_utf8(bytes) {
                Ok(text) => self.localize(&text).into_bytes(),
                Err(e) => e.into_bytes(),
            };
            std::fs::write(&target, out)
                .unwrap_or_else(|e| panic!("write {}: {e}", target.display()));
            let mode = std::fs::metadata(&path).map(|m| m.permissions());
            if let Ok(mode) = mode {
                let _ = std::fs::set_permissions(&target, mode);
            }
        }
    }

    /// An example's README, localized.
    pub fn readme(&self, example: &str) -> String {
        let path = self
            .root
            .path()
            .join("examples")
            .join(example)
            .join("README.md");
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
    }

    /// `bash` at the sandbox's root with the built `sluice` first on `PATH`, its own process
    /// group, and `SLUICE_ADMIN` pointing at the sandbox's admin port.
    fn bash(&self, flags: &[&str], code: &str) -> Command {
        let bin = Path::new(env!("CARGO_BIN_EXE_sluice"))
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let path = std::env::var("PATH").unwrap_or_default();
        let admin = self.localize(&format!("127.0.0.1:{ADMIN}"));
        let mut cmd = Command::new("bash");
        cmd.args(flags)
            .arg("-c")
            .arg(code)
            .current_dir(self.root.path())
            .env("PATH", format!("{}:{path}", bin.display()))
            .env("SLUICE_ADMIN", admin)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        cmd
    }

    /// Runs a one-shot block as `bash -e -o pipefail` (a failing command fails the block) and
    /// returns its status, stdout and stderr; a block still running after `limit` is killed.
    pub fn run(&self, code: &str, limit: Duration) -> (ExitStatus, String, String) {
        let mut child = self
            .bash(&["-e", "-o", "pipefail"], code)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("bash: {e}"));
        let stdout = drain(child.stdout.take());
        let stderr = drain(child.stderr.take());
        let status = wait_or_kill(&mut child, limit);
        (status, collect(stdout), collect(stderr))
    }

    /// Starts a long-running block (`examples/run.sh NAME`) and waits until it prints its
    /// `ready:` line; panics with its output if it exits first or is not ready within `limit`.
    pub fn start(&self, code: &str, limit: Duration) -> Running {
        let mut child = self
            .bash(&[], &format!("exec 2>&1\n{code}"))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("bash: {e}"));
        let (tx, rx) = mpsc::channel();
        let output = Arc::new(Mutex::new(String::new()));
        if let Some(out) = child.stdout.take() {
            let output = Arc::clone(&output);
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    let ready = line.starts_with("ready:");
                    if let Ok(mut o) = output.lock() {
                        o.push_str(&line);
                        o.push('\n');
                    }
                    if ready {
                        let _ = tx.send(());
                    }
                }
            });
        }
        let mut running = Running {
            child,
            output,
            stopped: false,
        };
        let deadline = Instant::now() + limit;
        loop {
            if rx.recv_timeout(Duration::from_millis(100)).is_ok() {
                return running;
            }
            if let Ok(Some(status)) = running.child.try_wait() {
                panic!(
                    "`{code}` exited ({status}) before it was ready:\n{}",
                    running.output()
                );
            }
            // Dropping `running` on the way out stops what it started.
            assert!(
                Instant::now() < deadline,
                "`{code}` not ready within {limit:?}:\n{}",
                running.output()
            );
        }
    }

    /// Every port the sandbox uses.
    pub fn ports(&self) -> Vec<u16> {
        self.ports.iter().map(|&(_, to)| to).collect()
    }
}

/// A long-running block and everything it started (one process group).
pub struct Running {
    child: Child,
    output: Arc<Mutex<String>>,
    stopped: bool,
}

impl Running {
    /// Whether one of its processes listens on `port` (on Linux, from `/proc`). A sandbox port
    /// the example does not use can be taken meanwhile by another test's process: that one is
    /// not the example's to stop.
    pub fn holds(&self, port: u16) -> bool {
        let inodes = listening_inodes(port);
        if inodes.is_empty() {
            return false;
        }
        let group = self.child.id();
        let Ok(procs) = std::fs::read_dir("/proc") else {
            return false;
        };
        procs.flatten().any(|p| {
            let in_group = std::fs::read_to_string(p.path().join("stat"))
                .ok()
                .and_then(|stat| {
                    // After the `(comm)` field, which may hold spaces: state, ppid, pgrp.
                    let rest = stat.rsplit_once(')')?.1;
                    rest.split_whitespace().nth(2)?.parse::<u32>().ok()
                })
                == Some(group);
            in_group
                && std::fs::read_dir(p.path().join("fd")).is_ok_and(|fds| {
                    fds.flatten().any(|fd| {
                        std::fs::read_link(fd.path()).is_ok_and(|l| {
                            inodes
                                .iter()
                                .any(|i| l.to_str() == Some(&format!("socket:[{i}]")))
                        })
                    })
                })
        })
    }

    /// What it printed so far (stdout and stderr).
    pub fn output(&self) -> String {
        self.output.lock().map(|o| o.clone()).unwrap_or_default()
    }

    /// Ctrl-C, as a terminal sends it (SIGINT to the whole foreground process group); returns
    /// the exit status and the output once the script has stopped everything it started.
    pub fn interrupt(mut self, limit: Duration) -> (ExitStatus, String) {
        signal_group(self.child.id(), "-INT");
        let status = wait_or_kill(&mut self.child, limit);
        self.stopped = true;
        // The reader thread ends when the last process holding the pipe is gone.
        (status, self.output())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.stopped {
            signal_group(self.child.id(), "-KILL");
            let _ = self.child.wait();
        }
    }
}

/// The inodes of the TCP sockets listening on `port` (any address, IPv4 or IPv6).
fn listening_inodes(port: u16) -> Vec<String> {
    let local = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|table| {
            table
                .lines()
                .skip(1)
                .filter_map(|line| {
                    // sl, local address, remote address, state, …, uid, timeout, inode.
                    let cols: Vec<&str> = line.split_whitespace().collect();
                    let listening = cols.get(3) == Some(&"0A");
                    let on_port = cols.get(1).is_some_and(|a| a.ends_with(&local));
                    (listening && on_port).then(|| cols.get(9).map(|i| (*i).to_string()))?
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Sends `sig` to the process group led by `pid`.
fn signal_group(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([sig, "--", &format!("-{pid}")])
        .stderr(Stdio::null())
        .status();
}

/// Waits for `child`; after `limit`, kills its process group and panics.
fn wait_or_kill(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                signal_group(child.id(), "-KILL");
                let _ = child.wait();
                panic!("still running after {limit:?}: killed");
            }
        }
    }
}

type Collected = std::thread::JoinHandle<String>;

/// Reads a pipe to its end on a thread of its own (a full pipe would block the writer).
fn drain(pipe: Option<impl std::io::Read + Send + 'static>) -> Option<Collected> {
    pipe.map(|mut p| {
        std::thread::spawn(move || {
            let mut out = String::new();
            let _ = p.read_to_string(&mut out);
            out
        })
    })
}

fn collect(handle: Option<Collected>) -> String {
    handle.and_then(|h| h.join().ok()).unwrap_or_default()
}
