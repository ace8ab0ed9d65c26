//! The optional access log: one line per request (JSON or combined), handed through a bounded
//! channel to a writer thread so a slow disk never blocks a request; when the channel is full
//! (8192 lines waiting) a line is dropped, counted in `tollgate_access_log_dropped_total` and,
//! at each power of two, in a warning. Never a query string, key, password or token.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};

use crate::config::node::{AccessLogConf, LogFormat};

/// Lines waiting for the writer thread, at most; more are dropped (and counted).
pub(crate) const QUEUE: usize = 8192;

/// Bytes of waiting lines the writer gathers into one write, at most (a line longer than this
/// is written alone).
const BATCH: usize = 64 * 1024;

/// How long the writer lets lines gather after a write while they keep coming: the most a line
/// waits under load.
const GATHER: std::time::Duration = std::time::Duration::from_millis(10);

/// One request, as the access log shows it.
pub(crate) struct Entry<'a> {
    pub time: std::time::SystemTime,
    pub remote_addr: &'a str,
    pub method: &'a str,
    /// Path only, without the query.
    pub path: &'a str,
    pub status: u16,
    pub bytes_sent: usize,
    pub request_time: f64,
    pub upstream_time: Option<f64>,
    pub route: &'a str,
    pub service: &'a str,
    pub consumer: &'a str,
    pub credential: &'a str,
    pub upstream_addr: &'a str,
    /// `HTTP/1.1`, `HTTP/2.0`: for the combined format.
    pub protocol: &'a str,
    /// Combined format only ("" is fine for JSON; see [`AccessLog::shows_client_headers`]).
    pub referer: &'a str,
    pub user_agent: &'a str,
    /// The request-id plugin's id, when it ran ("" otherwise; JSON only then).
    pub request_id: &'a str,
}

pub(crate) struct AccessLog {
    tx: SyncSender<Vec<u8>>,
    format: LogFormat,
    dropped: AtomicU64,
    /// Lines queued and not yet written.
    queued: std::sync::Arc<AtomicU64>,
}

impl AccessLog {
    /// Opens the destination and starts the writer thread.
    pub(crate) fn start(conf: &AccessLogConf) -> Result<AccessLog, String> {
        let mut out: Box<dyn Write + Send> = if conf.path == "stderr" {
            Box::new(std::io::stderr())
        } else {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&conf.path)
                .map_err(|e| format!("access_log.path `{}`: {e}", conf.path))?;
            Box::new(f)
        };
        let (tx, rx) = sync_channel::<Vec<u8>>(QUEUE);
        let queued = std::sync::Arc::new(AtomicU64::new(0));
        let written = queued.clone();
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_lines(&rx, &mut *out, &written))
            .map_err(|e| format!("cannot start the access log thread: {e}"))?;
        Ok(AccessLog {
            tx,
            format: conf.format,
            dropped: AtomicU64::new(0),
            queued,
        })
    }

    pub(crate) fn log(&self, e: &Entry<'_>) {
        let line = match self.format {
            LogFormat::Json => json_line(e),
            LogFormat::Combined => combined_line(e).into_bytes(),
        };
        self.queued.fetch_add(1, Ordering::Relaxed);
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.tx.try_send(line) {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            crate::metrics::ACCESS_LOG_DROPPED.inc();
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                log::warn!("access log is behind: {n} lines dropped so far");
            }
        }
    }
}

impl AccessLog {
    /// Whether lines show `Referer` and `User-Agent` (the combined format; JSON does not).
    pub(crate) fn shows_client_headers(&self) -> bool {
        matches!(self.format, LogFormat::Combined)
    }

    /// True once every queued line is written.
    pub(crate) fn is_flushed(&self) -> bool {
        self.queued.load(Ordering::Relaxed) == 0
    }
}

/// The writer thread: waits for a line, writes it with whatever else is queued, then lets lines
/// gather for [`GATHER`] and writes them at once, until none came during a pause (then it waits
/// again). Under load the
/// request threads never wake it (it is not waiting): no wake-up and no write per request.
fn write_lines(rx: &Receiver<Vec<u8>>, out: &mut dyn Write, written: &AtomicU64) {
    let mut batch = Vec::with_capacity(BATCH);
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        loop {
            let (mut lines, mut open, mut drained) = (0, true, false);
            while batch.len() < BATCH {
                let line = match next.take().map_or_else(|| rx.try_recv(), Ok) {
                    Ok(line) => line,
                    Err(e) => {
                        (open, drained) = (e == TryRecvError::Empty, true);
                        break;
                    }
                };
                batch.extend_from_slice(&line);
                lines += 1;
            }
            if lines == 0 {
                break;
            }
            // Whole lines only, so appends from other writers never split one.
            let _ = out.write_all(&batch);
            batch.clear();
            written.fetch_sub(lines, Ordering::Relaxed);
            if !open {
                return;
            }
            // A full batch goes on at once; a drained queue is given time to fill.
            if drained {
                std::thread::sleep(GATHER);
            }
        }
    }
}

