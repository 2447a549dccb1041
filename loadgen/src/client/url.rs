//! The few URL shapes loadgen needs: `ws://host:port/path?query` and `http://host:port/path`.
//! (`wss://` is not supported: benchmarks run on plain sockets; put TLS in front separately.)

use anyhow::{bail, Context as _};

/// A parsed `ws://` or `http://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// Host as written (name or address).
    pub host: String,
    /// Port (default 80).
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path_and_query: String,
}

impl Url {
    /// Parses `scheme://host[:port][/path][?query]` for `scheme` = `ws` or `http`.
    pub fn parse(s: &str, scheme: &str) -> anyhow::Result<Url> {
        let rest = s
            .strip_prefix(scheme)
            .and_then(|r| r.strip_prefix("://"))
            .with_context(|| format!("{s:?} is not a {scheme}:// URL"))?;
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_owned()
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
                h,
                p.parse::<u16>()
                    .with_context(|| format!("bad port in {s:?}"))?,
            ),
            _ => (authority, 80),
        };
        if host.is_empty() {
            bail!("no host in {s:?}");
        }
        Ok(Url {
            host: host.trim_matches(['[', ']']).to_owned(),
            port,
            path_and_query: path,
        })
    }

    /// The path without query or trailing `/`: the prefix a service (control) may sit under
    /// (`http://host/prefix`), to which API paths are appended.
    pub fn base_path(&self) -> &str {
        self.path_and_query
            .split('?')
            .next()
            .unwrap_or("")
            .trim_end_matches('/')
    }

    /// `host:port` for the `Host` header and for name resolution.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// A copy with `key=value` appended to the query (value percent-encoded).
    pub fn with_query(&self, key: &str, value: &str) -> Url {
        let sep = if self.path_and_query.contains('?') {
            '&'
        } else {
            '?'
        };
        let mut u = self.clone();
        u.path_and_query = format!(
            "{}{sep}{key}={}",
            self.path_and_query,
            percent_encode(value)
        );
        u
    }

    /// Whether the query already has `key=`.
    pub fn has_query_key(&self, key: &str) -> bool {
        self.path_and_query
            .split_once('?')
            .is_some_and(|(_, q)| q.split('&').any(|kv| kv.split('=').next() == Some(key)))
    }
}

/// Percent-encodes everything outside RFC 3986's unreserved set.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ws_and_http() {
        let u = Url::parse("ws://127.0.0.1:9090/ws", "ws").expect("ws");
        assert_eq!(
            (u.host.as_str(), u.port, u.path_and_query.as_str()),
            ("127.0.0.1", 9090, "/ws")
        );
        let u = Url::parse("http://ctl:8080", "http").expect("http");
        assert_eq!((u.port, u.path_and_query.as_str()), (8080, "/"));
        let u = Url::parse("ws://h/echo?x=1", "ws").expect("default port");
        assert_eq!(u.port, 80);
        assert!(Url::parse("wss://h/", "ws").is_err());
        assert!(Url::parse("ws://h:notaport/", "ws").is_err());
    }

    #[test]
    fn query_building() {
        let u = Url::parse("ws://h:1/ws", "ws")
            .expect("url")
            .with_query("userId", "a b@c");
        assert_eq!(u.path_and_query, "/ws?userId=a%20b%40c");
        let u = u.with_query("lastOffset", "7");
        assert!(u.path_and_query.ends_with("&lastOffset=7"));
        assert!(u.has_query_key("userId"));
        assert!(!u.has_query_key("user"));
    }
}
