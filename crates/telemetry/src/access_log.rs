//! Access log: one line per request, JSON (default) or text, to stdout or a file.
//!
//! The request path never blocks on it: [`AccessLog::log`] is a `try_send` into a bounded
//! channel; when the channel is full the line is dropped and `sluice_access_log_dropped_total`
//! counts it. A dedicated thread formats and writes (stdout and file writes are blocking calls,
//! which must not run on the proxy's async workers), in batches: it sleeps a short window after
//! waking so that lines are written and flushed together.

use std::fmt::Write as _;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

/// Line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccessLogFormat {
    /// One JSON object per line (Istio's `JSON` encoding).
    #[default]
    Json,
    /// Envoy/Istio-style text line.
    Text,
}

/// Where lines go.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AccessLogTarget {
    /// Standard output.
    #[default]
    Stdout,
    /// A file, appended to (created when missing).
    File(PathBuf),
}

/// Access log settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogConfig {
    /// Off by default, as in Istio's default profile (`meshConfig.accessLogFile` empty).
    pub enabled: bool,
    /// Line format.
    pub format: AccessLogFormat,
    /// Destination.
    pub target: AccessLogTarget,
    /// Lines queued before new ones are dropped.
    pub capacity: usize,
}

impl Default for AccessLogConfig {
    fn default() -> Self {
        AccessLogConfig {
            enabled: false,
            format: AccessLogFormat::Json,
            target: AccessLogTarget::Stdout,
            capacity: 16 * 1024,
        }
    }
}

impl AccessLogConfig {
    /// JSON lines to stdout.
    pub fn stdout() -> Self {
        AccessLogConfig {
            enabled: true,
            ..Default::default()
        }
    }
}

/// One request, as logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogEntry {
    /// When the request started.
    pub start_time: SystemTime,
    /// HTTP method.
    pub method: String,
    /// Host / :authority.
    pub authority: String,
    /// Path and query as received.
    pub path: String,
    /// `HTTP/1.1`, `HTTP/2`.
    pub protocol: &'static str,
    /// Status sent downstream; 0 when none was.
    pub response_code: u16,
    /// Envoy response flags (`-` when none).
    pub response_flags: String,
    /// Body bytes received from downstream.
    pub bytes_received: u64,
    /// Body bytes sent downstream.
    pub bytes_sent: u64,
    /// Start to response complete.
    pub duration: Duration,
    /// The endpoint (`ip:port`) the request went to.
    pub upstream_host: Option<String>,
    /// The cluster it went to.
    pub upstream_cluster: Option<String>,
    /// The route that matched.
    pub route_name: Option<String>,
    /// `x-request-id`.
    pub x_request_id: Option<String>,
    /// Trace ID, when traced.
    pub trace_id: Option<String>,
}

fn flags_or_dash(flags: &str) -> &str {
    if flags.is_empty() {
        "-"
    } else {
        flags
    }
}

/// Appends `v` as a JSON string literal.
fn push_json_str(out: &mut String, v: &str) {
    out.push('"');
    if !needs_escape(v.as_bytes()) {
        out.push_str(v);
        out.push('"');
        return;
    }
    let mut start = 0;
    for (i, b) in v.bytes().enumerate() {
        let esc = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&v[start..i]);
        if esc.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(esc);
        }
        start = i + 1;
    }
    out.push_str(&v[start..]);
    out.push('"');
}

/// Whether `s` has a byte JSON must escape (`"`, `\\`, control characters).
///
/// Almost no value has one; eight bytes at a time (SWAR) makes the common case several times
/// cheaper than a byte loop.
fn needs_escape(s: &[u8]) -> bool {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    // Non-zero when some byte of `x` is below `n` (exact for n <= 128).
    let below = |x: u64, n: u8| x.wrapping_sub(LO * u64::from(n)) & !x & HI;
    let zero_byte = |x: u64| below(x, 1);
    let mut chunks = s.chunks_exact(8);
    for c in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(c);
        let x = u64::from_le_bytes(word);
        if below(x, 0x20)
            | zero_byte(x ^ (LO * u64::from(b'"')))
            | zero_byte(x ^ (LO * u64::from(b'\\')))
            != 0
        {
            return true;
        }
    }
    chunks
        .remainder()
        .iter()
        .any(|&b| b == b'"' || b == b'\\' || b < 0x20)
}

/// Appends the decimal digits of `v` (`write!` goes through the formatting machinery).
fn push_u64(out: &mut String, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend(buf[i..].iter().map(|&b| char::from(b)));
}

