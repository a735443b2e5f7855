//! Who holds a TCP port that cannot be bound (Linux `/proc`), so the error names it: "held by
//! pid 4242 (nginx)". Best effort: without permission to read other processes' descriptors, or
//! off Linux, it says nothing.

use std::net::SocketAddr;

/// The process listening on `addr`'s port, as `pid N (name)`, when it can be found.
pub fn describe(addr: SocketAddr) -> Option<String> {
    let inode = listening_inode(addr.port())?;
    let wanted = format!("socket:[{inode}]");
    for proc_entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = proc_entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(proc_entry.path().join("fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == wanted.as_str())
        });
        if holds {
            let comm = std::fs::read_to_string(proc_entry.path().join("comm")).unwrap_or_default();
            return Some(format!("pid {pid} ({})", comm.trim()));
        }
    }
    None
}

/// The inode of a listening TCP socket (IPv4 or IPv6) on `port`.
fn listening_inode(port: u16) -> Option<u64> {
    let want_port = format!("{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .find_map(|table| {
            let text = std::fs::read_to_string(table).ok()?;
            text.lines().skip(1).find_map(|line| {
                // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
                let fields: Vec<&str> = line.split_whitespace().collect();
                let local = fields.get(1)?;
                let state = fields.get(3)?;
                let inode = fields.get(9)?.parse::<u64>().ok()?;
                let (_, p) = local.rsplit_once(':')?;
                (*state == "0A" && p == want_port && inode != 0).then_some(inode)
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_this_process_for_a_port_it_listens_on() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        if !std::path::Path::new("/proc/net/tcp").exists() {
            return;
        }
        let held = describe(addr).unwrap();
        assert!(
            held.starts_with(&format!("pid {} (", std::process::id())),
            "{held}"
        );
    }
}
