//! Integration tests of the gateway data plane: a real gateway on loopback, real test upstreams
//! (meridian-testkit), real clients (reqwest, tokio-tungstenite, tonic, raw TCP).

#[path = "gateway/control.rs"]
mod control;
#[path = "gateway/failover.rs"]
mod failover;
#[path = "gateway/harness.rs"]
mod harness;
#[path = "gateway/limits.rs"]
mod limits;
#[path = "gateway/protocols.rs"]
mod protocols;
#[path = "gateway/proxying.rs"]
mod proxying;
#[path = "gateway/reload.rs"]
mod reload;
#[path = "gateway/resilience.rs"]
mod resilience;
#[path = "gateway/scripted.rs"]
mod scripted;
#[path = "gateway/server_wire.rs"]
mod server_wire;
#[path = "gateway/upstream_wire.rs"]
mod upstream_wire;
#[path = "gateway/workers.rs"]
mod workers;