/// The JSON line, written straight into one buffer. Keys in alphabetical order and values
/// encoded by serde_json (strings escaped, control characters included; floats as serde_json
/// prints them): the same bytes a `serde_json::Value` map would print, without building one.
fn json_line(e: &Entry<'_>) -> Vec<u8> {
    /// `,"key":value`.
    fn field<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, key: &str, v: &T) {
        out.extend_from_slice(b",\"");
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\":");
        // Writing into a Vec cannot fail, and these values always serialize.
        let _ = serde_json::to_writer(&mut *out, v);
    }
    /// `,"key":"value"`: copied as is when nothing in it needs escaping (what serde_json
    /// escapes: `"`, `\\` and control characters below 0x20), else through serde_json.
    fn str_field(out: &mut Vec<u8>, key: &str, v: &str) {
        if v.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
            return field(out, key, v);
        }
        out.extend_from_slice(b",\"");
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\":\"");
        out.extend_from_slice(v.as_bytes());
        out.push(b'"');
    }
    let millis = |t: f64| (t * 1000.0).round() / 1000.0;
    let strings = [
        e.remote_addr,
        e.method,
        e.path,
        e.route,
        e.service,
        e.consumer,
        e.credential,
        e.upstream_addr,
        e.request_id,
    ];
    let mut out = Vec::with_capacity(256 + strings.iter().map(|s| s.len()).sum::<usize>());
    out.extend_from_slice(b"{\"bytes_sent\":");
    let _ = serde_json::to_writer(&mut out, &e.bytes_sent);
    str_field(&mut out, "consumer", e.consumer);
    str_field(&mut out, "credential", e.credential);
    str_field(&mut out, "method", e.method);
    str_field(&mut out, "path", e.path);
    str_field(&mut out, "remote_addr", e.remote_addr);
    if !e.request_id.is_empty() {
        str_field(&mut out, "request_id", e.request_id);
    }
    field(&mut out, "request_time", &millis(e.request_time));
    str_field(&mut out, "route", e.route);
    str_field(&mut out, "service", e.service);
    field(&mut out, "status", &e.status);
    out.extend_from_slice(b",\"time\":\"");
    rfc3339_millis(e.time, &mut out);
    out.push(b'"');
    str_field(&mut out, "upstream_addr", e.upstream_addr);
    field(&mut out, "upstream_time", &e.upstream_time.map(millis));
    out.extend_from_slice(b"}\n");
    out
}

/// `2026-12-03T08:59:07.123Z`, as `humantime::format_rfc3339_millis`; the part up to the
/// seconds is formatted once per second and thread.
fn rfc3339_millis(t: std::time::SystemTime, out: &mut Vec<u8>) {
    thread_local! {
        static LAST: std::cell::Cell<(u64, [u8; 19])> = const { std::cell::Cell::new((u64::MAX, [0; 19])) };
    }
    let Ok(d) = t.duration_since(std::time::UNIX_EPOCH) else {
        out.extend_from_slice(humantime::format_rfc3339_millis(t).to_string().as_bytes());
        return;
    };
    let secs = d.as_secs();
    let (cached, mut prefix) = LAST.get();
    if cached != secs {
        // `YYYY-MM-DDTHH:MM:SSZ`; other shapes (years past 9999) are written whole.
        let whole = humantime::format_rfc3339_seconds(t).to_string();
        let Some(p) = whole.as_bytes().get(..19).filter(|_| whole.len() == 20) else {
            out.extend_from_slice(humantime::format_rfc3339_millis(t).to_string().as_bytes());
            return;
        };
        prefix.copy_from_slice(p);
        LAST.set((secs, prefix));
    }
    let ms = d.subsec_millis();
    out.extend_from_slice(&prefix);
    out.extend_from_slice(&[
        b'.',
        b'0' + (ms / 100) as u8,
        b'0' + (ms / 10 % 10) as u8,
        b'0' + (ms % 10) as u8,
        b'Z',
    ]);
}

/// nginx's `combined` format; the remote user is the consumer. The request shows the path
/// without its query (which may carry a credential).
fn combined_line(e: &Entry<'_>) -> String {
    let t = humantime::format_rfc3339_seconds(e.time).to_string();
    // 2026-11-23T16:08:56Z -> 23/Nov/2026:16:08:56 +0000
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = t
        .get(5..7)
        .and_then(|m| m.parse::<usize>().ok())
        .and_then(|m| months.get(m.wrapping_sub(1)))
        .unwrap_or(&"Jan");
    let local = format!(
        "{}/{}/{}:{} +0000",
        t.get(8..10).unwrap_or("01"),
        month,
        t.get(0..4).unwrap_or("1970"),
        t.get(11..19).unwrap_or("00:00:00")
    );
    let dash = |v: &str| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.replace('"', "\\\"")
        }
    };
    format!(
        "{} - {} [{}] \"{} {} {}\" {} {} \"{}\" \"{}\"\n",
        e.remote_addr,
        dash(e.consumer),
        local,
        e.method,
        e.path,
        e.protocol,
        e.status,
        e.bytes_sent,
        dash(e.referer),
        dash(e.user_agent)
    )
}

