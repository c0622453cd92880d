//! The node side of distribution against a real (fake) control instance on loopback.

use std::time::Duration;

use meridian_sync::fake::FakeControl;
use meridian_sync::protocol::{Ack, DrainsContent, Kind, Snapshot};
use meridian_sync::{ClientConfig, Event, Lkg, NodeInfo, SyncClient};
use tokio::sync::mpsc;

const TOKEN: &str = "node-token";

fn drains(version: u64) -> Snapshot {
    let content = DrainsContent { regions: vec![format!("r{version}")], ..Default::default() };
    Snapshot {
        kind: Kind::Drains,
        deployment: "d".into(),
        version,
        hash: format!("h{version}"),
        content: serde_json::to_value(content).unwrap(),
    }
}

fn config(urls: Vec<String>) -> ClientConfig {
    let node = NodeInfo {
        id: "gw-1".into(),
        region: "local".into(),
        role: "gateway".into(),
        binary_version: "test".into(),
        features: vec!["config".into(), "drains".into()],
    };
    let mut c = ClientConfig::new(urls, TOKEN.into(), node);
    c.dead_after = Duration::from_millis(600);
    c.backoff_min = Duration::from_millis(20);
    c.backoff_max = Duration::from_millis(100);
    c
}

/// The next snapshot event (skipping connection events), within 5 s.
async fn next_snapshot(rx: &mut mpsc::Receiver<Event>) -> Snapshot {
    let end = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(end, rx.recv()).await.expect("a snapshot in time") {
            Some(Event::Snapshot(s)) => return s,
            Some(_) => continue,
            None => panic!("client stopped"),
        }
    }
}

/// A loopback URL nothing listens on.
async fn dead_url() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    format!("http://{}", l.local_addr().unwrap())
}

#[tokio::test]
async fn receives_current_state_and_pushes_and_acks() {
    let control = FakeControl::start(TOKEN, Duration::from_millis(100)).await;
    control.push(drains(1));
    let (client, mut rx) = SyncClient::start(config(vec![control.url()])).unwrap();
    assert_eq!(next_snapshot(&mut rx).await, drains(1));
    control.push(drains(2));
    assert_eq!(next_snapshot(&mut rx).await, drains(2));
    assert_eq!(control.hellos(), ["gw-1"]);
    let ack = Ack {
        node: "gw-1".into(),
        region: "local".into(),
        kind: Kind::Drains,
        version: 2,
        hash: "h2".into(),
        ok: true,
        error: None,
    };
    client.post_ack(&ack).await.unwrap();
    assert_eq!(control.acks(), [ack]);
}

#[tokio::test]
async fn fails_over_to_the_second_url_when_the_first_is_unreachable() {
    let control = FakeControl::start(TOKEN, Duration::from_millis(100)).await;
    control.push(drains(1));
    let (_client, mut rx) = SyncClient::start(config(vec![dead_url().await, control.url()])).unwrap();
    assert_eq!(next_snapshot(&mut rx).await, drains(1));
}

#[tokio::test]
async fn fails_over_when_the_stream_dies_or_goes_silent() {
    let (a, b) = (
        FakeControl::start(TOKEN, Duration::from_millis(100)).await,
        FakeControl::start(TOKEN, Duration::from_millis(100)).await,
    );
    a.push(drains(1));
    b.push(drains(2));
    let (client, mut rx) = SyncClient::start(config(vec![a.url(), b.url()])).unwrap();
    assert_eq!(next_snapshot(&mut rx).await.version, 1);
    // A hung instance: the stream stays open but silent past `dead_after`.
    a.set_silent(true);
    assert_eq!(next_snapshot(&mut rx).await.version, 2);
    // Acks go to the instance the stream is open to.
    let ack = Ack {
        node: "gw-1".into(),
        region: "local".into(),
        kind: Kind::Drains,
        version: 2,
        hash: "h2".into(),
        ok: true,
        error: None,
    };
    client.post_ack(&ack).await.unwrap();
    assert_eq!(b.acks().len(), 1);
    assert!(a.acks().is_empty());
    // A killed instance: back to the first one.
    a.set_silent(false);
    b.kill();
    assert_eq!(next_snapshot(&mut rx).await.version, 1);
}

#[tokio::test]
async fn a_wrong_token_is_refused_and_reported() {
    let control = FakeControl::start("other", Duration::from_millis(100)).await;
    let (_client, mut rx) = SyncClient::start(config(vec![control.url()])).unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap();
    match ev {
        Event::Disconnected { error, .. } => assert!(error.contains("HTTP 401"), "{error}"),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap(),
        Some(Event::AllUnreachable)
    );
}

#[test]
fn last_known_good_round_trips_and_refuses_a_corrupt_file() {
    let dir = tempfile::tempdir().unwrap();
    let lkg = Lkg::new(dir.path().join("node"));
    lkg.save(&drains(4)).unwrap();
    assert_eq!(lkg.load(Kind::Drains).unwrap().unwrap().snapshot, drains(4));
    assert!(lkg.load(Kind::Config).unwrap().is_none());
    let path = lkg.path(Kind::Drains);
    let text = std::fs::read_to_string(&path).unwrap().replace("r4", "r5");
    std::fs::write(&path, text).unwrap();
    let err = lkg.load(Kind::Drains).unwrap_err().to_string();
    assert!(err.contains("is corrupt (checksum mismatch") && err.contains("refusing it"), "{err}");
    std::fs::write(&path, "garbage").unwrap();
    let err = lkg.load(Kind::Drains).unwrap_err().to_string();
    assert!(err.contains("is corrupt (no header line)"), "{err}");
}

#[tokio::test]
async fn a_node_receives_only_the_kinds_it_announces() {
    let control = FakeControl::start(TOKEN, Duration::from_millis(100)).await;
    let controls = |version: u64| {
        let (content, hash) = meridian_sync::controls::ControlsContent::default().canonical();
        Snapshot {
            kind: Kind::Controls,
            deployment: "d".into(),
            version,
            hash,
            content: serde_json::from_str(&content).unwrap(),
        }
    };
    control.push(controls(1));
    control.push(drains(1));
    // A gateway (config, drains): the current drains, never the routing controls.
    let (_gw, mut rx) = SyncClient::start(config(vec![control.url()])).unwrap();
    assert_eq!(next_snapshot(&mut rx).await, drains(1));
    control.push(controls(2));
    control.push(drains(2));
    assert_eq!(next_snapshot(&mut rx).await, drains(2));
    // A director (config, controls): the routing controls, never the drains.
    let mut c = config(vec![control.url()]);
    c.node.role = "director".into();
    c.node.features = vec!["config".into(), "controls".into()];
    let (_dir, mut rx) = SyncClient::start(c).unwrap();
    assert_eq!(next_snapshot(&mut rx).await, controls(2));
    control.push(drains(3));
    control.push(controls(3));
    assert_eq!(next_snapshot(&mut rx).await, controls(3));
}
