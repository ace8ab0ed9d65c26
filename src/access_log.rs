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
    /// The client's address; "" in the line when unknown.
    pub remote_addr: Option<std::net::IpAddr>,
    pub method: &'a str,
    /// Path only, without the query.
    pub path: &'a str,
    pub status: u16,
    pub bytes_sent: usize,
    pub request_time: std::time::Duration,
    pub upstream_time: Option<std::time::Duration>,
    pub route: &'a str,
    pub service: &'a str,
    pub consumer: &'a str,
    pub credential: &'a str,
    /// The upstream's address, once one was chosen ("" in the line otherwise).
    pub upstream_addr: Option<std::net::SocketAddr>,
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
/// encoded as serde_json encodes them (strings escaped, control characters included; durations
/// as seconds rounded to the millisecond, printed as serde_json prints that `f64`): the same
/// bytes a `serde_json::Value` map would print, without building one.
fn json_line(e: &Entry<'_>) -> Vec<u8> {
    /// `key` (`,"name":`) and the string `v`: copied as is when nothing in it needs escaping,
    /// else through serde_json.
    #[inline(always)]
    fn str_field(out: &mut Vec<u8>, key: &'static [u8], v: &str) {
        if needs_escape(v.as_bytes()) {
            out.extend_from_slice(key);
            // Writing into a Vec cannot fail, and a string always serializes.
            let _ = serde_json::to_writer(&mut *out, v);
        } else {
            plain_field(out, key, v.as_bytes());
        }
    }
    /// `key` and `v` in quotes, as is: ASCII that needs no escaping (an address).
    #[inline(always)]
    fn plain_field(out: &mut Vec<u8>, key: &'static [u8], v: &[u8]) {
        out.extend_from_slice(key);
        out.push(b'"');
        out.extend_from_slice(v);
        out.push(b'"');
    }
    let strings = [
        e.method,
        e.path,
        e.route,
        e.service,
        e.consumer,
        e.credential,
        e.request_id,
    ];
    let mut out = Vec::with_capacity(320 + strings.iter().map(|s| s.len()).sum::<usize>());
    let (mut remote, mut upstream) = ([0u8; 46], [0u8; 64]);
    out.extend_from_slice(b"{\"bytes_sent\":");
    let _ = serde_json::to_writer(&mut out, &e.bytes_sent);
    str_field(&mut out, b",\"consumer\":", e.consumer);
    str_field(&mut out, b",\"credential\":", e.credential);
    str_field(&mut out, b",\"method\":", e.method);
    str_field(&mut out, b",\"path\":", e.path);
    let remote = crate::addr::ip_bytes(e.remote_addr, &mut remote);
    plain_field(&mut out, b",\"remote_addr\":", remote);
    if !e.request_id.is_empty() {
        str_field(&mut out, b",\"request_id\":", e.request_id);
    }
    out.extend_from_slice(b",\"request_time\":");
    write_millis(&mut out, e.request_time);
    str_field(&mut out, b",\"route\":", e.route);
    str_field(&mut out, b",\"service\":", e.service);
    out.extend_from_slice(b",\"status\":");
    let _ = serde_json::to_writer(&mut out, &e.status);
    out.extend_from_slice(b",\"time\":\"");
    rfc3339_millis(e.time, &mut out);
    let upstream = e.upstream_addr.map_or(&b""[..], |a| {
        crate::addr::socket_addr_bytes(a, &mut upstream)
    });
    plain_field(&mut out, b"\",\"upstream_addr\":", upstream);
    out.extend_from_slice(b",\"upstream_time\":");
    match e.upstream_time {
        Some(t) => write_millis(&mut out, t),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b"}\n");
    out
}

/// Whether a JSON string needs escapes (a `"`, `\\` or control character below 0x20), eight
/// bytes at a time.
fn needs_escape(s: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    /// Whether any byte of `x` is below `n` (n <= 0x80): exact for "any".
    fn any_below(x: u64, n: u8) -> bool {
        x.wrapping_sub(ONES * n as u64) & !x & HIGH != 0
    }
    let word = |c: &[u8]| {
        // Short strings are padded with a harmless byte.
        let mut w = [b'a'; 8];
        w[..c.len()].copy_from_slice(c);
        let x = u64::from_le_bytes(w);
        any_below(x, 0x20)
            || any_below(x ^ (ONES * b'"' as u64), 1)
            || any_below(x ^ (ONES * b'\\' as u64), 1)
    };
    let mut chunks = s.chunks_exact(8);
    chunks.any(word) || word(chunks.remainder())
}

