//! The route table and the route choice ([`choose`]): a request's path
//! matched against `:name` patterns (a literal path wins over a parameter;
//! parameters percent-decoded as RFC 3986 says), then its method: the route,
//! or 404, or 405 with the methods the path allows.

use spin_sdk::http::Method;

use super::Handler;

/// What a component's route table says of a request.
pub(super) enum Choice<'r> {
    /// The route to run, with its path parameters.
    Route(&'r Route, Vec<(&'static str, String)>),
    /// No pattern matches the path: 404.
    NotFound,
    /// The path is known, the method is not: 405, `Allow` listing `allow`;
    /// `name` is the path's first route, for the log line, and `pattern`
    /// its path template, for the request counters.
    MethodNotAllowed {
        name: &'static str,
        pattern: &'static str,
        allow: Vec<&'static str>,
    },
}

/// Chooses the route of `method` and `path` in `routes`.
pub(super) fn choose<'r>(routes: &'r [Route], method: &Method, path: &str) -> Choice<'r> {
    let mut matching: Vec<(&Route, Vec<(&'static str, String)>)> = routes
        .iter()
        .filter_map(|r| match_pattern(r.pattern, path).map(|p| (r, p)))
        .collect();
    // A literal path wins over a parameter: `GET /conversations/end` is a
    // wrong method on a known path, not an event named "end".
    if matching.iter().any(|(_, params)| params.is_empty()) {
        matching.retain(|(_, params)| params.is_empty());
    }
    if matching.is_empty() {
        return Choice::NotFound;
    }
    let (name, pattern) = (matching[0].0.name, matching[0].0.pattern);
    if let Some(i) = matching
        .iter()
        .position(|(r, _)| r.any_method || r.method == *method)
    {
        let (route, params) = matching.swap_remove(i);
        return Choice::Route(route, params);
    }
    let mut allow: Vec<&'static str> = matching
        .iter()
        .map(|(r, _)| method_name(&r.method))
        .collect();
    allow.dedup();
    Choice::MethodNotAllowed {
        name,
        pattern,
        allow,
    }
}

/// One line of a component's route table. Patterns are literal segments and
/// `:name` parameters, e.g. `/api/v1/agent-mappings/:id`.
pub struct Route {
    pub method: Method,
    pub pattern: &'static str,
    pub name: &'static str,
    pub handler: Handler,
    /// Its successful answers get a log line. Off for the liveness probe,
    /// which an orchestrator calls every few seconds: its lines would drown
    /// the log and cost every probe a write (failures are still logged).
    pub logged: bool,
    /// Matches every method: the handler answers a wrong one itself (for
    /// `/metrics`, a 404 for every method while the route is disabled).
    pub any_method: bool,
}

impl Route {
    pub const fn new(
        method: Method,
        pattern: &'static str,
        name: &'static str,
        handler: Handler,
    ) -> Self {
        Route {
            method,
            pattern,
            name,
            handler,
            logged: true,
            any_method: false,
        }
    }

    /// The same route, for every method (`method` is the one it serves;
    /// the handler refuses the others, see [`Route::any_method`]).
    pub const fn any_method(mut self) -> Self {
        self.any_method = true;
        self
    }

    /// The same route, whose successful answers are not logged.
    pub const fn unlogged(mut self) -> Self {
        self.logged = false;
        self
    }
}

/// Matches a path against a pattern, returning its parameters.
fn match_pattern(pattern: &'static str, path: &str) -> Option<Vec<(&'static str, String)>> {
    let mut params = Vec::new();
    let mut pattern_segments = pattern.trim_end_matches('/').split('/');
    let mut path_segments = path.trim_end_matches('/').split('/');
    loop {
        match (pattern_segments.next(), path_segments.next()) {
            (None, None) => return Some(params),
            (Some(p), Some(s)) if p.starts_with(':') => {
                if s.is_empty() {
                    return None;
                }
                params.push((&p[1..], percent_decode(s)));
            }
            (Some(p), Some(s)) if p == s => {}
            _ => return None,
        }
    }
}

/// Percent-decodes a path segment (RFC 3986): `%XX` is a byte, anything
/// else, `+` included, is itself (`+` is a space only in a query string); a
/// `%` not followed by two hex digits stays, and invalid UTF-8 is replaced.
fn percent_decode(raw: &str) -> String {
    percent_encoding::percent_decode_str(raw)
        .decode_utf8_lossy()
        .into_owned()
}

/// A method's name, for `Allow` and the request counters' `method` label
/// (`OTHER` for any but the standard ones: the label stays bounded).
pub(super) fn method_name(method: &Method) -> &'static str {
    match method {
        Method::Get => "GET",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Delete => "DELETE",
        Method::Patch => "PATCH",
        Method::Head => "HEAD",
        Method::Options => "OPTIONS",
        _ => "OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn never(_: &mut super::super::Ctx) -> Result<super::super::Reply, crate::ApiError> {
        unreachable!("routing tests choose, never run")
    }

    const ROUTES: &[Route] = &[
        Route::new(Method::Post, "/api/v1/conversations/end", "end", never),
        Route::new(
            Method::Get,
            "/api/v1/conversations/:processing_id",
            "get",
            never,
        ),
        Route::new(Method::Get, "/api/v1/agent-mappings/:id", "read", never),
        Route::new(Method::Put, "/api/v1/agent-mappings/:id", "replace", never),
    ];

    /// A route's name and parameters, or the answer's status (and `Allow`).
    type Chosen = Result<(&'static str, Vec<(&'static str, String)>), String>;

    fn chosen(method: Method, path: &str) -> Chosen {
        match choose(ROUTES, &method, path) {
            Choice::Route(route, params) => Ok((route.name, params)),
            Choice::NotFound => Err("404".into()),
            Choice::MethodNotAllowed { name, allow, .. } => Err(format!("405 {name} {allow:?}")),
        }
    }

    #[test]
    fn a_literal_path_wins_over_a_parameter() {
        assert_eq!(
            chosen(Method::Post, "/api/v1/conversations/end"),
            Ok(("end", vec![]))
        );
        assert_eq!(
            chosen(Method::Get, "/api/v1/conversations/end"),
            Err("405 end [\"POST\"]".into()),
            "a wrong method on a known path, not an event named end"
        );
        assert_eq!(
            chosen(Method::Get, "/api/v1/conversations/abc"),
            Ok(("get", vec![("processing_id", "abc".to_string())]))
        );
    }

    #[test]
    fn a_known_path_with_another_method_is_405_listing_the_allowed_ones() {
        assert_eq!(
            chosen(Method::Delete, "/api/v1/agent-mappings/7"),
            Err("405 read [\"GET\", \"PUT\"]".into())
        );
        assert_eq!(chosen(Method::Get, "/api/v1/nothing"), Err("404".into()));
    }

    #[test]
    fn a_route_for_every_method_gets_every_method() {
        const ANY: &[Route] = &[Route::new(Method::Get, "/metrics", "metrics", never).any_method()];
        for method in [Method::Get, Method::Post, Method::Delete, Method::Options] {
            assert!(
                matches!(choose(ANY, &method, "/metrics"), Choice::Route(r, _) if r.name == "metrics"),
                "{method:?} reaches the handler, which answers it"
            );
        }
        assert!(matches!(
            choose(ANY, &Method::Get, "/metricsx"),
            Choice::NotFound
        ));
    }

    #[test]
    fn a_pattern_captures_its_parameters() {
        let params =
            match_pattern("/api/v1/agent-mappings/:id", "/api/v1/agent-mappings/42").unwrap();
        assert_eq!(params, vec![("id", "42".to_string())]);
        assert!(match_pattern("/api/v1/agent-mappings/:id", "/api/v1/agent-mappings").is_none());
        assert!(
            match_pattern("/api/v1/agent-mappings/:id", "/api/v1/agent-mappings/1/x").is_none()
        );
    }

    #[test]
    fn path_segments_are_percent_decoded() {
        assert_eq!(percent_decode("x%20y"), "x y");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%C3%A9%2b"), "é+");
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
    }

    #[test]
    fn a_plus_in_a_path_is_a_plus_not_a_space() {
        assert_eq!(percent_decode("+007"), "+007");
        assert_eq!(percent_decode("a+b%2B"), "a+b+");
        let params =
            match_pattern("/api/v1/agent-mappings/:id", "/api/v1/agent-mappings/+7").unwrap();
        assert_eq!(params, vec![("id", "+7".to_string())]);
    }
}