/// A `Referer` as the access log shows it: without userinfo, query or fragment, which may hold
/// credentials (`?apikey=...`, `https://user:pass@host/`).
pub(crate) fn redact_referer(referer: &str) -> std::borrow::Cow<'_, str> {
    let cut = referer.find(['?', '#']).unwrap_or(referer.len());
    let base = &referer[..cut];
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    match base[authority_start..authority_end].rfind('@') {
        Some(at) => format!(
            "{}{}",
            &base[..authority_start],
            &base[authority_start + at + 1..]
        )
        .into(),
        None => base.into(),
    }
}

#[cfg(test)]
mod redact_tests {
    use super::redact_referer;

    #[test]
    fn referer_loses_query_fragment_and_userinfo() {
        assert_eq!(redact_referer("https://a.b/p?apikey=k#x"), "https://a.b/p");
        assert_eq!(redact_referer("https://u:pw@a.b/p/q"), "https://a.b/p/q");
        assert_eq!(redact_referer("/rel/path?x"), "/rel/path");
        assert_eq!(redact_referer(""), "");
    }
}

#[cfg(test)]
mod json_tests {
    use super::{Entry, json_line};

    /// The line as the former `serde_json::Value` map printed it: the reference format.
    fn reference(e: &Entry<'_>) -> String {
        let mut s: serde_json::Value = serde_json::json!({
            "time": humantime::format_rfc3339_millis(e.time).to_string(),
            "remote_addr": e.remote_addr,
            "method": e.method,
            "path": e.path,
            "status": e.status,
            "bytes_sent": e.bytes_sent,
            "request_time": (e.request_time * 1000.0).round() / 1000.0,
            "upstream_time": e.upstream_time.map(|t| (t * 1000.0).round() / 1000.0),
            "route": e.route,
            "service": e.service,
            "consumer": e.consumer,
            "credential": e.credential,
            "upstream_addr": e.upstream_addr,
        });
        if !e.request_id.is_empty() {
            s["request_id"] = e.request_id.into();
        }
        let mut s = s.to_string();
        s.push('\n');
        s
    }

    #[test]
    fn same_bytes_as_the_value_map() {
        let epoch = std::time::UNIX_EPOCH;
        let times = [
            epoch,
            epoch + std::time::Duration::from_millis(1_764_752_347_007),
            epoch + std::time::Duration::from_nanos(1_764_752_347_999_999_999),
            epoch + std::time::Duration::from_secs(253_402_300_799),
        ];
        let nasty = "a\"b\\c\nd\re\tf\u{0}\u{1b}[31m\u{7f}\u{2028}é\u{1F600}";
        let floats = [
            0.0,
            0.0004,
            0.0005,
            0.012345,
            1.0,
            2.5,
            1234567.891,
            f64::NAN,
            1e300,
        ];
        for (i, time) in times.into_iter().enumerate() {
            for (j, &rt) in floats.iter().enumerate() {
                // Plain, needing escapes, and non-ASCII that is copied as is.
                let s = |plain: &'static str| match (i + j) % 3 {
                    0 => plain,
                    1 => nasty,
                    _ => "é\u{7f}\u{2028}\u{1F600}/x",
                };
                let e = Entry {
                    time,
                    remote_addr: s("127.0.0.1"),
                    method: s("GET"),
                    path: s("/p/q"),
                    status: [200, 0, 404, 65535][j % 4],
                    bytes_sent: [0, 10, usize::MAX][j % 3],
                    request_time: rt,
                    upstream_time: (j % 3 != 0).then_some(floats[(j + 3) % floats.len()]),
                    route: s("r1"),
                    service: s(""),
                    consumer: s("alice"),
                    credential: s("alice/credentials/key"),
                    upstream_addr: s("127.0.0.1:1980"),
                    protocol: "HTTP/1.1",
                    referer: "",
                    user_agent: "",
                    request_id: ["", "4f1c-id", nasty][j % 3],
                };
                let line = String::from_utf8(json_line(&e)).expect("utf-8");
                assert_eq!(line, reference(&e));
            }
        }
    }
}

#[cfg(test)]
mod writer_tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn every_line_is_written_once_in_order_and_the_writer_stops_with_the_sender() {
        let (tx, rx) = sync_channel::<Vec<u8>>(QUEUE);
        let queued = Arc::new(AtomicU64::new(0));
        let written = queued.clone();
        let writer = std::thread::spawn(move || {
            let mut out = Vec::new();
            write_lines(&rx, &mut out, &written);
            out
        });
        let mut want = Vec::new();
        for i in 0..5000 {
            // Short lines, and now and then one longer than a whole batch.
            let pad = if i % 1000 == 999 { BATCH + 1 } else { i % 100 };
            let line = format!("line {i} {}\n", "x".repeat(pad)).into_bytes();
            want.extend_from_slice(&line);
            queued.fetch_add(1, Ordering::Relaxed);
            tx.send(line).unwrap();
        }
        drop(tx);
        let out = writer.join().unwrap();
        assert!(out == want, "lines lost, repeated or reordered");
        assert_eq!(queued.load(Ordering::Relaxed), 0);
    }
}
