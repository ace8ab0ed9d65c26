//! Network addresses: `host:port` parsing, and IPs written without allocating.

use std::net::IpAddr;

/// Writes an IP into `buf` without allocating; "" when unknown. IPv4 by hand: `Display` goes
/// through the formatter's padding machinery, over a thousand instructions per address.
pub(crate) fn ip_str(ip: Option<IpAddr>, buf: &mut [u8; 46]) -> &str {
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

/// Splits `host:port`, `[v6]:port`, or a bare host (port then comes from the scheme).
pub(crate) fn split_host_port(addr: &str) -> Result<(String, Option<u16>), String> {
    let bad = || format!("invalid address `{addr}`");
    if let Some(rest) = addr.strip_prefix('[') {
        let (host, tail) = rest.split_once(']').ok_or_else(bad)?;
        let port = match tail.strip_prefix(':') {
            Some(p) => Some(p.parse().map_err(|_| bad())?),
            None if tail.is_empty() => None,
            None => return Err(bad()),
        };
        return Ok((host.to_string(), port));
    }
    match addr.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => {
            Ok((host.to_string(), Some(port.parse().map_err(|_| bad())?)))
        }
        Some(_) => Ok((addr.to_string(), None)),
        None if addr.is_empty() => Err(bad()),
        None => Ok((addr.to_string(), None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_forms() {
        assert_eq!(
            split_host_port("127.0.0.1:80").unwrap(),
            ("127.0.0.1".into(), Some(80))
        );
        assert_eq!(
            split_host_port("example.com").unwrap(),
            ("example.com".into(), None)
        );
        assert_eq!(
            split_host_port("[::1]:8080").unwrap(),
            ("::1".into(), Some(8080))
        );
        assert!(split_host_port("a:b").is_err());
    }
}
