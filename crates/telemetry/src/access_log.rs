//! Access log: one line per request, JSON (default) or text, to stdout or a file.
//!
//! The request path never blocks on it: [`AccessLog::log`] is a `try_send` into a bounded
//! channel; when the channel is full the line is dropped and `sluice_access_log_dropped_total`
//! counts it. A dedicated thread formats and writes (stdout and file writes are blocking calls,
//! which must not run on the proxy's async workers), in batches: it sleeps a short window after
//! waking so that lines are written and flushed together.

use std::io::{self, Write};
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

/// The text fields of a line, kept in [`LogText`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextField {
    /// Host / :authority.
    Authority,
    /// Path and query as received.
    Path,
    /// The endpoint (`ip:port`) the request went to.
    UpstreamHost,
    /// The cluster it went to.
    UpstreamCluster,
    /// The route that matched.
    RouteName,
    /// `x-request-id`.
    RequestId,
    /// The mesh client's SPIFFE identity (`%DOWNSTREAM_PEER_URI_SAN%`), over mTLS.
    PeerPrincipal,
    /// Why the proxy answered itself (`%RESPONSE_CODE_DETAILS%`): an authorization or JWT
    /// denial.
    ResponseCodeDetails,
}

const TEXT_FIELDS: usize = 8;

/// A line's text fields in one buffer.
///
/// One allocation per line instead of one per field: the request path fills it and the writer
/// thread frees it, and a cross-thread free costs more than the copy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogText {
    buf: String,
    spans: [(u32, u32); TEXT_FIELDS],
    present: u8,
}

impl LogText {
    /// An empty set with room for `bytes` of text.
    pub fn with_capacity(bytes: usize) -> Self {
        LogText {
            buf: String::with_capacity(bytes),
            ..Default::default()
        }
    }

    /// Sets `field` (a field set twice keeps the last value).
    pub fn set(&mut self, field: TextField, value: &str) {
        let start = self.buf.len();
        self.buf.push_str(value);
        let span = (
            u32::try_from(start).unwrap_or(u32::MAX),
            u32::try_from(self.buf.len()).unwrap_or(u32::MAX),
        );
        self.spans[field as usize] = span;
        self.present |= 1 << field as u8;
    }

    /// The value of `field`, if set.
    pub fn get(&self, field: TextField) -> Option<&str> {
        if self.present & (1 << field as u8) == 0 {
            return None;
        }
        let (start, end) = self.spans[field as usize];
        self.buf.get(start as usize..end as usize)
    }

    /// Bytes of text held.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// True when no text is held.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// One request, as logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogEntry {
    /// When the request started.
    pub start_time: SystemTime,
    /// HTTP method.
    pub method: http::Method,
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
    /// Trace ID, when traced (written as 32 hex digits by the writer thread).
    pub trace_id: Option<u128>,
    /// Authority, path, upstream host and cluster, route name, `x-request-id`.
    pub text: LogText,
}

fn flags_or_dash(flags: &str) -> &str {
    if flags.is_empty() {
        "-"
    } else {
        flags
    }
}

/// Appends `v` as a JSON string literal.
fn push_json_str(out: &mut Vec<u8>, v: &str) {
    out.reserve(v.len() + 2);
    out.push(b'"');
    if !needs_escape(v.as_bytes()) {
        out.extend_from_slice(v.as_bytes());
        out.push(b'"');
        return;
    }
    let mut start = 0;
    for (i, b) in v.bytes().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&v.as_bytes()[start..i]);
        if esc.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(esc);
        }
        start = i + 1;
    }
    out.extend_from_slice(&v.as_bytes()[start..]);
    out.push(b'"');
}

const HEX: &[u8; 16] = b"0123456789abcdef";

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
fn push_u64(out: &mut Vec<u8>, mut v: u64) {
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
    out.extend_from_slice(&buf[i..]);
}

/// Appends `id` as 32 lowercase hex digits.
fn push_trace_id(out: &mut Vec<u8>, id: u128) {
    let mut buf = [0u8; 32];
    crate::trace::propagation::put_hex(&mut buf, id);
    out.extend_from_slice(&buf);
}

