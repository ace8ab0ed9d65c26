//! Network addresses: `host:port` parsing, and IPs written without allocating.

use std::net::{IpAddr, SocketAddr};

/// Writes an IP into `buf` without allocating; "" when unknown. IPv4 by hand: `Display` goes
/// through the formatter's padding machinery, over a thousand instructions per address.
pub(crate) fn ip_str(ip: Option<IpAddr>, buf: &mut [u8; 46]) -> &str {
    std::str::from_utf8(ip_bytes(ip, buf)).unwrap_or("")
}

/// Every octet's decimal digits followed by a dot (left-aligned), and how many bytes that is.
const OCTETS: [([u8; 4], u8); 256] = {
    let mut table = [([0; 4], 0); 256];
    let mut o = 0;
    while o < 256 {
        let (h, t, u) = ((o / 100) as u8, (o / 10 % 10) as u8, (o % 10) as u8);
        table[o] = if o >= 100 {
            ([b'0' + h, b'0' + t, b'0' + u, b'.'], 4)
        } else if o >= 10 {
            ([b'0' + t, b'0' + u, b'.', 0], 3)
        } else {
            ([b'0' + u, b'.', 0, 0], 2)
        };
        o += 1;
    }
    table
};

/// [`ip_str`] as bytes (ASCII), for a writer that needs no `&str` and its UTF-8 check.
pub(crate) fn ip_bytes(ip: Option<IpAddr>, buf: &mut [u8; 46]) -> &[u8] {
    use std::io::Write;
    match ip {
        None => b"",
        Some(IpAddr::V4(v4)) => {
            // Each octet's digits and a dot, from a table; the last dot is cut off.
            let mut n = 0;
            for o in v4.octets() {
                let (text, len) = OCTETS[usize::from(o)];
                buf[n..n + 4].copy_from_slice(&text);
                n += usize::from(len);
            }
            &buf[..n - 1]
        }
        Some(ip) => {
            let mut cur = std::io::Cursor::new(&mut buf[..]);
            if write!(cur, "{ip}").is_err() {
                return b"";
            }
            let n = cur.position() as usize;
            &buf[..n]
        }
    }
}

/// `addr` as `Display` writes it (`1.2.3.4:80`, `[::1]:80`), into `buf` without allocating.
pub(crate) fn socket_addr_bytes(addr: SocketAddr, buf: &mut [u8; 64]) -> &[u8] {
    use std::io::Write;
    let n = match addr {
        SocketAddr::V4(v4) => {
            let mut ip = [0u8; 46];
            let ip = ip_bytes(Some((*v4.ip()).into()), &mut ip);
            let mut port = [0u8; 20];
            let port = decimal(v4.port().into(), &mut port);
            buf[..ip.len()].copy_from_slice(ip);
            buf[ip.len()] = b':';
            buf[ip.len() + 1..ip.len() + 1 + port.len()].copy_from_slice(port);
            ip.len() + 1 + port.len()
        }
        SocketAddr::V6(_) => {
            let mut cur = std::io::Cursor::new(&mut buf[..]);
            if write!(cur, "{addr}").is_err() {
                return b"";
            }
            cur.position() as usize
        }
    };
    &buf[..n]
}

/// `n` in decimal ASCII, written into `buf` by hand (not through the formatter).
pub(crate) fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
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

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for a in [
            "0.0.0.0:0",
            "127.0.0.1:1980",
            "255.255.255.255:65535",
            "10.20.3.4:80",
            "[::1]:8080",
            "[fe80::1%7]:443",
            "[2001:db8::ff00:42:8329]:65535",
        ] {
            let addr: SocketAddr = a.parse().expect("address");
            let mut buf = [0u8; 64];
            assert_eq!(
                socket_addr_bytes(addr, &mut buf),
                addr.to_string().as_bytes()
            );
            let mut buf = [0u8; 46];
            assert_eq!(ip_str(Some(addr.ip()), &mut buf), addr.ip().to_string());
        }
        assert_eq!(ip_str(None, &mut [0; 46]), "");
        for o in 0..=255u8 {
            let ip = std::net::Ipv4Addr::new(o, 255 - o, o / 2, 9);
            assert_eq!(ip_str(Some(ip.into()), &mut [0; 46]), ip.to_string());
        }
        for n in [0, 7, 10, 65535, u64::MAX] {
            assert_eq!(decimal(n, &mut [0; 20]), n.to_string().as_bytes());
        }
    }
}