/// Appends `v` as a JSON string literal, or `null`.
fn push_json_opt(out: &mut String, v: Option<&str>) {
    match v {
        Some(v) => push_json_str(out, v),
        None => out.push_str("null"),
    }
}

impl AccessLogEntry {
    /// The line (without the newline) in `format`.
    pub fn format(&self, format: AccessLogFormat) -> String {
        let mut line = String::with_capacity(320);
        self.format_into(format, &mut line);
        line
    }

    /// Appends the line (without the newline) in `format` to `out`.
    ///
    /// Written by hand rather than through serde: the writer thread formats every request's
    /// line, and on a proxy sharing one core it competes with the requests themselves.
    pub fn format_into(&self, format: AccessLogFormat, out: &mut String) {
        let start = rfc3339_millis(self.start_time);
        let duration_ms = u64::try_from(self.duration.as_millis()).unwrap_or(u64::MAX);
        match format {
            AccessLogFormat::Json => {
                out.push_str("{\"start_time\":");
                push_json_str(out, &start);
                out.push_str(",\"method\":");
                push_json_str(out, &self.method);
                out.push_str(",\"authority\":");
                push_json_str(out, &self.authority);
                out.push_str(",\"path\":");
                push_json_str(out, &self.path);
                out.push_str(",\"protocol\":");
                push_json_str(out, self.protocol);
                out.push_str(",\"response_code\":");
                push_u64(out, u64::from(self.response_code));
                out.push_str(",\"response_flags\":");
                push_json_str(out, flags_or_dash(&self.response_flags));
                out.push_str(",\"bytes_received\":");
                push_u64(out, self.bytes_received);
                out.push_str(",\"bytes_sent\":");
                push_u64(out, self.bytes_sent);
                out.push_str(",\"duration\":");
                push_u64(out, duration_ms);
                out.push_str(",\"upstream_host\":");
                push_json_opt(out, self.upstream_host.as_deref());
                out.push_str(",\"upstream_cluster\":");
                push_json_opt(out, self.upstream_cluster.as_deref());
                out.push_str(",\"route_name\":");
                push_json_opt(out, self.route_name.as_deref());
                out.push_str(",\"x_request_id\":");
                push_json_opt(out, self.x_request_id.as_deref());
                out.push_str(",\"trace_id\":");
                push_json_opt(out, self.trace_id.as_deref());
                out.push('}');
            }
            AccessLogFormat::Text => {
                fn d(v: &Option<String>) -> &str {
                    v.as_deref().unwrap_or("-")
                }
                // Istio's default text format, reduced to the fields sluice knows.
                let _ = write!(
                    out,
                    "[{start}] \"{} {} {}\" {} {} {} {} {} \"{}\" \"{}\" \"{}\" {} {} {}",
                    self.method,
                    self.path,
                    self.protocol,
                    self.response_code,
                    flags_or_dash(&self.response_flags),
                    self.bytes_received,
                    self.bytes_sent,
                    duration_ms,
                    d(&self.x_request_id),
                    self.authority,
                    d(&self.upstream_host),
                    d(&self.upstream_cluster),
                    d(&self.route_name),
                    d(&self.trace_id),
                );
            }
        }
    }
}

/// The access log: a bounded queue in front of a writer thread.
#[derive(Debug)]
pub struct AccessLog {
    tx: Option<mpsc::Sender<AccessLogEntry>>,
    dropped: Counter,
    writer: Option<JoinHandle<()>>,
}

impl AccessLog {
    /// A log that writes nothing.
    pub fn disabled(dropped: Counter) -> AccessLog {
        AccessLog {
            tx: None,
            dropped,
            writer: None,
        }
    }

    /// Opens the target and starts the writer thread (a disabled config writes nothing).
    pub fn start(config: &AccessLogConfig, dropped: Counter) -> io::Result<AccessLog> {
        if !config.enabled {
            return Ok(AccessLog::disabled(dropped));
        }
        let out: Box<dyn Write + Send> = match &config.target {
            AccessLogTarget::Stdout => Box::new(io::stdout()),
            AccessLogTarget::File(path) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
        };
        AccessLog::with_writer(config.format, config.capacity, out, dropped)
    }

