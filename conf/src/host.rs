//! Whether a configured host name stays on this machine, for the rule that credentials may
//! travel in clear text only over loopback (an `insecure: true` opt-in says otherwise).

use std::net::IpAddr;

/// True for `localhost` (and names under `.localhost`, RFC 6761), for loopback addresses
/// (`127.0.0.0/8`, `::1`, also in brackets as in a URL) and for the IPv4-mapped form of one.
/// Other names are not resolved: a name is taken to leave the machine.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_end_matches('.');
    let lower = host.to_ascii_lowercase();
    if lower == "localhost" || lower.ends_with(".localhost") {
        return true;
    }
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    match bare.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => a.is_loopback(),
        Ok(IpAddr::V6(a)) => {
            a.is_loopback() || a.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Err(_) => false,
    }
}

/// The host of an `http://` or `https://` URL (brackets of an IPv6 literal kept), without user
/// information and port; `None` when `url` has no such scheme.
pub fn url_host(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if authority.starts_with('[') {
        return Some(authority.split_inclusive(']').next().unwrap_or(authority));
    }
    Some(authority.rsplit_once(':').map_or(authority, |(h, _)| h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost",
            "LOCALHOST",
            "localhost.",
            "db.localhost",
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "[::1]",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "",
            "smtp.example.gov.cn",
            "localhost.example.org",
            "10.0.0.1",
            "0.0.0.0",
            "[::]",
            "128.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    #[test]
    fn hosts_of_urls() {
        assert_eq!(url_host("http://127.0.0.1:9470"), Some("127.0.0.1"));
        assert_eq!(url_host("https://a.example/yunwei/"), Some("a.example"));
        assert_eq!(url_host("http://[::1]:9470/x"), Some("[::1]"));
        assert_eq!(url_host("http://u:p@h:1"), Some("h"));
        assert_eq!(url_host("http://h"), Some("h"));
        assert_eq!(url_host("ftp://h"), None);
    }
}
