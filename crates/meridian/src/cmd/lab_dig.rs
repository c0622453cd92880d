//! `meridian lab dig NAME [--region R] [--type A]`: one DNS query to the lab's director, sent
//! from a client address in region R (127.0.N.250), so the latency and geo policies see a
//! client of that region; then the director's own explanation of the answer.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::str::FromStr as _;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};
use meridian_lab::LabConfig;
use meridian_lab::dns::{DIRECTOR_DNS, DIRECTOR_HTTP, ZONE};

pub async fn run(lab: &LabConfig, region: Option<&str>, rtype: &str, name: &str) -> anyhow::Result<ExitCode> {
    let r = match region {
        Some(n) => lab.region(n).with_context(|| format!("unknown region {n:?}"))?,
        None => lab.regions.first().context("the lab has no region")?,
    };
    let rtype =
        RecordType::from_str(&rtype.to_ascii_uppercase()).map_err(|e| anyhow::anyhow!("--type: {e}"))?;
    let fqdn = if name.ends_with('.') { name.to_string() } else { format!("{name}.{ZONE}") };
    let qname = Name::from_ascii(&fqdn).with_context(|| format!("invalid name {fqdn:?}"))?;
    let source = IpAddr::V4(r.client_ip());

    let socket = tokio::net::UdpSocket::bind(SocketAddr::new(source, 0))
        .await
        .with_context(|| format!("binding {source}"))?;
    let mut q = Message::query();
    q.metadata.id = (std::process::id() & 0xffff) as u16;
    q.add_query(Query::query(qname, rtype));
    let started = Instant::now();
    socket.send_to(&q.to_vec()?, DIRECTOR_DNS).await.with_context(|| format!("sending to {DIRECTOR_DNS}"))?;
    let mut buf = vec![0u8; 4096];
    let n = match tokio::time::timeout(Duration::from_secs(3), socket.recv(&mut buf)).await {
        Ok(r) => r.context("receiving the answer")?,
        Err(_) => bail!("no answer from the director at {DIRECTOR_DNS} within 3s (is it down?)"),
    };
    let m = Message::from_vec(&buf[..n]).context("decoding the answer")?;
    println!(
        ";; {fqdn} {rtype} from {source} (a client in {}) -> director {DIRECTOR_DNS}: {} in {} ms{}",
        r.name,
        m.metadata.response_code,
        started.elapsed().as_millis(),
        if m.metadata.truncation { " (truncated)" } else { "" }
    );
    for rec in &m.answers {
        println!("{}\t{}\t{}\t{}", rec.name, rec.ttl, rec.record_type(), rec.data);
    }
    if m.answers.is_empty() {
        for rec in &m.authorities {
            println!("; authority: {}\t{}\t{}\t{}", rec.name, rec.ttl, rec.record_type(), rec.data);
        }
    }

    // Why: the director's explanation for a client of this region.
    let path = format!("/v1/explain?name={fqdn}&type={rtype}&client_subnet=127.0.{}.0/24", r.octet);
    let req = meridian_lab::http1::Request::get(DIRECTOR_HTTP, &path, Duration::from_secs(3));
    match req.send().await {
        Ok(resp) if resp.status.is_success() => {
            let v: serde_json::Value = serde_json::from_slice(&resp.body).unwrap_or_default();
            let s = |k: &str| match &v[k] {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Null => "-".into(),
                other => other.to_string(),
            };
            println!();
            println!(
                ";; why: policy {}, member {}, table row {}, fail-open {}",
                s("policy"),
                s("member"),
                s("table_row"),
                s("fail_open")
            );
            if let Some(checks) = v["health"]["checks"].as_array() {
                for c in checks {
                    println!(
                        ";;   {}: {} ({})",
                        c["name"].as_str().unwrap_or("?"),
                        if c["healthy"] == true { "healthy" } else { "unhealthy" },
                        c["reason"].as_str().unwrap_or("")
                    );
                }
            }
            if v["health"]["partitioned"] == true {
                println!(";;   the director is partitioned: it keeps its last verdicts");
            }
            if !s("note").is_empty() && s("note") != "-" {
                println!(";; {}", s("note"));
            }
            println!(";; (all of it: curl 'http://{DIRECTOR_HTTP}{path}')");
        }
        Ok(resp) => println!(";; explain answered {}", resp.status),
        Err(e) => println!(";; explain unavailable: {e}"),
    }
    Ok(ExitCode::SUCCESS)
}
