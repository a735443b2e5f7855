//! `--tcp-echo PREFIX`: Istio's tcp-echo sample server, which answers every line it reads with
//! the same line after its prefix (`one hello` from v1, `two hello` from v2).

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Echoes each line of one connection until the peer stops sending.
pub(super) async fn serve(stream: TcpStream, prefix: &str) {
    let (r, mut w) = stream.into_split();
    let mut lines = BufReader::new(r).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if w.write_all(format!("{prefix} {line}\n").as_bytes())
            .await
            .is_err()
        {
            return;
        }
    }
}
