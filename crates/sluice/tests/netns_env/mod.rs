//! Network namespaces for the interception test: created with `ip`, removed on drop (also when
//! the test panics), with the processes started in them killed first.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Runs a command to completion; `Err` with its stderr when it fails.
pub fn run(cmd: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {cmd}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`{cmd} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether `bin` is an executable on PATH.
pub fn on_path(bin: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| {
        std::env::split_paths(&p).any(|d| d.join(bin).metadata().is_ok_and(|m| m.is_file()))
    })
}

/// Why the test cannot run here, if it cannot.
pub fn missing_prerequisite() -> Option<String> {
    match run("id", &["-u"]) {
        Ok(uid) if uid.trim() == "0" => {}
        Ok(uid) => return Some(format!("not root (uid {})", uid.trim())),
        Err(e) => return Some(e),
    }
    for bin in ["ip", "setpriv", "bash"] {
        if !on_path(bin) {
            return Some(format!("`{bin}` not found"));
        }
    }
    if !["iptables-nft", "iptables", "iptables-legacy"]
        .iter()
        .any(|b| on_path(b))
    {
        return Some("no iptables (apt-get install iptables)".into());
    }
    None
}

/// Namespaces and the veth pair between them; everything is deleted on drop.
pub struct Namespaces {
    names: Vec<String>,
}

impl Namespaces {
    /// Creates the namespaces (loopback up in each).
    pub fn create(names: &[&str]) -> Result<Namespaces, String> {
        let mut ns = Namespaces { names: Vec::new() };
        for n in names {
            // A namespace left by a killed earlier run would make `add` fail.
            let _ = run("ip", &["netns", "del", n]);
            run("ip", &["netns", "add", n])?;
            ns.names.push((*n).to_string());
            ns.exec(n, "ip", &["link", "set", "lo", "up"])?;
        }
        Ok(ns)
    }

    /// Runs a command inside namespace `ns` to completion.
    pub fn exec(&self, ns: &str, cmd: &str, args: &[&str]) -> Result<String, String> {
        let mut all = vec!["netns", "exec", ns, cmd];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// A veth pair `a` (in `ns_a`, address `addr_a`) ↔ `b` (in `ns_b`, addresses `addrs_b`).
    pub fn link(
        &self,
        (ns_a, a, addr_a): (&str, &str, &str),
        (ns_b, b, addrs_b): (&str, &str, &[&str]),
    ) -> Result<(), String> {
        run(
            "ip",
            &[
                "link", "add", a, "netns", ns_a, "type", "veth", "peer", "name", b, "netns", ns_b,
            ],
        )?;
        self.exec(ns_a, "ip", &["addr", "add", addr_a, "dev", a])?;
        for addr in addrs_b {
            self.exec(ns_b, "ip", &["addr", "add", addr, "dev", b])?;
        }
        self.exec(ns_a, "ip", &["link", "set", a, "up"])?;
        self.exec(ns_b, "ip", &["link", "set", b, "up"])?;
        Ok(())
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of the veth pair, and with it the other end.
        for n in &self.names {
            let _ = run("ip", &["netns", "del", n]);
        }
    }
}

/// Processes started by the test, killed (and reaped) on drop.
#[derive(Default)]
pub struct Processes(Vec<(String, Child)>);

impl Processes {
    /// Starts `args` inside `ns` (through `ip netns exec`, which execs it: the child is the
    /// process itself); its stderr goes to `log`.
    pub fn spawn(
        &mut self,
        name: &str,
        ns: &str,
        args: &[&str],
        log: &std::path::Path,
    ) -> Result<(), String> {
        let stderr = std::fs::File::create(log).map_err(|e| e.to_string())?;
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        self.0.push((name.to_string(), child));
        Ok(())
    }

    /// Fails if one of the processes has exited.
    pub fn check_running(&mut self) -> Result<(), String> {
        for (name, child) in &mut self.0 {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("{name} exited ({status})"));
            }
        }
        Ok(())
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for (_, child) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// An HTTP/1.0 GET from inside `ns` with bash's `/dev/tcp` (no HTTP client needed in the
/// namespace), bounded by `timeout`; returns the whole response.
pub fn ns_get(ns: &str, ip: &str, port: u16, path: &str, timeout: Duration) -> Option<String> {
    let script = format!(
        "exec 3<>/dev/tcp/{ip}/{port} && printf 'GET {path} HTTP/1.0\\r\\nHost: {ip}\\r\\n\\r\\n' >&3 && cat <&3"
    );
    let secs = format!("{}", timeout.as_secs().max(1));
    let out = run(
        "ip",
        &["netns", "exec", ns, "timeout", &secs, "bash", "-c", &script],
    )
    .ok()?;
    (!out.is_empty()).then_some(out)
}

/// Polls `f` every 100 ms until it returns `Some` or `limit` passes.
pub fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    for _ in 0..(limit.as_millis() / 100 + 1) {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}
