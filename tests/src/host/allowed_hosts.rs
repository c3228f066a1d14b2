//! `allowed_outbound_hosts`: which addresses a component may connect to.
//!
//! A subset of Spin's `outbound-networking-config` (checked in spin v3.6):
//! items are `<scheme>://<host>[:<port>]`, each part may be `*`; the host may
//! be `*.domain` or a literal (name or IP); the port may be a number, a range
//! `a..b` (end exclusive), `*`, or omitted (then the scheme's well-known port:
//! postgres 5432, redis 6379, mysql 3306, mqtt 1883, http 80, https 443).
//! Items may be templates over application variables. Not supported here:
//! CIDR hosts, `self`, service chaining.

use crate::host::variables::AppVariables;

/// An `allowed_outbound_hosts` item that could not be understood.
#[derive(Debug, thiserror::Error)]
#[error("invalid allowed_outbound_hosts item {item:?}: {reason}")]
pub struct AllowedHostError {
    item: String,
    reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    Any,
    Suffix(String),
    Literal(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Port {
    Any,
    One(u16),
    Range(u16, u16),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Allowed {
    scheme: Option<String>,
    host: Host,
    port: Port,
}

/// A component's parsed `allowed_outbound_hosts`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedHosts {
    items: Vec<Allowed>,
}

/// The well-known port Spin assumes for a scheme.
pub fn well_known_port(scheme: &str) -> Option<u16> {
    match scheme {
        "postgres" => Some(5432),
        "mysql" => Some(3306),
        "redis" => Some(6379),
        "mqtt" => Some(1883),
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

impl AllowedHosts {
    /// Parses the items, rendering templates over the application variables.
    pub fn parse(items: &[String], vars: &AppVariables) -> Result<Self, AllowedHostError> {
        let mut parsed = Vec::new();
        for item in items {
            let rendered = vars.render(item).map_err(|e| AllowedHostError {
                item: item.clone(),
                reason: e.to_string(),
            })?;
            parsed.push(parse_item(&rendered)?);
        }
        Ok(Self { items: parsed })
    }

    /// Whether a connection to `host:port` with `scheme` is allowed. `port`
    /// `None` means the scheme's well-known port.
    pub fn allows(&self, scheme: &str, host: &str, port: Option<u16>) -> bool {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let port = port.or_else(|| well_known_port(scheme));
        self.items.iter().any(|a| {
            let scheme_ok = a.scheme.as_deref().is_none_or(|s| s == scheme);
            let host_ok = match &a.host {
                Host::Any => true,
                Host::Suffix(suffix) => host.ends_with(suffix.as_str()),
                Host::Literal(lit) => *lit == host,
            };
            let port_ok = match (&a.port, port) {
                (Port::Any, _) => true,
                (Port::One(p), Some(q)) => *p == q,
                (Port::Range(lo, hi), Some(q)) => (*lo..*hi).contains(&q),
                (_, None) => false,
            };
            scheme_ok && host_ok && port_ok
        })
    }

    /// Whether a URL like `redis://user@host:port/db` (or `host:port` without
    /// a scheme, then `default_scheme` is assumed) is allowed.
    pub fn allows_url(&self, url: &str, default_scheme: &str) -> bool {
        let (scheme, rest) = match url.split_once("://") {
            Some((s, r)) => (s.to_ascii_lowercase(), r),
            None => (default_scheme.to_string(), url),
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
        let (host, port) = split_host_port(host_port);
        let port = match port {
            Some(p) => match p.parse::<u16>() {
                Ok(p) => Some(p),
                Err(_) => return false,
            },
            None => None,
        };
        !host.is_empty() && self.allows(&scheme, host, port)
    }
}

fn split_host_port(host_port: &str) -> (&str, Option<&str>) {
    if let Some(rest) = host_port.strip_prefix('[') {
        // [v6]:port
        return match rest.split_once(']') {
            Some((h, after)) => (h, after.strip_prefix(':')),
            None => (host_port, None),
        };
    }
    match host_port.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (host_port, None),
    }
}

fn parse_item(item: &str) -> Result<Allowed, AllowedHostError> {
    let err = |reason: &str| AllowedHostError {
        item: item.to_string(),
        reason: reason.to_string(),
    };
    let trimmed = item.trim();
    let (scheme, rest) = trimmed
        .split_once("://")
        .ok_or_else(|| err("does not contain a scheme (e.g., 'http://' or '*://')"))?;
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (h, p.trim_end_matches('/')),
        None => (rest.trim_end_matches('/'), ""),
    };
    let scheme = if scheme == "*" {
        None
    } else if scheme.chars().all(|c| c.is_ascii_alphabetic()) {
        Some(scheme.to_ascii_lowercase())
    } else {
        return Err(err("only alphabetic schemes are allowed"));
    };
    let port = if port.is_empty() {
        let s = scheme.as_deref().unwrap_or("");
        Port::One(well_known_port(s).ok_or_else(|| {
            err("no port was provided and the scheme does not have a known default port number")
        })?)
    } else if port == "*" {
        Port::Any
    } else if let Some((lo, hi)) = port.split_once("..") {
        let lo = lo
            .parse()
            .map_err(|_| err("port range contains non-number"))?;
        let hi = hi
            .parse()
            .map_err(|_| err("port range contains non-number"))?;
        Port::Range(lo, hi)
    } else {
        Port::One(port.parse().map_err(|_| err("port is not a number"))?)
    };
    let host = host.trim().to_ascii_lowercase();
    let host = if host == "*" {
        Host::Any
    } else if let Some(domain) = host.strip_prefix("*.") {
        if domain.contains('*') {
            return Err(err("wildcards are allowed only as prefixes"));
        }
        Host::Suffix(format!(".{domain}"))
    } else if host.contains('*') {
        return Err(err("wildcards are allowed only as subdomains"));
    } else if host.contains('/') {
        return Err(err("CIDR ranges and paths are not supported by this host"));
    } else {
        Host::Literal(
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
        )
    };
    Ok(Allowed { scheme, host, port })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::variables::{Declared, Provider};
    use std::collections::BTreeMap;

    fn hosts(items: &[&str]) -> AllowedHosts {
        let decl = BTreeMap::from([(
            "pg_host".to_string(),
            Declared {
                default: Some("db.internal".into()),
                secret: false,
            },
        )]);
        let vars = AppVariables::resolve(&decl, &Provider::default()).unwrap();
        let items: Vec<String> = items.iter().map(|s| s.to_string()).collect();
        AllowedHosts::parse(&items, &vars).unwrap()
    }

    #[test]
    fn an_omitted_port_means_the_schemes_well_known_port() {
        let h = hosts(&["postgres://127.0.0.1"]);
        assert!(h.allows("postgres", "127.0.0.1", Some(5432)));
        assert!(h.allows("postgres", "127.0.0.1", None));
        assert!(!h.allows("postgres", "127.0.0.1", Some(5433)));
        assert!(!h.allows("redis", "127.0.0.1", Some(5432)));
    }

    #[test]
    fn wildcards_allow_any_scheme_host_or_port() {
        let h = hosts(&["*://*:*"]);
        assert!(h.allows("redis", "anything", Some(1)));
        let h = hosts(&["redis://*.example.com:6379"]);
        assert!(h.allows_url("redis://a.example.com:6379/1", "redis"));
        assert!(!h.allows_url("redis://example.org:6379", "redis"));
    }

    #[test]
    fn templates_are_rendered_over_application_variables() {
        let h = hosts(&["postgres://{{ pg_host }}:5432"]);
        assert!(h.allows_url("postgres://user@db.internal:5432/app", "postgres"));
        assert!(!h.allows_url("postgres://user@other:5432/app", "postgres"));
    }

    #[test]
    fn nothing_is_allowed_by_default() {
        let h = AllowedHosts::default();
        assert!(!h.allows("redis", "127.0.0.1", Some(6379)));
    }

    #[test]
    fn an_item_without_a_scheme_is_rejected() {
        let vars = AppVariables::default();
        assert!(AllowedHosts::parse(&["localhost:6379".to_string()], &vars).is_err());
    }
}
