//! HTTP route matching and the `spin-*` request headers, as Spin does them.
//!
//! Checked in spinframework/spin v3.6 `crates/routes` and
//! `crates/trigger-http/src/headers.rs`:
//! - Routes are matched with the `routefinder` crate (the same crate and
//!   version line Spin uses): exact routes, `:name` segments and a trailing
//!   `/...` wildcard; exact matches win, then the longest prefix.
//! - The base is always `/`; a single trailing `/` of a route is dropped.
//! - Later duplicates of the same route replace earlier ones.
//! - `{ private = true }` routes are not routable.
//! - Headers given to the component (names lower-cased, `_` → `-`):
//!   `spin-full-url` (`http://<host><path?query>`), `spin-path-info` (the
//!   part matched by the trailing wildcard, with Spin's trailing-slash rule),
//!   `spin-matched-route` (route as written, with base), `spin-base-path`
//!   (`/`), `spin-raw-component-route` (route as written),
//!   `spin-component-route` (route without `/...`), `spin-client-addr`, and
//!   `spin-path-match-<name>` for every `:name` capture.

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::host::manifest::{HttpRoute, HttpTrigger};

/// Spin's reserved route prefix (`/.well-known/spin/health`, `…/info`).
pub const WELL_KNOWN_PREFIX: &str = "/.well-known/spin/";

/// A route the router serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The component handling it.
    pub component: String,
    /// The route as written in `spin.toml`.
    pub raw_route: String,
    /// The route with the (always `/`) base applied.
    pub based_route: String,
}

/// Why routes could not be built.
#[derive(Debug, thiserror::Error)]
#[error("Error parsing route {route} associated with component {component}: {message}")]
pub struct RouteError {
    route: String,
    component: String,
    message: String,
}

/// Maps request paths to components.
#[derive(Debug)]
pub struct Router {
    inner: routefinder::Router<Route>,
    routes: Vec<Route>,
}

/// The result of routing one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatch {
    /// The matched route.
    pub route: Route,
    /// What the trailing wildcard matched (`spin-path-info`), `""` for exact routes.
    pub path_info: String,
    /// `:name` captures.
    pub named: HashMap<String, String>,
}

impl Router {
    /// Builds the router from `[[trigger.http]]` entries.
    pub fn build(triggers: &[HttpTrigger]) -> Result<Self, RouteError> {
        // Later duplicates replace earlier ones (Spin keeps an IndexMap keyed by raw route).
        let mut by_raw: Vec<Route> = Vec::new();
        for t in triggers {
            let HttpRoute::Route(raw) = &t.route else {
                continue;
            };
            let route = Route {
                component: t.component.clone(),
                raw_route: raw.clone(),
                based_route: sanitize_with_base("/", raw),
            };
            match by_raw.iter_mut().find(|r| r.raw_route == *raw) {
                Some(existing) => *existing = route,
                None => by_raw.push(route),
            }
        }
        let mut inner = routefinder::Router::new();
        for route in &by_raw {
            let spec = match route.based_route.strip_suffix("/...") {
                Some(prefix) => format!("{prefix}/*"),
                None => route.based_route.clone(),
            };
            inner
                .add(spec.as_str(), route.clone())
                .map_err(|message| RouteError {
                    route: route.based_route.clone(),
                    component: route.component.clone(),
                    message: message.to_string(),
                })?;
        }
        Ok(Self {
            inner,
            routes: by_raw,
        })
    }

    /// Every routable route, in manifest order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Routes a request path; `None` means Spin's generic 404.
    pub fn route(&self, path: &str) -> Option<RouteMatch> {
        let m = self.inner.best_match(path)?;
        let captures = m.captures();
        let path_info = match captures.wildcard() {
            None => String::new(),
            Some(s) => match (s.is_empty(), path.ends_with('/')) {
                (true, false) => s.to_string(),
                (true, true) => "/".to_string(),
                (false, false) => format!("/{s}"),
                (false, true) => format!("/{s}/"),
            },
        };
        let named = captures
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Some(RouteMatch {
            route: m.handler().clone(),
            path_info,
            named,
        })
    }
}

impl RouteMatch {
    /// The route without its trailing `/...` (`spin-component-route`).
    pub fn raw_route_or_prefix(&self) -> &str {
        self.route
            .raw_route
            .strip_suffix("/...")
            .unwrap_or(&self.route.raw_route)
    }

