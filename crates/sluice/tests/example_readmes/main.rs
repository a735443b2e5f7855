//! Every example's README, run as a new user pastes it: its ```sh blocks in order, in a fresh
//! copy of `examples/`, with the built `sluice` on `PATH`. A block that starts the example's
//! processes (`examples/run.sh NAME`) runs in the background, as in a second terminal, until the
//! next one or the end, and is then stopped with Ctrl-C; every other block must succeed and
//! print the ```text block that follows it (timings and PIDs aside). The README is the test's
//! only source, so what it shows cannot drift from what sluice does.
//!
//! Needs bash and curl; the TCP example `nc` (Debian's netcat-openbsd), the HTTPS one `openssl`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod markdown;
mod sandbox;

use std::net::TcpStream;
use std::time::Duration;

use markdown::{appears_in, matches, shell_blocks};
use sandbox::{examples_dir, Running, Sandbox};

/// Longest run of one pasted block (the TCP example's first loop takes 5 s).
const BLOCK_LIMIT: Duration = Duration::from_secs(60);
/// Longest wait for `examples/run.sh` to report its processes ready.
const START_LIMIT: Duration = Duration::from_secs(60);
/// Longest wait for Ctrl-C to stop them.
const STOP_LIMIT: Duration = Duration::from_secs(30);

/// The examples, each with its README test below.
const EXAMPLES: [&str; 8] = [
    "canary",
    "header-canary",
    "path-canary",
    "source-labels",
    "subdomain-gateway",
    "tcp-traffic-shifting",
    "https-gateway",
    "mutual-tls",
];

/// Panics with a hint when a tool the README uses is missing.
fn require(tool: &str, package: &str) {
    let found = std::process::Command::new("bash")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "`{tool}` is not installed (Debian package {package})"
    );
}

/// The sandbox ports the example's processes listen on now.
fn open_ports(sb: &Sandbox, running: &Running) -> Vec<u16> {
    let ports: Vec<u16> = sb
        .ports()
        .into_iter()
        .filter(|p| TcpStream::connect(("127.0.0.1", *p)).is_ok())
        .filter(|p| running.holds(*p))
        .collect();
    assert!(!ports.is_empty(), "the example listens on no sandbox port");
    ports
}

/// Ctrl-C in the example's terminal stops every process it started.
fn stop(running: Running, ports: &[u16], what: &str) {
    let (status, out) = running.interrupt(STOP_LIMIT);
    assert!(
        out.contains("stopped"),
        "{what}: Ctrl-C did not report stopping its processes ({status}):\n{out}"
    );
    for port in ports {
        assert!(
            TcpStream::connect(("127.0.0.1", *port)).is_err(),
            "{what}: port {port} still answers after Ctrl-C:\n{out}"
        );
    }
}

/// Runs `examples/NAME/README.md` block by block.
fn run_readme(example: &str) {
    require("bash", "bash");
    require("curl", "curl");
    let sb = Sandbox::new();
    let readme = sb.readme(example);
    let blocks = shell_blocks(&readme);
    assert!(
        blocks.iter().any(|b| b.is_long_running()),
        "examples/{example}/README.md never starts its processes with `examples/run.sh`"
    );
    let mut running: Option<(Running, Vec<u16>, String)> = None;
    for b in &blocks {
        let at = format!("examples/{example}/README.md:{}", b.line);
        if b.is_long_running() {
            if let Some((r, ports, what)) = running.take() {
                stop(r, &ports, &what);
            }
            let r = sb.start(&b.code, START_LIMIT);
            if let Some(e) = &b.expected {
                assert!(
                    appears_in(e, &r.output()),
                    "{at}: `{}` does not print what the README shows:\n{}\n--- got:\n{}",
                    b.code.trim(),
                    e.text,
                    r.output()
                );
            }
            let ports = open_ports(&sb, &r);
            running = Some((r, ports, at));
            continue;
        }
        let (status, out, err) = sb.run(&b.code, BLOCK_LIMIT);
        let processes = running.as_ref().map(|r| r.0.output()).unwrap_or_default();
        assert!(
            status.success(),
            "{at}: the block failed ({status}):\n{}\n--- stdout:\n{out}--- stderr:\n{err}--- the example's processes:\n{processes}",
            b.code
        );
        if let Some(e) = &b.expected {
            assert!(
                matches(e, &out),
                "{at}: the block does not print what the README shows:\n{}\n--- README:\n{}--- got:\n{out}--- stderr:\n{err}",
                b.code,
                e.text
            );
        }
    }
    if let Some((r, ports, what)) = running {
        stop(r, &ports, &what);
    }
}

#[test]
fn every_example_directory_has_a_readme_test() {
    let mut dirs: Vec<String> = std::fs::read_dir(examples_dir())
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    let mut listed = EXAMPLES.map(String::from).to_vec();
    listed.sort();
    assert_eq!(dirs, listed);
    let script = std::fs::read_to_string(examples_dir().join("run.sh")).unwrap();
    for name in EXAMPLES {
        assert!(
            script.contains(name),
            "examples/run.sh does not know {name}"
        );
        let index = std::fs::read_to_string(examples_dir().join("README.md")).unwrap();
        assert!(
            index.contains(&format!("({name}/)")),
            "examples/README.md does not list {name}"
        );
    }
}

#[test]
fn canary_readme() {
    run_readme("canary");
}

#[test]
fn header_canary_readme() {
    run_readme("header-canary");
}

#[test]
fn path_canary_readme() {
    run_readme("path-canary");
}

#[test]
fn source_labels_readme() {
    run_readme("source-labels");
}

#[test]
fn subdomain_gateway_readme() {
    run_readme("subdomain-gateway");
}

#[test]
fn tcp_traffic_shifting_readme() {
    require("nc", "netcat-openbsd");
    run_readme("tcp-traffic-shifting");
}

#[test]
fn https_gateway_readme() {
    require("openssl", "openssl");
    run_readme("https-gateway");
}

#[test]
fn mutual_tls_readme() {
    run_readme("mutual-tls");
}

/// Two examples at once: the second `run.sh` refuses to start (exit 1, naming the port) and
/// starts nothing, and the first keeps running.
#[test]
fn run_sh_refuses_to_start_while_a_port_is_taken() {
    require("bash", "bash");
    require("curl", "curl");
    let sb = Sandbox::new();
    let first = sb.start("examples/run.sh header-canary", START_LIMIT);
    let ports = open_ports(&sb, &first);
    let (status, out, err) = sb.run("examples/run.sh path-canary", BLOCK_LIMIT);
    assert_eq!(status.code(), Some(1), "{out}{err}");
    assert!(
        err.contains("is already in use") && err.contains("Stop it"),
        "{err}"
    );
    assert!(!out.contains("pid "), "started something: {out}");
    let (status, out, _) = sb.run(
        &sb.localize("curl -s -H 'Host: app-backend' http://127.0.0.1:9080/"),
        BLOCK_LIMIT,
    );
    assert!(
        status.success() && out.starts_with("app-backend v1"),
        "{out}"
    );
    stop(first, &ports, "header-canary");
    // Unknown names get the list of examples.
    let (status, _, err) = sb.run("examples/run.sh nope", BLOCK_LIMIT);
    assert_eq!(status.code(), Some(2));
    assert!(err.contains("canary, header-canary"), "{err}");
}
