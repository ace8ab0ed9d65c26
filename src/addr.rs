//! Network addresses written without allocating.

use std::net::IpAddr;

/// Writes an IP into `buf` without allocating; "" when unknown. IPv4 by hand: `Display` goes
/// through the formatter's padding machinery, over a thousand instructions per address.
pub fn ip_str(ip: Option<IpAddr>, buf: &mut [u8; 46]) -> &str {
    use std::io::Write;
    match ip {
        None => "",
        Some(IpAddr::V4(v4)) => {
            let mut n = 0;
            for (i, o) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    buf[n] = b'.';
                    n += 1;
                }
                if o >= 100 {
                    buf[n] = b'0' + o / 100;
                    n += 1;
                }
                if o >= 10 {
                    buf[n] = b'0' + (o / 10) % 10;
                    n += 1;
                }
                buf[n] = b'0' + o % 10;
                n += 1;
            }
            std::str::from_utf8(&buf[..n]).unwrap_or("")
        }
        Some(ip) => {
            let mut cur = std::io::Cursor::new(&mut buf[..]);
            if write!(cur, "{ip}").is_err() {
                return "";
            }
            let n = cur.position() as usize;
            std::str::from_utf8(&buf[..n]).unwrap_or("")
        }
    }
}
