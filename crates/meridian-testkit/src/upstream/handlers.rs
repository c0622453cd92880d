//! What the test upstream answers, by path. See the table in the module above.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, SEC_WEBSOCKET_KEY, UPGRADE};
use http::{HeaderMap, Method, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value, json};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_util::sync::CancellationToken;

use super::State;
use super::body::{TestBody, empty, full, generated};
use crate::server::DropConnection;

type Answer = Result<Response<TestBody>, DropConnection>;

pub(crate) async fn handle(state: Arc<State>, req: Request<Incoming>, kill: CancellationToken) -> Answer {
    let path = req.uri().path().to_string();
    let mut segments = path.trim_start_matches('/').splitn(2, '/');
    let first = segments.next().unwrap_or("");
    let rest = segments.next();
    match (first, rest) {
        ("status", Some(code)) => status(&state, req, code).await,
        ("delay", Some(ms)) => match ms.parse::<u64>() {
            Ok(ms) => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                echo(&state, req, StatusCode::OK).await
            }
            Err(_) => Ok(text(&state, StatusCode::BAD_REQUEST, "delay must be milliseconds")),
        },
        ("bytes", Some(n)) => match n.parse::<u64>() {
            Ok(n) => Ok(stream_bytes(&state, n)),
            Err(_) => Ok(text(&state, StatusCode::BAD_REQUEST, "bytes must be a count")),
        },
        ("sink", None) => {
            let received = count_body(req.into_body()).await;
            Ok(json_response(&state, StatusCode::OK, &json!({ "received": received })))
        }
        ("reset", _) => Err(DropConnection),
        ("fail-once", Some(key)) => {
            let first_time = super::lock(&state.fail_once_seen).insert(key.to_string());
            let code = if first_time { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
            echo(&state, req, code).await
        }
        ("ws", None) => Ok(websocket(&state, req, kill)),
        ("trailers", None) => Ok(trailers(&state, req).await),
        _ => echo(&state, req, StatusCode::OK).await,
    }
}

async fn status(state: &State, req: Request<Incoming>, code: &str) -> Answer {
    let Some(code) = code.parse::<u16>().ok().and_then(|c| StatusCode::from_u16(c).ok()) else {
        return Ok(text(state, StatusCode::BAD_REQUEST, "not a status code"));
    };
    if code.is_informational() {
        return Ok(text(state, StatusCode::BAD_REQUEST, "1xx is not a final status"));
    }
    if code == StatusCode::NO_CONTENT || code == StatusCode::NOT_MODIFIED {
        count_body(req.into_body()).await;
        let mut response = Response::new(empty());
        *response.status_mut() = code;
        tag(state, &mut response);
        return Ok(response);
    }
    echo(state, req, code).await
}

/// The JSON echo of the request. The body is counted, never kept.
async fn echo(state: &State, req: Request<Incoming>, code: StatusCode) -> Answer {
    let (parts, body) = req.into_parts();
    let body_bytes = count_body(body).await;
    let doc = json!({
        "upstream": state.name,
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "version": version_name(parts.version),
        "headers": headers_json(&parts.headers),
        "body_bytes": body_bytes,
    });
    Ok(json_response(state, code, &doc))
}

fn stream_bytes(state: &State, n: u64) -> Response<TestBody> {
    let mut response = Response::new(generated(n));
    response.headers_mut().insert(CONTENT_LENGTH, HeaderValue::from(n));
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    tag(state, &mut response);
    response
}

/// Answers 101 and echoes WebSocket messages on the upgraded connection until it closes.
fn websocket(state: &State, mut req: Request<Incoming>, kill: CancellationToken) -> Response<TestBody> {
    let wants_upgrade = req
        .headers()
        .get(UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let key = req.headers().get(SEC_WEBSOCKET_KEY).cloned();
    let (true, Some(key), Method::GET) = (wants_upgrade, key, req.method().clone()) else {
        return text(state, StatusCode::UPGRADE_REQUIRED, "websocket upgrade required");
    };
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let mut ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        loop {
            let message = tokio::select! {
                _ = kill.cancelled() => return,
                message = ws.next() => message,
            };
            match message {
                Some(Ok(m)) if m.is_text() || m.is_binary() => {
                    if ws.send(m).await.is_err() {
                        return;
                    }
                }
                // Pings are answered and closes acknowledged by tungstenite itself.
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return,
            }
        }
    });
    let mut response = Response::new(empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    let accept = derive_accept_key(key.as_bytes());
    headers.insert("sec-websocket-accept", HeaderValue::from_str(&accept).expect("base64 is a valid header"));
    tag(state, &mut response);
    response
}

/// A body in two frames followed by the trailer `x-checksum` (hex length of the body).
async fn trailers(state: &State, req: Request<Incoming>) -> Response<TestBody> {
    count_body(req.into_body()).await;
    let chunks: [&'static [u8]; 2] = [b"trailers ", b"follow\n"];
    let len: usize = chunks.iter().map(|c| c.len()).sum();
    let mut trailer = HeaderMap::new();
    trailer.insert("x-checksum", HeaderValue::from_str(&format!("len-{len}")).expect("ascii"));
    let frames: Vec<Result<Frame<Bytes>, crate::server::BoxError>> = chunks
        .iter()
        .map(|c| Ok(Frame::data(Bytes::from_static(c))))
        .chain(std::iter::once(Ok(Frame::trailers(trailer))))
        .collect();
    let body = BodyExt::boxed(StreamBody::new(futures_util::stream::iter(frames)));
    let mut response = Response::new(body);
    response.headers_mut().insert("trailer", HeaderValue::from_static("x-checksum"));
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    tag(state, &mut response);
    response
}

/// Reads a body to the end, frame by frame, keeping only the count. A broken body ends the count.
async fn count_body(mut body: Incoming) -> u64 {
    let mut n = 0u64;
    while let Some(Ok(frame)) = body.frame().await {
        if let Some(data) = frame.data_ref() {
            n += data.len() as u64;
        }
    }
    n
}

fn headers_json(headers: &HeaderMap) -> Value {
    let mut map = Map::new();
    for name in headers.keys() {
        let values: Vec<String> = headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        map.insert(name.as_str().to_string(), Value::String(values.join(", ")));
    }
    Value::Object(map)
}

fn version_name(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "unknown",
    }
}

fn json_response(state: &State, code: StatusCode, doc: &Value) -> Response<TestBody> {
    let mut response = Response::new(full(serde_json::to_vec(doc).expect("JSON serialises")));
    *response.status_mut() = code;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    tag(state, &mut response);
    response
}

fn text(state: &State, code: StatusCode, message: &'static str) -> Response<TestBody> {
    let mut response = Response::new(full(Bytes::from_static(message.as_bytes())));
    *response.status_mut() = code;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    tag(state, &mut response);
    response
}

fn tag(state: &State, response: &mut Response<TestBody>) {
    if let Ok(name) = HeaderValue::from_str(&state.name) {
        response.headers_mut().insert("x-upstream", name);
    }
}