/// Formats start times, reusing the date and time of day while the second stays the same.
#[derive(Debug, Default)]
struct StampCache {
    second: Option<u64>,
    /// `YYYY-MM-DDTHH:MM:SS.`
    prefix: [u8; 20],
}

impl StampCache {
    /// Appends `t` as RFC 3339 UTC with milliseconds (`2024-05-01T12:00:00.123Z`).
    fn push(&mut self, out: &mut Vec<u8>, t: SystemTime) {
        let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = since.as_secs();
        if self.second != Some(secs) {
            self.prefix = stamp_prefix(secs);
            self.second = Some(secs);
        }
        out.extend_from_slice(&self.prefix);
        let millis = since.subsec_millis();
        out.extend_from_slice(&[
            b'0' + (millis / 100) as u8,
            b'0' + (millis / 10 % 10) as u8,
            b'0' + (millis % 10) as u8,
            b'Z',
        ]);
    }
}

/// `YYYY-MM-DDTHH:MM:SS.` for `secs` since the epoch.
fn stamp_prefix(secs: u64) -> [u8; 20] {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    let mut out = [0u8; 20];
    let mut at = 0;
    let mut put = |v: u64, width: u32, sep: u8| {
        for i in (0..width).rev() {
            out[at] = b'0' + ((v / 10u64.pow(i)) % 10) as u8;
            at += 1;
        }
        out[at] = sep;
        at += 1;
    };
    put(y.clamp(0, 9999) as u64, 4, b'-');
    put(u64::from(m), 2, b'-');
    put(u64::from(d), 2, b'T');
    put(rem / 3600, 2, b':');
    put((rem % 3600) / 60, 2, b':');
    put(rem % 60, 2, b'.');
    out
}

impl AccessLogEntry {
    /// The line (without the newline) in `format`.
    pub fn format(&self, format: AccessLogFormat) -> String {
        let mut line = Vec::with_capacity(320);
        self.format_into(format, &mut line);
        // Only `&str` pieces and ASCII are written, so this never replaces anything.
        String::from_utf8_lossy(&line).into_owned()
    }

    /// Appends the line (without the newline) in `format` to `out`.
    pub fn format_into(&self, format: AccessLogFormat, out: &mut Vec<u8>) {
        self.write(format, out, &mut StampCache::default());
    }