    /// Starts a writer thread writing `format` lines to `out` (tests pass their own writer).
    pub fn with_writer(
        format: AccessLogFormat,
        capacity: usize,
        out: Box<dyn Write + Send>,
        dropped: Counter,
    ) -> io::Result<AccessLog> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let writer = std::thread::Builder::new()
            .name("sluice-access-log".into())
            .spawn(move || write_lines(rx, format, out))?;
        Ok(AccessLog {
            tx: Some(tx),
            dropped,
            writer: Some(writer),
        })
    }

    /// Whether lines are written; callers skip building entries when not.
    #[inline]
    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues one line; never blocks: a full queue drops the line and counts it.
    pub fn log(&self, entry: AccessLogEntry) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send(entry) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Closed(_)) => {
                self.dropped.inc();
            }
        }
    }

    /// Lines dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.get()
    }

    /// Stops accepting lines, writes what is queued and waits for the writer.
    pub fn close(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.tx = None;
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        // Dropping the sender ends the writer once the queue is drained; do not wait for it here
        // (stdout may be blocked), `close` is the way to wait.
        self.tx = None;
    }
}

/// How long the writer lets lines pile up after it wakes: under load that is one wake-up and one
/// `write` per window instead of one per request (a thread wake-up costs more than the request).
const BATCH_WINDOW: Duration = Duration::from_millis(20);

fn write_lines(
    mut rx: mpsc::Receiver<AccessLogEntry>,
    format: AccessLogFormat,
    out: Box<dyn Write + Send>,
) {
    let mut out = BufWriter::with_capacity(64 * 1024, out);
    let mut line = String::with_capacity(512);
    // Parked on the channel only while idle; the first line after idleness wakes it.
    while let Some(first) = rx.blocking_recv() {
        write_entry(&mut out, &mut line, &first, format);
        std::thread::sleep(BATCH_WINDOW);
        loop {
            match rx.try_recv() {
                Ok(e) => write_entry(&mut out, &mut line, &e, format),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    let _ = out.flush();
                    return;
                }
            }
        }
        // Queue drained: make the lines visible before parking again.
        let _ = out.flush();
    }
    let _ = out.flush();
}

fn write_entry(
    out: &mut impl Write,
    line: &mut String,
    entry: &AccessLogEntry,
    format: AccessLogFormat,
) {
    line.clear();
    entry.format_into(format, line);
    line.push('\n');
    // A failed write (closed pipe, full disk) drops the line; draining goes on so senders never
    // block.
    let _ = out.write_all(line.as_bytes());
}

