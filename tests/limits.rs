use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::util::{Portcullis, TEST_SERVER, Upstream, problem, raw_tls, tls_connect};

async fn setup(extra_server: &str) -> (Upstream, Portcullis) {
    let upstream = Upstream::start().await;
    let config = format!(
        "{TEST_SERVER}{extra_server}\n[[route]]\npath = \"/items\"\nmethods = [\"GET\", \"POST\"]\nupstream = \"{}\"\nauth = \"none\"\n\
         [[route]]\npath = \"/big\"\nmethods = [\"POST\"]\nupstream = \"{}\"\nauth = \"none\"\nmax_body = \"4MiB\"\n",
        upstream.url(),
        upstream.url()
    );
    (upstream, Portcullis::start(&config, &[]))
}

#[tokio::test]
async fn body_limit_by_content_length_and_while_streaming() {
    let (upstream, server) = setup("").await;
    let client = server.client();
    let two_mib = vec![b'a'; 2 << 20];
    let response = client.post(server.url("/items")).body(two_mib.clone()).send().await.unwrap();
    let body = problem(response, 413, "payload-too-large").await;
    assert_eq!(body["detail"], "The body may be at most 1048576 bytes.");

    // Chunked: no Content-Length, the body streams in pieces.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..32).map(|_| Ok(vec![b'b'; 64 << 10])).collect();
    let stream = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let response = client.post(server.url("/items")).body(stream).send().await.unwrap();
    problem(response, 413, "payload-too-large").await;
    assert!(upstream.requests().is_empty(), "an oversized body reached the upstream");

    // Exactly at the limit passes, chunked or not; a route can raise its limit.
    let response = client.post(server.url("/items")).body(vec![b'c'; 1 << 20]).send().await.unwrap();
    assert_eq!(response.status(), 201);
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..16).map(|_| Ok(vec![b'd'; 64 << 10])).collect();
    let response = client
        .post(server.url("/items"))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(upstream.last().body_len, 1 << 20);
    let response = client.post(server.url("/big")).body(two_mib).send().await.unwrap();
    assert_eq!(response.status(), 201);
    server.wait_for_log("request.payload-too-large");
}

#[tokio::test]
async fn header_and_uri_limits() {
    let (upstream, server) =
        setup("[limits]\nmax_headers = 20\nmax_header_bytes = \"4KiB\"\nmax_uri_length = \"1KiB\"\n").await;
    let client = server.client();
    let mut request = client.get(server.url("/items"));
    for i in 0..30 {
        request = request.header(format!("x-h{i}"), "v");
    }
    problem(request.send().await.unwrap(), 431, "headers-too-large").await;
    let response = client.get(server.url("/items")).header("x-big", "v".repeat(5000)).send().await.unwrap();
    problem(response, 431, "headers-too-large").await;
    let response = client.get(server.url(&format!("/items?q={}", "a".repeat(2000)))).send().await.unwrap();
    problem(response, 414, "uri-too-long").await;
    // Far beyond every limit: hyper closes with 431 before the gateway sees it.
    let response = client.get(server.url("/items")).header("x-huge", "v".repeat(64 << 10)).send().await;
    assert!(response.map(|r| r.status().as_u16()).unwrap_or(431) == 431);
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn smuggling_attempts_are_refused() {
    let (upstream, server) = setup("").await;
    let attempts = [
        "POST /items HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\ncontent-length: 30\r\n\r\nabc",
        "POST /items HTTP/1.1\r\nhost: x\r\ntransfer-encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        "POST /items HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\ntransfer-encoding: identity\r\n\r\n0\r\n\r\n",
        "POST /items HTTP/1.1\r\nhost: x\r\ntransfer-encoding : chunked\r\n\r\n0\r\n\r\n",
        "GET /items HTTP/1.1\r\nhost: x\r\nx_user_id: admin\r\n\r\n",
        "GET /items HTTP/1.1\r\nhost: x\r\n content-length: 5\r\n\r\n",
    ];
    for attempt in attempts {
        let answer = raw_tls(&server, attempt.as_bytes(), Duration::from_secs(2)).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{attempt:?} -> {answer:?}");
    }
    assert!(upstream.requests().is_empty(), "a smuggling attempt reached the upstream: {:?}", upstream.requests());
    server.wait_for_log("request.ambiguous-request");
}

#[tokio::test]
async fn content_length_with_chunked_cannot_smuggle_a_second_request() {
    let (upstream, server) = setup("").await;
    // Classic CL.TE: a front end using Content-Length would forward the
    // trailing request as a body; the gateway reads chunked, answers once and
    // closes, so the trailing `GET /admin` is never parsed.
    let smuggle = "POST /items HTTP/1.1\r\nhost: x\r\ncontent-length: 60\r\ntransfer-encoding: chunked\r\n\r\n\
                   0\r\n\r\nGET /items?smuggled=1 HTTP/1.1\r\nhost: x\r\n\r\n";
    let answer = raw_tls(&server, smuggle.as_bytes(), Duration::from_secs(3)).await;
    assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");
    let seen = upstream.requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].path, "/items");
    assert_eq!(seen[0].body_len, 0);
    assert_eq!(seen[0].header("content-length"), None);
}

#[tokio::test]
async fn slow_clients_are_cut_off() {
    let (_upstream, server) = setup("[limits]\nheader_timeout = \"1s\"\n").await;
    // Slowloris: headers that never finish.
    let mut stream = tls_connect(&server).await;
    stream.write_all(b"GET /items HTTP/1.1\r\nhost: x\r\n").await.unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the connection was still open after 5 s");
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    // A TCP connection that never starts TLS is closed too.
    let mut tcp = tokio::net::TcpStream::connect(server.https).await.unwrap();
    let started = Instant::now();
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut buf)).await;
    assert!(read.is_ok() && started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn connections_beyond_the_limit_are_closed() {
    let (_upstream, server) = setup("[limits]\nmax_connections = 2\n").await;
    let first = tls_connect(&server).await;
    let second = tls_connect(&server).await;
    // The third connection is accepted by the kernel and closed at once.
    let mut third = tokio::net::TcpStream::connect(server.https).await.unwrap();
    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(3), third.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "the third connection stayed open: {read:?}");
    drop((first, second));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(server.client().get(server.url("/healthz")).send().await.unwrap().status(), 200);
}
