//! `meridian demo-upstream`: a small real HTTP service for demos and the lab. Every answer
//! names the service, region and instance, so you can see where a request went. `GET /health`
//! answers 200 `{"status":"ok",...}` for health checks.

use std::convert::Infallible;
use std::process::ExitCode;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};

#[derive(clap::Args, Clone)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: String,
    /// Service name it reports.
    #[arg(long, default_value = "demo")]
    service: String,
    /// Region it reports.
    #[arg(long, default_value = "local")]
    region: String,
    /// Instance name it reports.
    #[arg(long, default_value = "demo-1")]
    instance: String,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let rt = crate::cmd::runtime(Some(1))?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&a.listen).await?;
        tracing::info!(addr = %listener.local_addr()?, service = %a.service, region = %a.region, instance = %a.instance, "demo upstream ready");
        let id: &'static Args = Box::leak(Box::new(a));
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| answer(id, req));
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    })
}

async fn answer(id: &Args, req: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    if parts.uri.path() == "/health" {
        // The target of the gateways' active health checks in the lab.
        let v = serde_json::json!({"status": "ok", "service": id.service, "region": id.region, "instance": id.instance});
        let mut r = Response::new(Full::new(Bytes::from(format!("{v}\n"))));
        r.headers_mut().insert("content-type", http::HeaderValue::from_static("application/json"));
        return Ok(r);
    }
    let received = body.collect().await.map(|b| b.to_bytes().len()).unwrap_or(0);
    let headers: serde_json::Map<String, serde_json::Value> = parts
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::from(v.to_str().unwrap_or("<binary>"))))
        .collect();
    let v = serde_json::json!({
        "service": id.service,
        "region": id.region,
        "instance": id.instance,
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "body_bytes": received,
        "headers": headers,
    });
    let mut r = Response::new(Full::new(Bytes::from(format!("{v}\n"))));
    r.headers_mut().insert("content-type", http::HeaderValue::from_static("application/json"));
    Ok(r)
}