    /// The `spin-*` headers for a request to `host` with `path_and_query`.
    pub fn spin_headers(
        &self,
        host: &str,
        path_and_query: &str,
        client_addr: SocketAddr,
    ) -> Vec<(String, String)> {
        let mut headers = vec![
            ("spin-path-info".to_string(), self.path_info.clone()),
            (
                "spin-full-url".to_string(),
                format!("http://{host}{path_and_query}"),
            ),
            (
                "spin-matched-route".to_string(),
                self.route.based_route.clone(),
            ),
            ("spin-base-path".to_string(), "/".to_string()),
            (
                "spin-raw-component-route".to_string(),
                self.route.raw_route.clone(),
            ),
            (
                "spin-component-route".to_string(),
                self.raw_route_or_prefix().to_string(),
            ),
            ("spin-client-addr".to_string(), client_addr.to_string()),
        ];
        let mut named: Vec<_> = self.named.iter().collect();
        named.sort();
        for (name, value) in named {
            headers.push((
                format!(
                    "spin-path-match-{}",
                    name.to_ascii_lowercase().replace('_', "-")
                ),
                value.clone(),
            ));
        }
        headers
    }
}

fn sanitize_with_base(base: &str, path: &str) -> String {
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    format!("{}{}", strip_one_slash(base), strip_one_slash(&path))
}

fn strip_one_slash(s: &str) -> &str {
    s.strip_suffix('/').unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trigger(route: &str, component: &str) -> HttpTrigger {
        HttpTrigger {
            route: HttpRoute::Route(route.to_string()),
            component: component.to_string(),
            executor: None,
        }
    }

    fn router(pairs: &[(&str, &str)]) -> Router {
        let triggers: Vec<_> = pairs.iter().map(|(r, c)| trigger(r, c)).collect();
        Router::build(&triggers).unwrap()
    }

    #[test]
    fn exact_routes_beat_wildcards_and_longer_prefixes_beat_shorter() {
        let r = router(&[
            ("/...", "catch-all"),
            ("/api/v1/friendship/...", "friendship"),
            ("/api/v1/friendship/special", "special"),
            ("/health", "health"),
        ]);
        assert_eq!(r.route("/health").unwrap().route.component, "health");
        assert_eq!(
            r.route("/api/v1/friendship/special")
                .unwrap()
                .route
                .component,
            "special"
        );
        assert_eq!(
            r.route("/api/v1/friendship/u1").unwrap().route.component,
            "friendship"
        );
        assert_eq!(r.route("/other").unwrap().route.component, "catch-all");
    }

    #[test]
    fn an_unmatched_path_has_no_route() {
        let r = router(&[("/health", "health"), ("/api/...", "api")]);
        assert!(r.route("/nope").is_none());
        assert!(r.route("/healthz").is_none());
    }

    #[test]
    fn a_wildcard_route_also_matches_its_bare_prefix() {
        let r = router(&[("/api/v1/conversations/...", "conversations")]);
        let m = r.route("/api/v1/conversations").unwrap();
        assert_eq!(m.path_info, "");
        let m = r.route("/api/v1/conversations/").unwrap();
        assert_eq!(m.path_info, "/");
        let m = r.route("/api/v1/conversations/end").unwrap();
        assert_eq!(m.path_info, "/end");
        let m = r.route("/api/v1/conversations/a/b/").unwrap();
        assert_eq!(m.path_info, "/a/b/");
    }

    #[test]
    fn spin_headers_carry_spins_names_and_values() {
        let r = router(&[("/foo/...", "c")]);
        let m = r.route("/foo/bar").unwrap();
        let h: HashMap<_, _> = m
            .spin_headers(
                "example.test:3000",
                "/foo/bar?a=1",
                "127.0.0.1:8777".parse().unwrap(),
            )
            .into_iter()
            .collect();
        assert_eq!(h["spin-full-url"], "http://example.test:3000/foo/bar?a=1");
        assert_eq!(h["spin-path-info"], "/bar");
        assert_eq!(h["spin-matched-route"], "/foo/...");
        assert_eq!(h["spin-base-path"], "/");
        assert_eq!(h["spin-raw-component-route"], "/foo/...");
        assert_eq!(h["spin-component-route"], "/foo");
        assert_eq!(h["spin-client-addr"], "127.0.0.1:8777");
    }

    #[test]
    fn named_segments_become_path_match_headers() {
        let r = router(&[("/users/:userid/...", "c")]);
        let m = r.route("/users/42/bar").unwrap();
        let h: HashMap<_, _> = m
            .spin_headers("h", "/users/42/bar", "127.0.0.1:1".parse().unwrap())
            .into_iter()
            .collect();
        assert_eq!(h["spin-path-match-userid"], "42");
        assert_eq!(h["spin-path-info"], "/bar");
        assert_eq!(h["spin-component-route"], "/users/:userid");
    }

    #[test]
    fn private_routes_are_not_routable_and_later_duplicates_win() {
        let triggers = vec![
            trigger("/x", "first"),
            HttpTrigger {
                route: HttpRoute::Private { private: true },
                component: "hidden".into(),
                executor: None,
            },
            trigger("/x", "second"),
        ];
        let r = Router::build(&triggers).unwrap();
        assert_eq!(r.routes().len(), 1);
        assert_eq!(r.route("/x").unwrap().route.component, "second");
    }
}
