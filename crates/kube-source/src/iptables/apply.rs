//! Running the plan: find the iptables flavour the node has, then load the rules atomically.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::Context as _;

use super::{plan, IptablesArgs, IptablesOptions};

/// The iptables flavour used: the binary for IPv4 rules and its `-restore` companion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// e.g. `iptables-nft`.
    pub iptables: String,
    /// e.g. `ip6tables-nft`.
    pub ip6tables: String,
}

impl Backend {
    /// The backend for an iptables binary name (`iptables-nft` → `ip6tables-nft`).
    pub fn named(iptables: &str) -> Backend {
        let ip6tables = match iptables.rsplit_once('/') {
            Some((dir, base)) => format!("{dir}/{}", base.replacen("iptables", "ip6tables", 1)),
            None => iptables.replacen("iptables", "ip6tables", 1),
        };
        Backend {
            iptables: iptables.to_string(),
            ip6tables,
        }
    }

    pub(crate) fn restore(bin: &str) -> String {
        format!("{bin}-restore")
    }
}

/// The first of `iptables-nft`, `iptables`, `iptables-legacy` found on `PATH`.
pub fn detect_backend() -> Option<Backend> {
    let path = std::env::var_os("PATH")?;
    ["iptables-nft", "iptables", "iptables-legacy"]
        .into_iter()
        .find(|bin| std::env::split_paths(&path).any(|dir| is_executable(&dir.join(bin))))
        .map(Backend::named)
}

fn is_executable(p: &Path) -> bool {
    p.metadata().map(|m| m.is_file()).unwrap_or(false)
}

/// The plan for one family (`iptables` or `ip6tables`) in `iptables-restore --noflush` format.
pub fn restore_input(opts: &IptablesOptions, ipv6: bool) -> String {
    let prefix = if ipv6 {
        "ip6tables -t nat "
    } else {
        "iptables -t nat "
    };
    let mut chains = String::new();
    let mut rules = String::new();
    for cmd in plan(opts) {
        let Some(rule) = cmd.strip_prefix(prefix) else {
            continue;
        };
        match rule.strip_prefix("-N ") {
            Some(chain) => chains.push_str(&format!(":{chain} - [0:0]\n")),
            None => {
                rules.push_str(rule);
                rules.push('\n');
            }
        }
    }
    format!("*nat\n{chains}{rules}COMMIT\n")
}

/// Installs the rules with `backend`: atomically through `*-restore --noflush` when available,
/// else command by command.
pub fn apply(opts: &IptablesOptions, backend: &Backend) -> anyhow::Result<()> {
    let mut families = vec![(false, backend.iptables.as_str())];
    if opts.ipv6 {
        families.push((true, backend.ip6tables.as_str()));
    }
    for (v6, bin) in families {
        let restore = Backend::restore(bin);
        match restore_with(&restore, &restore_input(opts, v6)) {
            Ok(()) => continue,
            Err(e) if is_not_found(&e) => {
                tracing::debug!("{restore} not found; running {bin} command by command");
            }
            Err(e) => return Err(e).with_context(|| format!("{restore} failed")),
        }
        let family = if v6 { "ip6tables " } else { "iptables " };
        for cmd in plan(opts) {
            let Some(args) = cmd.strip_prefix(family) else {
                continue;
            };
            let status = Command::new(bin)
                .args(args.split(' '))
                .status()
                .with_context(|| format!("cannot run {bin}"))?;
            if !status.success() {
                anyhow::bail!("`{bin} {args}` failed ({status})");
            }
        }
    }
    Ok(())
}

fn is_not_found(e: &anyhow::Error) -> bool {
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound)
}

fn restore_with(bin: &str, input: &str) -> anyhow::Result<()> {
    let mut child = Command::new(bin)
        .arg("--noflush")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        anyhow::bail!(
            "{} ({}); input:\n{input}",
            String::from_utf8_lossy(&out.stderr).trim(),
            out.status
        );
    }
    Ok(())
}

/// Runs `sluice iptables`: prints the plan with `--dry-run`, else applies it.
pub async fn run(args: IptablesArgs) -> anyhow::Result<()> {
    let opts = args.options()?;
    if args.dry_run {
        for cmd in plan(&opts) {
            println!("{cmd}");
        }
        return Ok(());
    }
    let backend = match &args.iptables {
        Some(bin) => Backend::named(bin),
        None => detect_backend()
            .context("no iptables binary found (tried iptables-nft, iptables, iptables-legacy)")?,
    };
    tracing::info!(backend = %backend.iptables, "installing interception rules");
    tokio::task::spawn_blocking(move || apply(&opts, &backend))
        .await
        .context("iptables task failed")?
}