/// A duration in seconds, rounded half up to the millisecond, as serde_json prints that many
/// milliseconds over 1000 as an `f64` (`0.0`, `0.012`, `2.5`): whole seconds, a point and one to
/// three digits. Integer arithmetic only.
fn write_millis(out: &mut Vec<u8>, d: std::time::Duration) {
    let ms = d
        .as_secs()
        .saturating_mul(1000)
        .saturating_add(u64::from((d.subsec_nanos() + 500_000) / 1_000_000));
    out.extend_from_slice(crate::addr::decimal(ms / 1000, &mut [0; 20]));
    let frac = (ms % 1000) as u16;
    let frac = [
        b'.',
        b'0' + (frac / 100) as u8,
        b'0' + (frac / 10 % 10) as u8,
        b'0' + (frac % 10) as u8,
    ];
    // Trailing zeros go, but one digit stays: `1.0`, `1.5`, `1.25`.
    let keep = if frac[3] != b'0' {
        4
    } else if frac[2] != b'0' {
        3
    } else {
        2
    };
    out.extend_from_slice(&frac[..keep]);
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
    let mut remote = [0u8; 46];
    format!(
        "{} - {} [{}] \"{} {} {}\" {} {} \"{}\" \"{}\"\n",
        crate::addr::ip_str(e.remote_addr, &mut remote),
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
    use std::time::Duration;

    /// A duration as the former line held it: seconds, rounded to the millisecond, as `f64`.
    fn millis(d: Duration) -> f64 {
        ((d.as_nanos() + 500_000) / 1_000_000) as f64 / 1000.0
    }

    /// The line as the former `serde_json::Value` map printed it: the reference format.
    fn reference(e: &Entry<'_>) -> String {
        let mut s: serde_json::Value = serde_json::json!({
            "time": humantime::format_rfc3339_millis(e.time).to_string(),
            "remote_addr": e.remote_addr.map_or(String::new(), |a| a.to_string()),
            "method": e.method,
            "path": e.path,
            "status": e.status,
            "bytes_sent": e.bytes_sent,
            "request_time": millis(e.request_time),
            "upstream_time": e.upstream_time.map(millis),
            "route": e.route,
            "service": e.service,
            "consumer": e.consumer,
            "credential": e.credential,
            "upstream_addr": e.upstream_addr.map_or(String::new(), |a| a.to_string()),
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
            epoch + Duration::from_millis(1_764_752_347_007),
            epoch + Duration::from_nanos(1_764_752_347_999_999_999),
            epoch + Duration::from_secs(253_402_300_799),
        ];
        let nasty = "a\"b\\c\nd\re\tf\u{0}\u{1b}[31m\u{7f}\u{2028}é\u{1F600}";
        let durations = [
            Duration::ZERO,
            Duration::from_micros(400),
            Duration::from_micros(500),
            Duration::from_nanos(12_345_678),
            Duration::from_secs(1),
            Duration::from_millis(2500),
            Duration::from_nanos(1_234_567_891_499_999),
            Duration::from_secs(86_400 * 365),
        ];
        for (i, time) in times.into_iter().enumerate() {
            for (j, &rt) in durations.iter().enumerate() {
                // Plain, needing escapes, and non-ASCII that is copied as is.
                let s = |plain: &'static str| match (i + j) % 3 {
                    0 => plain,
                    1 => nasty,
                    _ => "é\u{7f}\u{2028}\u{1F600}/x",
                };
                let e = Entry {
                    time,
                    remote_addr: [
                        None,
                        Some([127, 0, 0, 1].into()),
                        Some("::1".parse().unwrap()),
                    ][j % 3],
                    method: s("GET"),
                    path: s("/p/q"),
                    status: [200, 0, 404, 65535][j % 4],
                    bytes_sent: [0, 10, usize::MAX][j % 3],
                    request_time: rt,
                    upstream_time: (j % 3 != 0).then_some(durations[(j + 3) % durations.len()]),
                    route: s("r1"),
                    service: s(""),
                    consumer: s("alice"),
                    credential: s("alice/credentials/key"),
                    upstream_addr: [None, Some("10.0.0.255:1980".parse().unwrap())][i % 2],
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

    /// Every millisecond up to 70 s, the nanoseconds around each rounding point, and large
    /// durations print as serde_json prints the rounded milliseconds over 1000 as `f64`.
    #[test]
    fn millis_as_serde_json_prints_them() {
        let spots = (0..70_000u64)
            .flat_map(|ms| {
                let n = ms * 1_000_000;
                [n, n + 499_999, n + 500_000, n + 999_999]
            })
            .map(Duration::from_nanos)
            .chain([
                Duration::from_secs(86_400),
                Duration::from_nanos(999_999_999_999_400_000),
                Duration::from_secs(999_999_999),
            ]);
        for d in spots {
            let mut ours = Vec::new();
            super::write_millis(&mut ours, d);
            let want = serde_json::to_string(&millis(d)).unwrap();
            assert_eq!(String::from_utf8(ours).unwrap(), want, "{d:?}");
        }
    }

    /// The word-at-a-time check agrees with the byte-by-byte one at every length and position.
    #[test]
    fn needs_escape_finds_every_escape_at_every_position() {
        for len in 0..40 {
            for pos in 0..len {
                for b in 0u8..=255 {
                    let mut s = vec![b'x'; len];
                    s[pos] = b;
                    let want = b < 0x20 || b == b'"' || b == b'\\';
                    assert_eq!(super::needs_escape(&s), want, "{len} {pos} {b}");
                }
            }
            assert!(!super::needs_escape(&vec![b'~'; len]));
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
