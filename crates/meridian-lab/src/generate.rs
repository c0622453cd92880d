//! From a [`LabConfig`] to real files in a run directory: the global config, one bootstrap per
//! gateway, the lab CA and the gateways' peer certificates. Everything written is validated with
//! the same functions the gateway uses, so a generator bug stops `meridian up` before any
//! process starts.
//!
//! Layout of the run directory:
//!
//! ```text
//! DIR/lab.yaml                        the lab config used
//! DIR/global.yaml                     the global config every gateway serves
//! DIR/gateways/gw-<region>-1.yaml     bootstraps
//! DIR/certs/ca.crt.pem                the lab CA
//! DIR/certs/gw-<region>-1.{crt,key}.pem
//! DIR/snapshots/gw-<region>-1.json    last-known-good snapshots
//! DIR/control/                        the control plane's files (see `plane`)
//! DIR/checkers/chk-<region>-1.yaml    health checkers (see `dns`)
//! DIR/logs/<process>.log              output of every child process
//! DIR/state.json                      written by the running supervisor
//! ```

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::LabError;
use crate::certs::LabCa;
use crate::config::{LabConfig, LabRegion};
use crate::plane::{self, PlaneFiles};

/// What [`generate`] wrote.
#[derive(Debug, Clone)]
pub struct Generated {
    /// The run directory, absolute.
    pub dir: PathBuf,
    pub global: PathBuf,
    /// `(region, node id, bootstrap path)` per gateway.
    pub gateways: Vec<(String, String, PathBuf)>,
    pub logs: PathBuf,
    /// The control plane's files.
    pub plane: PlaneFiles,
    /// `(region, checker id, checker file)` per region.
    pub checkers: Vec<(String, String, PathBuf)>,
}

/// Writes every file of the lab into `dir` (created if missing; generated files are replaced).
pub fn generate(lab: &LabConfig, dir: &Path) -> Result<Generated, LabError> {
    lab.check()?;
    for sub in ["gateways", "certs", "snapshots", "logs"] {
        let d = dir.join(sub);
        std::fs::create_dir_all(&d).map_err(|e| LabError::io(format!("creating {}", d.display()), e))?;
    }
    let dir =
        std::fs::canonicalize(dir).map_err(|e| LabError::io(format!("resolving {}", dir.display()), e))?;
    write(&dir.join("lab.yaml"), &lab.to_yaml())?;

    let global_yaml = global_config(lab);
    let valid = meridian_model::parse_global(&global_yaml).map_err(|e| LabError::Generated(e.to_string()))?;
    let global = dir.join("global.yaml");
    write(&global, &global_yaml)?;

    let plane = plane::generate(lab, &dir)?;
    let ca = LabCa::new()?;
    let ca_path = dir.join("certs/ca.crt.pem");
    write(&ca_path, ca.cert_pem())?;
    let mut gateways = Vec::new();
    for r in &lab.regions {
        let id = r.gateway_id();
        let cert = ca.issue_peer(&id, &r.name, r.gateway_ip())?;
        let cert_path = dir.join(format!("certs/{id}.crt.pem"));
        let key_path = dir.join(format!("certs/{id}.key.pem"));
        write(&cert_path, &cert.cert_pem)?;
        write(&key_path, &cert.key_pem)?;
        let text = bootstrap(r, &dir, &plane.node_token(&id), [&cert_path, &key_path, &ca_path]);
        meridian_model::parse_bootstrap(&text)
            .and_then(|b| meridian_model::check_bootstrap(&b, &valid))
            .map_err(|e| LabError::Generated(format!("bootstrap of {id}:\n{e}")))?;
        let path = dir.join(format!("gateways/{id}.yaml"));
        write(&path, &text)?;
        gateways.push((r.name.clone(), id, path));
    }
    let checkers = crate::dns::generate_checkers(lab, &dir, &global)?;
    let logs = dir.join("logs");
    Ok(Generated { dir, global, gateways, logs, plane, checkers })
}

fn write(path: &Path, text: &str) -> Result<(), LabError> {
    std::fs::write(path, text).map_err(|e| LabError::io(format!("writing {}", path.display()), e))
}

/// Round-trip latency in milliseconds between two regions: a small table of real-world
/// figures, else an estimate from the great-circle distance (light in fibre, about 1 ms per
/// 100 km of round trip, plus 5 ms).
pub fn latency_ms(a: &LabRegion, b: &LabRegion) -> u32 {
    const TABLE: &[(&str, &str, u32)] = &[
        ("us-east-1", "eu-west-1", 70),
        ("us-east-1", "ap-southeast-2", 200),
        ("eu-west-1", "ap-southeast-2", 250),
        ("us-east-1", "us-west-2", 65),
        ("eu-west-1", "eu-central-1", 25),
    ];
    let found =
        TABLE.iter().find(|(x, y, _)| (*x == a.name && *y == b.name) || (*x == b.name && *y == a.name));
    if let Some((_, _, ms)) = found {
        return *ms;
    }
    let (la, lb) = (a.location, b.location);
    let (p1, p2) = (la.lat.to_radians(), lb.lat.to_radians());
    let dlon = (lb.lon - la.lon).to_radians();
    let central = (p1.sin() * p2.sin() + p1.cos() * p2.cos() * dlon.cos()).clamp(-1.0, 1.0).acos();
    let km = central * 6371.0;
    (km / 100.0).round() as u32 + 5
}

