//! Connection settings for the host's self-checks against real services.

/// `DATABASE_URL`, or the local trust-auth Postgres.
pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// `REDIS_URL` (its database replaced by `db`), or the local Redis.
pub fn redis_url(db: u8) -> String {
    let base = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string());
    let (scheme, rest) = base.split_once("://").unwrap_or(("redis", base.as_str()));
    let authority = rest.split('/').next().unwrap_or(rest);
    format!("{scheme}://{authority}/{db}")
}

/// Whether Redis answers at `url` within a second.
pub async fn redis_available(url: &str) -> bool {
    let Ok(client) = redis::Client::open(url) else {
        return false;
    };
    matches!(
        tokio::time::timeout(
            std::time::Duration::from_secs(1),
            client.get_multiplexed_async_connection()
        )
        .await,
        Ok(Ok(_))
    )
}

/// A response as the tests see it.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Body as text.
    pub body: String,
}

/// One HTTP/1.1 request over a fresh connection.
pub async fn request(method: &str, url: &str, body: &str) -> Reply {
    use http_body_util::{BodyExt, Full};
    let uri: http::Uri = url.parse().expect("valid url");
    let authority = uri.authority().expect("url has an authority").clone();
    let stream = tokio::net::TcpStream::connect(authority.as_str())
        .await
        .expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    let req = http::Request::builder()
        .method(method)
        .uri(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
        .header(http::header::HOST, authority.as_str())
        .body(Full::new(bytes::Bytes::from(body.to_string())))
        .expect("request");
    let resp = sender.send_request(req).await.expect("send");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    Reply {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}
