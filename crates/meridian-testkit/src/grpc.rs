//! A real gRPC upstream and client, without protoc: prost-derived messages and tonic's generic
//! `server::Grpc` / `client::Grpc` with `tonic_prost::ProstCodec`, shaped like tonic's
//! generated code. The server runs on the same hyper HTTP/2 stack tonic's transport uses.
//!
//! Service `meridian.test.Echo`:
//! - `Unary(EchoRequest) -> EchoReply`: echoes `message`; a non-zero `fail_code` answers that
//!   status with `message` instead (a trailers-only response).
//! - `ServerStream(EchoRequest) -> stream EchoReply`: `count` replies `"{message}-{i}"`, then
//!   status OK, or `fail_code` with message `"failed after {count}"`, in the trailers.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::Stream;
use http::uri::PathAndQuery;
use hyper::body::Incoming;
use tonic::transport::Channel;
use tonic::{Code, GrpcMethod, Request, Response, Status};
use tonic_prost::ProstCodec;

use crate::server::{Protocols, Server};

const SERVICE: &str = "meridian.test.Echo";
const UNARY: &str = "/meridian.test.Echo/Unary";
const SERVER_STREAM: &str = "/meridian.test.Echo/ServerStream";

/// Request of both methods.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EchoRequest {
    #[prost(string, tag = "1")]
    pub message: String,
    /// Replies to stream (`ServerStream` only).
    #[prost(uint32, tag = "2")]
    pub count: u32,
    /// Non-zero: the gRPC status code to fail with.
    #[prost(int32, tag = "3")]
    pub fail_code: i32,
}

/// Reply of both methods.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EchoReply {
    #[prost(string, tag = "1")]
    pub message: String,
    /// Position in the stream (0 for unary).
    #[prost(uint32, tag = "2")]
    pub index: u32,
}

/// A running gRPC upstream on 127.0.0.1 (h2c). Dropping it stops it.
pub struct GrpcUpstream {
    server: Server,
    calls: Arc<AtomicU64>,
}

impl GrpcUpstream {
    /// Starts the server; returns its address and the handle that keeps it running.
    pub async fn start() -> (SocketAddr, GrpcUpstream) {
        let calls = Arc::new(AtomicU64::new(0));
        let counter = calls.clone();
        let server = Server::start(Protocols::Http2Only, move |req, _kill| {
            counter.fetch_add(1, Ordering::Relaxed);
            route(req)
        })
        .await;
        (server.addr(), GrpcUpstream { server, calls })
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `http://127.0.0.1:PORT`, usable as a channel URI.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// RPCs received so far (any path).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Stops accepting and lets calls in flight finish (up to 5 s).
    pub async fn stop(mut self) {
        self.server.stop().await;
    }
}

async fn route(req: http::Request<Incoming>) -> Result<http::Response<tonic::body::Body>, Infallible> {
    let mut grpc = tonic::server::Grpc::new(ProstCodec::<EchoReply, EchoRequest>::default());
    Ok(match req.uri().path() {
        UNARY => grpc.unary(UnarySvc, req).await,
        SERVER_STREAM => grpc.server_streaming(StreamSvc, req).await,
        other => Status::unimplemented(format!("no method {other}")).into_http(),
    })
}

/// Encodes requests, decodes replies (the server's codec is the mirror image).
type ClientCodec = ProstCodec<EchoRequest, EchoReply>;
type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;
type ReplyStream = Pin<Box<dyn Stream<Item = Result<EchoReply, Status>> + Send + 'static>>;

struct UnarySvc;

impl tonic::server::UnaryService<EchoRequest> for UnarySvc {
    type Response = EchoReply;
    type Future = BoxFuture<Result<Response<EchoReply>, Status>>;

    fn call(&mut self, request: Request<EchoRequest>) -> Self::Future {
        Box::pin(async move {
            let req = request.into_inner();
            if req.fail_code != 0 {
                return Err(Status::new(Code::from(req.fail_code), req.message));
            }
            let mut response = Response::new(EchoReply { message: req.message, index: 0 });
            response.metadata_mut().insert("x-upstream", "grpc".parse().expect("ascii metadata"));
            Ok(response)
        })
    }
}

struct StreamSvc;

impl tonic::server::ServerStreamingService<EchoRequest> for StreamSvc {
    type Response = EchoReply;
    type ResponseStream = ReplyStream;
    type Future = BoxFuture<Result<Response<ReplyStream>, Status>>;

