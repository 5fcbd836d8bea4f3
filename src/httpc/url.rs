//! `http://host[:port]/path?query` URLs, parsed into what a request needs: the address to
//! connect to, the `Host` header and the request target. Pure; `https://` and other schemes
//! are refused by name, so that a config asking for TLS fails loudly rather than going out
//! in clear.
#![forbid(unsafe_code)]

/// An `http://` URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Url {
    /// The host as written (an IPv6 literal keeps its brackets), lowercased.
    pub host: String,
    /// The port, 80 when the URL names none.
    pub port: u16,
    /// Path and query, the request target: `/` at least. The fragment is dropped.
    pub target: String,
}

/// Why a URL is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Not `http://`.
    #[error("unsupported scheme in {0:?}: only http:// is supported")]
    Scheme(String),
    /// No host, a bad port, or characters that cannot go in a request line.
    #[error("malformed URL {0:?}")]
    Malformed(String),
}

impl Url {
    /// Parses `url`.
    pub fn parse(url: &str) -> Result<Self, UrlError> {
        let bad = || UrlError::Malformed(url.to_owned());
        let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
        if !scheme.eq_ignore_ascii_case("http") {
            return Err(UrlError::Scheme(url.to_owned()));
        }
        if rest.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(bad());
        }
        let rest = rest.split('#').next().unwrap_or("");
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(split);
        if authority.contains('@') {
            return Err(bad());
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (addr, after) = v6.split_once(']').ok_or_else(bad)?;
            (format!("[{addr}]"), after.strip_prefix(':'))
        } else {
            match authority.split_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (authority.to_owned(), None),
            }
        };
        if host.is_empty() || host == "[]" {
            return Err(bad());
        }
        let port = match port {
            None | Some("") => 80,
            Some(p) => p.parse().ok().filter(|&p| p != 0).ok_or_else(bad)?,
        };
        let target = match target {
            "" => "/".to_owned(),
            t if t.starts_with('?') => format!("/{t}"),
            t => t.to_owned(),
        };
        Ok(Self {
            host: host.to_ascii_lowercase(),
            port,
            target,
        })
    }

    /// `host:port`, to connect to and to send as `Host`.
    #[must_use]
    pub fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        let u = Url::parse("http://127.0.0.1:8085/api/v1/streams?x=1#frag").expect("valid");
        assert_eq!((u.host.as_str(), u.port), ("127.0.0.1", 8085));
        assert_eq!(u.target, "/api/v1/streams?x=1");
        let u = Url::parse("HTTP://Hooks.Example").expect("valid");
        assert_eq!(
            (u.authority(), u.target.as_str()),
            ("hooks.example:80".into(), "/")
        );
        let u = Url::parse("http://[::1]:9/?a").expect("valid");
        assert_eq!(
            (u.authority(), u.target.as_str()),
            ("[::1]:9".into(), "/?a")
        );
    }

    #[test]
    fn refuses() {
        assert!(matches!(Url::parse("https://a/"), Err(UrlError::Scheme(_))));
        for bad in [
            "a/b",
            "http://",
            "http://:80/",
            "http://a:x/",
            "http://a:0/",
            "http://a:70000/",
            "http://u@a/",
            "http://a/b c",
            "http://[::1/",
        ] {
            assert!(
                matches!(Url::parse(bad), Err(UrlError::Malformed(_))),
                "{bad}"
            );
        }
    }
}