    /// Written by hand rather than through serde: the writer thread formats every request's
    /// line, and on a proxy sharing one core it competes with the requests themselves.
    fn write(&self, format: AccessLogFormat, out: &mut Vec<u8>, stamps: &mut StampCache) {
        let duration_ms = u64::try_from(self.duration.as_millis()).unwrap_or(u64::MAX);
        let text = |f| self.text.get(f);
        match format {
            AccessLogFormat::Json => {
                // One scan over every text field at once: almost no line has anything to
                // escape, and then each field is copied as it is.
                let escape = needs_escape(self.text.buf.as_bytes());
                let field = |out: &mut Vec<u8>, f| match text(f) {
                    Some(v) if escape => push_json_str(out, v),
                    Some(v) => {
                        out.push(b'"');
                        out.extend_from_slice(v.as_bytes());
                        out.push(b'"');
                    }
                    None => out.extend_from_slice(b"null"),
                };
                out.reserve(self.text.len() + 400);
                // Start time, method (a token), protocol, flags (Envoy's letters) and trace id
                // never need escaping.
                out.extend_from_slice(b"{\"start_time\":\"");
                stamps.push(out, self.start_time);
                out.extend_from_slice(b"\",\"method\":\"");
                out.extend_from_slice(self.method.as_str().as_bytes());
                out.extend_from_slice(b"\",\"authority\":");
                field(out, TextField::Authority);
                out.extend_from_slice(b",\"path\":");
                field(out, TextField::Path);
                out.extend_from_slice(b",\"protocol\":\"");
                out.extend_from_slice(self.protocol.as_bytes());
                out.extend_from_slice(b"\",\"response_code\":");
                push_u64(out, u64::from(self.response_code));
                out.extend_from_slice(b",\"response_flags\":\"");
                out.extend_from_slice(flags_or_dash(&self.response_flags).as_bytes());
                out.extend_from_slice(b"\",\"bytes_received\":");
                push_u64(out, self.bytes_received);
                out.extend_from_slice(b",\"bytes_sent\":");
                push_u64(out, self.bytes_sent);
                out.extend_from_slice(b",\"duration\":");
                push_u64(out, duration_ms);
                out.extend_from_slice(b",\"upstream_host\":");
                field(out, TextField::UpstreamHost);
                out.extend_from_slice(b",\"upstream_cluster\":");
                field(out, TextField::UpstreamCluster);
                out.extend_from_slice(b",\"route_name\":");
                field(out, TextField::RouteName);
                out.extend_from_slice(b",\"x_request_id\":");
                field(out, TextField::RequestId);
                // Security fields only when there is something to say: most lines have neither.
                if text(TextField::PeerPrincipal).is_some() {
                    out.extend_from_slice(b",\"downstream_peer_uri_san\":");
                    field(out, TextField::PeerPrincipal);
                }
                if text(TextField::ResponseCodeDetails).is_some() {
                    out.extend_from_slice(b",\"response_code_details\":");
                    field(out, TextField::ResponseCodeDetails);
                }
                out.extend_from_slice(b",\"trace_id\":");
                match self.trace_id {
                    Some(id) => {
                        out.push(b'"');
                        push_trace_id(out, id);
                        out.push(b'"');
                    }
                    None => out.extend_from_slice(b"null"),
                }
                out.push(b'}');
            }
            AccessLogFormat::Text => {
                let d = |f| text(f).unwrap_or("-");
                // Istio's default text format, reduced to the fields sluice knows.
                out.push(b'[');
                stamps.push(out, self.start_time);
                let _ = write!(
                    out,
                    "] \"{} {} {}\" {} {} {} {} {} \"{}\" \"{}\" \"{}\" {} {} ",
                    self.method,
                    text(TextField::Path).unwrap_or(""),
                    self.protocol,
                    self.response_code,
                    flags_or_dash(&self.response_flags),
                    self.bytes_received,
                    self.bytes_sent,
                    duration_ms,
                    d(TextField::RequestId),
                    text(TextField::Authority).unwrap_or(""),
                    d(TextField::UpstreamHost),
                    d(TextField::UpstreamCluster),
                    d(TextField::RouteName),
                );
                match self.trace_id {
                    Some(id) => push_trace_id(out, id),
                    None => out.push(b'-'),
                }
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
    mut out: Box<dyn Write + Send>,
) {
    // Lines are formatted straight into the batch that is written: no per-line copy.
    let mut batch = Vec::with_capacity(BATCH_BYTES + 1024);
    let mut stamps = StampCache::default();
    // Parked on the channel only while idle; the first line after idleness wakes it.
    while let Some(first) = rx.blocking_recv() {
        add_line(&mut out, &mut batch, &mut stamps, &first, format);
        drop(first);
        std::thread::sleep(BATCH_WINDOW);
        loop {
            match rx.try_recv() {
                Ok(e) => add_line(&mut out, &mut batch, &mut stamps, &e, format),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    write_batch(&mut out, &mut batch);
                    return;
                }
            }
        }
        // Queue drained: make the lines visible before parking again.
        write_batch(&mut out, &mut batch);
    }
    write_batch(&mut out, &mut batch);
}

/// Bytes of lines gathered before a `write`.
const BATCH_BYTES: usize = 64 * 1024;

fn add_line(
    out: &mut impl Write,
    batch: &mut Vec<u8>,
    stamps: &mut StampCache,
    entry: &AccessLogEntry,
    format: AccessLogFormat,
) {
    entry.write(format, batch, stamps);
    batch.push(b'\n');
    if batch.len() >= BATCH_BYTES {
        write_batch(out, batch);
    }
}

fn write_batch(out: &mut impl Write, batch: &mut Vec<u8>) {
    if batch.is_empty() {
        return;
    }
    // A failed write (closed pipe, full disk) drops the lines; draining goes on so senders never
    // block.
    let _ = out.write_all(batch);
    let _ = out.flush();
    batch.clear();
}

/// RFC 3339 UTC time with milliseconds (`2024-05-01T12:00:00.123Z`), as Envoy's `%START_TIME%`.
pub fn rfc3339_millis(t: SystemTime) -> String {
    let mut out = Vec::with_capacity(24);
    StampCache::default().push(&mut out, t);
    String::from_utf8_lossy(&out).into_owned()
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
        let mut text = LogText::with_capacity(128);
        text.set(TextField::Authority, "app-backend:9080");
        text.set(TextField::Path, "/hello?x=\"1\"");
        text.set(TextField::UpstreamHost, "127.0.0.1:9001");
        text.set(
            TextField::UpstreamCluster,
            "outbound|9080|v1|app-backend.default.svc.cluster.local",
        );
        text.set(TextField::RouteName, "app-backend.0");
        text.set(TextField::RequestId, "abc");
        AccessLogEntry {
            start_time: UNIX_EPOCH + Duration::from_millis(1_714_564_800_123),
            method: http::Method::GET,
            protocol: "HTTP/1.1",
            response_code: 200,
            response_flags: String::new(),
            bytes_received: 0,
            bytes_sent: 42,
            duration: Duration::from_micros(5_600),
            trace_id: None,
            text,
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
        e.text.set(TextField::Path, "/a\"b\\c\nd\u{1}é");
        let line = e.format(AccessLogFormat::Json);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["path"], "/a\"b\\c\nd\u{1}é");
        assert!(line.contains("\\u0001"), "{line}");
    }

    #[test]
    fn lines_without_anything_to_escape_are_copied_as_they_are() {
        let mut e = entry();
        e.text.set(TextField::Path, "/clean?a=1");
        e.response_flags = "UF,URX".into();
        let line = e.format(AccessLogFormat::Json);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["path"], "/clean?a=1");
        assert_eq!(v["authority"], "app-backend:9080");
        assert_eq!(v["response_flags"], "UF,URX");
        assert_eq!(v["route_name"], "app-backend.0");
        assert_eq!(v.as_object().unwrap().len(), 15);
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
        let mut out = Vec::new();
        for n in [0, 7, 10, 4_294_967_295, u64::MAX] {
            out.clear();
            push_u64(&mut out, n);
            assert_eq!(out, n.to_string().into_bytes());
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
    fn trace_id_is_32_hex_digits() {
        let mut e = entry();
        e.trace_id = Some(0x0af7_6519_16cd_43dd_8448_eb21_1c80_319c);
        let v: serde_json::Value = serde_json::from_str(&e.format(AccessLogFormat::Json)).unwrap();
        assert_eq!(v["trace_id"], "0af7651916cd43dd8448eb211c80319c");
        e.trace_id = Some(1);
        assert!(e
            .format(AccessLogFormat::Text)
            .ends_with(" 00000000000000000000000000000001"));
    }

    #[test]
    fn stamp_cache_follows_the_clock() {
        let mut stamps = StampCache::default();
        let base = UNIX_EPOCH + Duration::from_millis(1_714_564_799_998);
        for step in [0, 1, 2, 3, 1_000, 86_400_000] {
            let t = base + Duration::from_millis(step);
            let mut out = Vec::new();
            stamps.push(&mut out, t);
            assert_eq!(String::from_utf8(out).unwrap(), rfc3339_millis(t));
        }
        let mut out = Vec::new();
        stamps.push(&mut out, base + Duration::from_millis(2));
        assert_eq!(out, b"2024-05-01T12:00:00.000Z");
    }

    #[test]
    fn log_text_keeps_fields_apart() {
        let mut t = LogText::with_capacity(4);
        assert!(t.is_empty());
        assert_eq!(t.get(TextField::Path), None);
        t.set(TextField::Path, "/a");
        t.set(TextField::Authority, "");
        t.set(TextField::Path, "/b");
        assert_eq!(t.get(TextField::Path), Some("/b"));
        assert_eq!(t.get(TextField::Authority), Some(""));
        assert_eq!(t.get(TextField::RouteName), None);
        assert_eq!(t.len(), 4);
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
