//! A real HTTP upstream on 127.0.0.1 that records what reaches it.
//!
//! - `/slow…` waits 3 seconds before answering;
//! - `/leaky…` answers with `Server` and `X-Powered-By` headers;
//! - `/status/<code>…` answers with that status;
//! - anything else echoes the request as JSON: method, path (with query),
//!   headers and body length; `POST` answers 201.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};

/// What the upstream saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body_len: usize,
    /// The body as text (lossy).
    pub body: String,
    /// The body as sent.
    pub raw: Bytes,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// A running upstream.
pub struct Upstream {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let record = record.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| handle(req, record.clone()));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, seen, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn last(&self) -> Seen {
        self.requests().last().cloned().expect("the upstream saw no request")
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    request: Request<Incoming>,
    record: Arc<Mutex<Vec<Seen>>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = request.method().to_string();
    let path = request.uri().path_and_query().map_or("/".to_owned(), ToString::to_string);
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let body = match request.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => return Ok(Response::builder().status(400).body(Full::new(Bytes::from("bad body"))).unwrap()),
    };
    let seen = Seen {
        method: method.clone(),
        path: path.clone(),
        headers: headers.clone(),
        body_len: body.len(),
        body: String::from_utf8_lossy(&body).into_owned(),
        raw: body.clone(),
    };
    record.lock().unwrap().push(seen);
    if path.starts_with("/slow") {
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let echo = serde_json::json!({
        "method": method,
        "path": path,
        "headers": headers.iter().map(|(k, v)| (k.clone(), serde_json::Value::from(v.clone()))).collect::<serde_json::Map<_, _>>(),
        "body_len": body.len(),
    });
    let asked = path.strip_prefix("/status/").and_then(|rest| rest.get(..3)).and_then(|code| code.parse::<u16>().ok());
    let mut response = Response::builder()
        .status(asked.unwrap_or(if method == "POST" { 201 } else { 200 }))
        .header("content-type", "application/json")
        .header("cache-control", "public, max-age=600");
    if path.starts_with("/leaky") {
        response = response
            .header("server", "gunicorn/21.2")
            .header("x-powered-by", "Flask")
            .header("x-aspnet-version", "4.0");
    }
    Ok(response.body(Full::new(Bytes::from(echo.to_string()))).unwrap())
}