/// RFC 3339 UTC time with milliseconds (`2024-05-01T12:00:00.123Z`), as Envoy's `%START_TIME%`.
pub fn rfc3339_millis(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let millis = since.subsec_millis();
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    // Digits written by hand: `format!` costs ten times more, once per access-log line.
    let mut out = String::with_capacity(24);
    let mut push = |v: u64, width: u32, sep: Option<char>| {
        for i in (0..width).rev() {
            let digit = (v / 10u64.pow(i)) % 10;
            out.push(char::from(b'0' + digit as u8));
        }
        if let Some(c) = sep {
            out.push(c);
        }
    };
    push(y.clamp(0, 9999) as u64, 4, Some('-'));
    push(u64::from(m), 2, Some('-'));
    push(u64::from(d), 2, Some('T'));
    push(rem / 3600, 2, Some(':'));
    push((rem % 3600) / 60, 2, Some(':'));
    push(rem % 60, 2, Some('.'));
    push(u64::from(millis), 3, Some('Z'));
    out
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::sync::{Arc, Condvar, Mutex};

    fn entry() -> AccessLogEntry {
        AccessLogEntry {
            start_time: UNIX_EPOCH + Duration::from_millis(1_714_564_800_123),
            method: "GET".into(),
            authority: "app-backend:9080".into(),
            path: "/hello?x=\"1\"".into(),
            protocol: "HTTP/1.1",
            response_code: 200,
            response_flags: String::new(),
            bytes_received: 0,
            bytes_sent: 42,
            duration: Duration::from_micros(5_600),
            upstream_host: Some("127.0.0.1:9001".into()),
            upstream_cluster: Some("outbound|9080|v1|app-backend.default.svc.cluster.local".into()),
            route_name: Some("app-backend.0".into()),
            x_request_id: Some("abc".into()),
            trace_id: None,
        }
    }

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn rfc3339_with_millis() {
        assert_eq!(rfc3339_millis(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339_millis(UNIX_EPOCH + Duration::from_millis(1_714_564_800_123)),
            "2024-05-01T12:00:00.123Z"
        );
        assert_eq!(
            rfc3339_millis(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000Z"
        );
    }

    #[test]
    fn json_line_has_every_field() {
        let line = entry().format(AccessLogFormat::Json);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["start_time"], "2024-05-01T12:00:00.123Z");
        assert_eq!(v["method"], "GET");
        assert_eq!(v["authority"], "app-backend:9080");
        assert_eq!(v["path"], "/hello?x=\"1\"");
        assert_eq!(v["protocol"], "HTTP/1.1");
        assert_eq!(v["response_code"], 200);
        assert_eq!(v["response_flags"], "-");
        assert_eq!(v["bytes_received"], 0);
        assert_eq!(v["bytes_sent"], 42);
        assert_eq!(v["duration"], 5);
        assert_eq!(v["upstream_host"], "127.0.0.1:9001");
        assert_eq!(
            v["upstream_cluster"],
            "outbound|9080|v1|app-backend.default.svc.cluster.local"
        );
        assert_eq!(v["route_name"], "app-backend.0");
        assert_eq!(v["x_request_id"], "abc");
        assert!(v["trace_id"].is_null());
        assert_eq!(v.as_object().unwrap().len(), 15);
    }

    #[test]
    fn json_strings_are_escaped() {
        let mut e = entry();
        e.path = "/a\"b\\c\nd\u{1}é".into();
        let line = e.format(AccessLogFormat::Json);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["path"], "/a\"b\\c\nd\u{1}é");
        assert!(line.contains("\\u0001"), "{line}");
    }

    #[test]
    fn escape_scan_finds_every_special_byte_at_every_offset() {
        for len in 0..20 {
            let plain = "a".repeat(len);
            assert!(!needs_escape(plain.as_bytes()));
            for pos in 0..len {
                for special in [b'"', b'\\', b'\n', 0x00, 0x1f] {
                    let mut v = plain.clone().into_bytes();
                    v[pos] = special;
                    assert!(needs_escape(&v), "{len} {pos} {special}");
                }
                let mut v = plain.clone().into_bytes();
                v[pos] = 0x20;
                assert!(!needs_escape(&v));
            }
        }
        let mut out = String::new();
        for n in [0, 7, 10, 4_294_967_295, u64::MAX] {
            out.clear();
            push_u64(&mut out, n);
            assert_eq!(out, n.to_string());
        }
    }

    #[test]
    fn text_line() {
        let line = entry().format(AccessLogFormat::Text);
        assert_eq!(
            line,
            "[2024-05-01T12:00:00.123Z] \"GET /hello?x=\"1\" HTTP/1.1\" 200 - 0 42 5 \"abc\" \
             \"app-backend:9080\" \"127.0.0.1:9001\" \
             outbound|9080|v1|app-backend.default.svc.cluster.local app-backend.0 -"
        );
    }

    #[test]
    fn writer_thread_writes_lines() {
        let out = Shared::default();
        let log = AccessLog::with_writer(
            AccessLogFormat::Json,
            16,
            Box::new(out.clone()),
            Counter::default(),
        )
        .unwrap();
        assert!(log.enabled());
        log.log(entry());
        log.log(entry());
        log.close();
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text.lines().all(|l| l.starts_with("{\"start_time\":")));
    }

    /// A writer that blocks until released, to fill the queue.
    struct Gate(Arc<(Mutex<bool>, Condvar)>, Shared);

    impl Gate {
        fn wait(&self) {
            let (lock, cv) = &*self.0;
            let mut open = lock.lock().unwrap();
            while !*open {
                open = cv.wait(open).unwrap();
            }
        }
    }

    impl Write for Gate {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.wait();
            self.1.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            // The writer flushes whenever its queue is empty, so this blocks it right away.
            self.wait();
            Ok(())
        }
    }

    #[test]
    fn full_queue_drops_and_counts_without_blocking() {
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let out = Shared::default();
        let dropped = Counter::default();
        // The writer is stuck in a flush: two lines fit in the queue, the writer holds at most
        // one more, the rest are dropped.
        let log = AccessLog::with_writer(
            AccessLogFormat::Json,
            2,
            Box::new(Gate(gate.clone(), out.clone())),
            dropped.clone(),
        )
        .unwrap();
        let started = std::time::Instant::now();
        for _ in 0..10 {
            log.log(entry());
        }
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "log() blocked"
        );
        let dropped_now = log.dropped();
        assert!(dropped_now >= 7, "dropped {dropped_now}");
        {
            let (lock, cv) = &*gate;
            *lock.lock().unwrap() = true;
            cv.notify_all();
        }
        log.close();
        let written = String::from_utf8(out.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .count() as u64;
        assert_eq!(written + dropped.get(), 10);
    }

    #[test]
    fn disabled_log_counts_nothing() {
        let log = AccessLog::start(&AccessLogConfig::default(), Counter::default()).unwrap();
        assert!(!log.enabled());
        log.log(entry());
        assert_eq!(log.dropped(), 0);
    }
}
