//! The HTTP trigger: a hyper 1 server that routes by `spin.toml` and runs a
//! fresh instance of the matched component's `wasi:http/incoming-handler`.
//!
//! As Spin v3.6 does (`crates/trigger-http/src/server.rs`, `wasi.rs`):
//! - `/.well-known/spin/health` answers `200 OK`, `/.well-known/spin/info` a
//!   small JSON document, any other `/.well-known/spin/…` 404;
//! - a path no route matches gets an empty `404`;
//! - the request keeps its headers and gains the `spin-*` ones (see
//!   [`routing`](crate::host::routing)); its URI gets scheme `http` and the
//!   `Host` header as authority; the guest sees scheme `http`;
//! - a guest that traps, or returns without setting a response, or sets an
//!   error response, yields an empty `500`; a failure after the response
//!   started is logged and the body is cut short;
//! - a request to a routed path whose `Host` header is missing (and its URI
//!   has no authority), is not UTF-8, is no valid authority, or differs
//!   from the URI's authority, gets no answer: the connection is closed
//!   (Spin's `set_req_uri` fails the hyper service, 3.6.3 and 4.0.2 alike),
//!   and no component runs.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use wasmtime::Engine;
use wasmtime_wasi_http::bindings::http::types::Scheme;
use wasmtime_wasi_http::bindings::ProxyPre;
use wasmtime_wasi_http::body::HyperOutgoingBody;
use wasmtime_wasi_http::WasiHttpView;

use crate::host::routing::{RouteMatch, Router, WELL_KNOWN_PREFIX};
use crate::host::runtime::{try_new_store, ComponentContext, InstanceState, SharedServices};

/// A component ready to serve HTTP.
pub struct HttpComponent {
    /// Pre-linked for `wasi:http/incoming-handler`.
    pub pre: ProxyPre<InstanceState>,
    /// Its context.
    pub context: Arc<ComponentContext>,
}

/// Everything the server needs.
pub struct HttpApp {
    /// Application name and version for `/.well-known/spin/info`.
    pub app_name: String,
    /// Version, if any.
    pub app_version: Option<String>,
    /// Routes.
    pub router: Router,
    /// Components by id.
    pub components: HashMap<String, HttpComponent>,
    /// The engine the components were compiled with.
    pub engine: Engine,
    /// Shared services.
    pub shared: Arc<SharedServices>,
}

/// Accepts connections until `shutdown` turns true; then drops (aborts) the
/// open connections.
pub async fn serve(listener: TcpListener, app: Arc<HttpApp>, mut shutdown: watch::Receiver<bool>) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => break,
            accepted = listener.accept() => {
                let (stream, client_addr) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        continue;
                    }
                };
                // No TCP_NODELAY: Spin (3.6.3, 4.0.2) sets none, so a
                // response whose head goes out before its body can wait for
                // the client's delayed acknowledgement here as it does there.
                let app = app.clone();
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let app = app.clone();
                        async move { app.handle(req, client_addr).await }
                    });
                    if let Err(e) = hyper::server::conn::http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), service)
                        .await
                    {
                        tracing::debug!("connection from {client_addr} ended: {e}");
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.shutdown().await;
}

/// The authority a routed request is served under, as Spin's `set_req_uri`
/// finds it: the `Host` header (the first, as UTF-8, a valid authority) or
/// else the URI's; both present must agree; neither is an error.
fn authority_of<B>(req: &Request<B>) -> anyhow::Result<String> {
    use anyhow::Context as _;
    let header = req
        .headers()
        .get(http::header::HOST)
        .map(|h| -> anyhow::Result<http::uri::Authority> {
            let text = h.to_str().context("'Host' header is not valid UTF-8")?;
            text.parse()
                .context("'Host' header contains an invalid authority")
        })
        .transpose()?;
    let authority = match (header, req.uri().authority().cloned()) {
        (None, None) => anyhow::bail!("no 'Host' header present in request"),
        (None, Some(a)) | (Some(a), None) => a,
        (Some(a1), Some(a2)) if a1 == a2 => a1,
        (Some(_), Some(_)) => {
            anyhow::bail!("authority in 'Host' header does not match authority in URI")
        }
    };
    Ok(authority.as_str().to_string())
}