    fn call(&mut self, request: Request<EchoRequest>) -> Self::Future {
        Box::pin(async move {
            let req = request.into_inner();
            let replies = (0..req.count)
                .map(move |i| Ok(EchoReply { message: format!("{}-{i}", req.message), index: i }));
            let end = (req.fail_code != 0)
                .then(|| Err(Status::new(Code::from(req.fail_code), format!("failed after {}", req.count))));
            let stream: ReplyStream = Box::pin(futures_util::stream::iter(replies.chain(end)));
            Ok(Response::new(stream))
        })
    }
}

async fn client(channel_uri: &str) -> Result<tonic::client::Grpc<Channel>, Status> {
    let endpoint = Channel::from_shared(channel_uri.to_string())
        .map_err(|e| Status::invalid_argument(format!("bad channel URI {channel_uri}: {e}")))?;
    let channel =
        endpoint.connect().await.map_err(|e| Status::unavailable(format!("connect {channel_uri}: {e}")))?;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|e| Status::unavailable(format!("channel not ready: {e}")))?;
    Ok(grpc)
}

fn request(message: &str, count: u32, fail_code: Code, method: &'static str) -> Request<EchoRequest> {
    let mut req =
        Request::new(EchoRequest { message: message.to_string(), count, fail_code: fail_code as i32 });
    req.extensions_mut().insert(GrpcMethod::new(SERVICE, method));
    req
}

/// Calls `Unary` and returns the echoed message.
pub async fn grpc_echo(channel_uri: &str, msg: &str) -> Result<String, Status> {
    let mut grpc = client(channel_uri).await?;
    let req = request(msg, 0, Code::Ok, "Unary");
    let reply = grpc.unary(req, PathAndQuery::from_static(UNARY), ClientCodec::default()).await?;
    Ok(reply.into_inner().message)
}

/// Calls `Unary` asking it to fail with `code` and `msg`; the `Err` is the status received.
pub async fn grpc_fail(channel_uri: &str, code: Code, msg: &str) -> Result<String, Status> {
    let mut grpc = client(channel_uri).await?;
    let req = request(msg, 0, code, "Unary");
    let reply = grpc.unary(req, PathAndQuery::from_static(UNARY), ClientCodec::default()).await?;
    Ok(reply.into_inner().message)
}

/// Calls `ServerStream` for `n` replies (`"item-0"` …) and collects them; `Err` if the final
/// status (in the trailers) is not OK.
pub async fn grpc_stream(channel_uri: &str, n: u32) -> Result<Vec<String>, Status> {
    let (items, status) = stream_call(channel_uri, n, Code::Ok).await;
    match status {
        Some(status) => Err(status),
        None => Ok(items),
    }
}

/// Calls `ServerStream` for `n` replies followed by the status `code`: returns the replies that
/// arrived and the final status (an OK status when the stream ended cleanly).
pub async fn grpc_stream_then_fail(channel_uri: &str, n: u32, code: Code) -> (Vec<String>, Status) {
    let (items, status) = stream_call(channel_uri, n, code).await;
    (items, status.unwrap_or_else(|| Status::ok("")))
}

async fn stream_call(channel_uri: &str, n: u32, code: Code) -> (Vec<String>, Option<Status>) {
    let mut items = Vec::new();
    let mut grpc = match client(channel_uri).await {
        Ok(grpc) => grpc,
        Err(status) => return (items, Some(status)),
    };
    let req = request("item", n, code, "ServerStream");
    let response =
        grpc.server_streaming(req, PathAndQuery::from_static(SERVER_STREAM), ClientCodec::default()).await;
    let mut stream = match response {
        Ok(response) => response.into_inner(),
        Err(status) => return (items, Some(status)),
    };
    loop {
        match stream.message().await {
            Ok(Some(reply)) => items.push(reply.message),
            Ok(None) => return (items, None),
            Err(status) => return (items, Some(status)),
        }
    }
}