/// The global config of the lab, as commented YAML.
pub fn global_config(lab: &LabConfig) -> String {
    let mut y = String::new();
    let w = &mut y;
    let _ = writeln!(w, "# Generated by `meridian up` from the lab config; regenerated at every start.");
    let _ = writeln!(w, "# Endpoints are the lab's relays (127.0.N.(10+k):9000...); the demo processes");
    let _ = writeln!(w, "# behind them listen on port + 10000 (see docs/lab.md).");
    let _ = writeln!(w, "deployment: lab\n\nregions:");
    for r in &lab.regions {
        let _ = writeln!(w, "  - name: {}", r.name);
        let _ = writeln!(w, "    public_addresses: [\"{}\"]", r.gateway_ip());
        let _ = writeln!(w, "    peer_address: \"{}\"", r.peer());
        let _ = writeln!(w, "    location: {{ lat: {}, lon: {} }}", r.location.lat, r.location.lon);
        let others: Vec<&LabRegion> = lab.regions.iter().filter(|o| o.name != r.name).collect();
        if !others.is_empty() {
            let _ = writeln!(w, "    latency_ms:");
            for o in others {
                let _ = writeln!(w, "      {}: {}", o.name, latency_ms(r, o));
            }
        }
    }
    let _ = writeln!(w, "\nservices:");
    for (k, s) in lab.services.iter().enumerate() {
        let _ = writeln!(w, "  - name: {}", s.name);
        let _ = writeln!(w, "    endpoints:");
        for r in &lab.regions {
            let _ = writeln!(w, "      {}:", r.name);
            for i in 0..s.instances {
                let _ = writeln!(w, "        - address: \"{}\"", r.endpoint(k, i));
            }
        }
        // Short intervals: a lab should notice a fault within a few seconds.
        let _ = writeln!(w, "    health_check:");
        let _ = writeln!(w, "      probe: {{ type: http, path: /health }}");
        let _ = writeln!(w, "      interval: 1s\n      timeout: 500ms");
        let _ = writeln!(w, "      healthy_threshold: 2\n      unhealthy_threshold: 2");
    }
    let _ = writeln!(w, "\nroutes:");
    for s in &lab.services {
        let _ = writeln!(w, "  - name: {}", s.name);
        let _ = writeln!(w, "    match:\n      path: {{ prefix: {} }}", s.path);
        let _ = writeln!(w, "    service: {}", s.name);
        let _ = writeln!(w, "    timeouts: {{ connect: 1s, per_try: 3s, request: 10s }}");
    }
    y.push_str(&crate::dns::section(lab));
    y
}

/// The bootstrap of region `r`'s gateway: config and drain switches from the lab's control
/// plane, with `token` as its node token file. `tls` is `[cert, key, ca]`.
pub fn bootstrap(r: &LabRegion, dir: &Path, token: &Path, tls: [&Path; 3]) -> String {
    let id = r.gateway_id();
    let q = |p: &Path| serde_json::to_string(&p.display().to_string()).unwrap_or_default();
    format!(
        "# Generated by `meridian up`: the gateway of region {region}.\n\
         node:\n  id: {id}\n  region: {region}\n  source_address: \"{ip}\"\n\
         listeners:\n  - name: public\n    address: \"{public}\"\n\
         admin:\n  address: \"{admin}\"\n\
         peer:\n  address: \"{peer}\"\n  cert: {cert}\n  key: {key}\n  ca: {ca}\n\
         config:\n  source: control\n  urls: [\"http://{control}\"]\n  token_file: {token}\n\
         snapshot_path: {snapshot}\n\
         # Lab processes stop at once: no load balancer waits for the drain.\n\
         shutdown:\n  drain_period: 0s\n  grace_period: 2s\n",
        region = r.name,
        ip = r.gateway_ip(),
        public = r.public(),
        admin = r.admin(),
        peer = r.peer(),
        cert = q(tls[0]),
        key = q(tls[1]),
        ca = q(tls[2]),
        control = plane::ADDRESS,
        token = q(token),
        snapshot = q(&dir.join(format!("snapshots/{id}.json"))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_valid_configs_for_the_default_lab_and_a_two_instance_lab() {
        for lab in [
            LabConfig::default(),
            LabConfig::parse(
                "regions:\n  - {name: r1, octet: 7, location: {lat: 1, lon: 2}}\n  - {name: r2, octet: 8, location: {lat: 50, lon: 2}}\n\
                 services:\n  - {name: s, path: /s, instances: 2}\n",
            )
            .unwrap(),
        ] {
            let tmp = tempfile::tempdir().unwrap();
            let g = generate(&lab, tmp.path()).unwrap();
            let global = meridian_model::load_global(&g.global).unwrap();
            assert_eq!(global.config().regions.len(), lab.regions.len());
            for s in &global.config().services {
                assert!(s.health_check.is_some());
                assert_eq!(s.endpoints.len(), lab.regions.len());
            }
            assert_eq!(g.gateways.len(), lab.regions.len());
            for (region, id, path) in &g.gateways {
                let b = meridian_model::load_bootstrap(path).unwrap();
                meridian_model::check_bootstrap(&b, &global).unwrap();
                assert_eq!(&b.node.id, id);
                assert_eq!(&b.node.region, region);
                let peer = b.peer.unwrap();
                for f in [peer.cert, peer.key, peer.ca] {
                    assert!(std::fs::read_to_string(f).unwrap().contains("-----BEGIN"));
                }
            }
        }
    }

    #[test]
    fn latencies_are_symmetric_and_known_pairs_come_from_the_table() {
        let lab = LabConfig::default();
        let (us, eu) = (&lab.regions[0], &lab.regions[1]);
        assert_eq!(latency_ms(us, eu), 70);
        assert_eq!(latency_ms(eu, us), 70);
        let mut far = lab.regions[2].clone();
        far.name = "elsewhere".into();
        let est = latency_ms(us, &far);
        assert_eq!(est, latency_ms(&far, us));
        assert!(est > 100, "{est}");
    }
}