fn full(status: StatusCode, body: impl Into<Bytes>) -> Response<HyperOutgoingBody> {
    let mut r = Response::new(
        Full::new(body.into())
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *r.status_mut() = status;
    r
}

impl HttpApp {
    /// Handles one request: errors become 500s, but a routed request whose
    /// authority Spin cannot set fails, as Spin's does, which makes hyper
    /// close the connection without an answer.
    pub async fn handle(
        &self,
        req: Request<Incoming>,
        client_addr: SocketAddr,
    ) -> anyhow::Result<Response<HyperOutgoingBody>> {
        self.handle_inner(req, client_addr).await
    }

    async fn handle_inner(
        &self,
        req: Request<Incoming>,
        client_addr: SocketAddr,
    ) -> anyhow::Result<Response<HyperOutgoingBody>> {
        let path = req.uri().path().to_string();
        if let Some(well_known) = path.strip_prefix(WELL_KNOWN_PREFIX) {
            return Ok(match well_known {
                "health" => full(StatusCode::OK, "OK"),
                "info" => {
                    let info = serde_json::json!({
                        "name": self.app_name,
                        "version": self.app_version,
                        "host": "e2e spin-host (wasmtime), standing in for spin up",
                    });
                    let mut r = full(StatusCode::OK, info.to_string());
                    r.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("application/json"),
                    );
                    r
                }
                _ => full(StatusCode::NOT_FOUND, ""),
            });
        }
        let Some(route_match) = self.router.route(&path) else {
            return Ok(full(StatusCode::NOT_FOUND, ""));
        };
        let host = authority_of(&req)?;
        let Some(component) = self.components.get(&route_match.route.component) else {
            tracing::error!(
                "route {} names a component that is not loaded",
                route_match.route.raw_route
            );
            return Ok(full(StatusCode::INTERNAL_SERVER_ERROR, ""));
        };
        Ok(
            match self
                .invoke(component, req, &route_match, &host, client_addr)
                .await
            {
                Ok(resp) => resp,
                Err(e) => {
                    tracing::error!(component = %component.context.id, "Error processing request: {e:?}");
                    full(StatusCode::INTERNAL_SERVER_ERROR, "")
                }
            },
        )
    }

    async fn invoke(
        &self,
        component: &HttpComponent,
        req: Request<Incoming>,
        route_match: &RouteMatch,
        host: &str,
        client_addr: SocketAddr,
    ) -> anyhow::Result<Response<HyperOutgoingBody>> {
        let (mut parts, body) = req.into_parts();
        let path_and_query = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".to_string());
        for (name, value) in route_match.spin_headers(host, &path_and_query, client_addr) {
            if let (Ok(n), Ok(v)) = (
                http::HeaderName::from_bytes(name.as_bytes()),
                http::HeaderValue::from_str(&value),
            ) {
                parts.headers.append(n, v);
            }
        }
        parts.uri = http::Uri::builder()
            .scheme("http")
            .authority(host)
            .path_and_query(path_and_query.as_str())
            .build()?;
        let req = Request::from_parts(parts, body);

        let mut store = try_new_store(&self.engine, &component.context, &self.shared)?;
        let proxy = component.pre.instantiate_async(&mut store).await?;
        let request = store.data_mut().new_incoming_request(Scheme::Http, req)?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let response_out = store.data_mut().new_response_outparam(tx)?;
        let component_id = component.context.id.clone();
        let task = tokio::task::spawn(async move {
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, request, response_out)
                .await
        });
        match rx.await {
            Ok(response) => {
                tokio::task::spawn(async move {
                    match task.await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => tracing::warn!(
                            component = %component_id,
                            "Component error after response started: {e:?}"
                        ),
                        Err(e) => {
                            tracing::warn!(component = %component_id, "guest invocation panicked: {e}")
                        }
                    }
                });
                response
                    .map_err(|code| anyhow::anyhow!("guest failed to produce a response: {code:?}"))
            }
            Err(_) => {
                task.await
                    .map_err(|e| anyhow::anyhow!("guest invocation panicked: {e}"))?
                    .map_err(|e| e.context("guest invocation failed"))?;
                Err(anyhow::anyhow!(
                    "guest failed to produce a response prior to returning"
                ))
            }
        }
    }
}
