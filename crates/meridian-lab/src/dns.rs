//! DNS in the lab: one director (authoritative for the lab's zone) and one checker per region,
//! so a client in a region is sent to the nearest healthy region, as in production.
//!
//! The generated global config gets a `dns` section: the zone `meridian.lab.`, a latency record
//! set `api.meridian.lab.` over every region (the latency table maps each region's client
//! network `127.0.N.0/24` to the lab's inter-region latencies, 1 ms to itself), a failover
//! record set `failover.meridian.lab.` (first region primary, second secondary), and one health
//! check per region (its gateway's admin `/-/ready`), probed by every region's checker.
//!
//! The director follows the lab's control plane (config and routing controls, node id
//! `director-1`), and so do the checkers (config only, node ids `chk-<region>-1`, each with a
//! node token bound to its id and region; last-known-good snapshots
//! `DIR/snapshots/chk-<region>-1.config`).
//!
//! Checkers' reports are authenticated: every lab start writes a new random report token to
//! `DIR/report.token` (mode 0600), the director's `--report-token-file` and every checker's.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};

use crate::LabError;
use crate::config::{LabConfig, LabRegion};
use crate::generate::latency_ms;

/// The lab's zone.
pub const ZONE: &str = "meridian.lab.";
/// The director's DNS address (UDP and TCP).
pub const DIRECTOR_DNS: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 8553));
/// The director's HTTP address (checkers' reports, `/v1/health`, `/v1/explain`).
pub const DIRECTOR_HTTP: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 8554));

/// A checker's id in region `r`.
pub fn checker_id(r: &LabRegion) -> String {
    format!("chk-{}-1", r.name)
}

/// Where region `r`'s checker sends its probes from: `127.0.N.240`.
pub fn checker_source(r: &LabRegion) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, r.octet, 240))
}

/// The `dns` section of the lab's global config (YAML, indented under `dns:`).
pub fn section(lab: &LabConfig) -> String {
    let mut y = String::new();
    let w = &mut y;
    let _ = writeln!(w, "\n# DNS: `meridian lab dig api.{ZONE}` answers with the nearest healthy region.");
    let _ = writeln!(w, "dns:\n  zones:\n    - name: {ZONE}\n      ttl: 5s");
    let _ = writeln!(w, "      ns:\n        - {{ name: ns1.{ZONE}, address: {} }}", DIRECTOR_DNS.ip());
    let _ = writeln!(w, "  record_sets:");
    let names: Vec<&str> = lab.regions.iter().map(|r| r.name.as_str()).collect();
    let _ = writeln!(w, "    - name: api.{ZONE}\n      type: A\n      ttl: 5s");
    let _ = writeln!(w, "      policy: {{ kind: latency, regions: [{}] }}", names.join(", "));
    if let [first, second, ..] = names.as_slice() {
        let _ = writeln!(w, "    - name: failover.{ZONE}\n      type: A\n      ttl: 5s");
        let _ = writeln!(w, "      policy: {{ kind: failover, primary: {first}, secondary: {second} }}");
    }
    let _ = writeln!(w, "  latency:");
    for r in &lab.regions {
        let ms: Vec<String> = lab
            .regions
            .iter()
            .map(|o| format!("{}: {}", o.name, if o.name == r.name { 1 } else { latency_ms(r, o) }))
            .collect();
        let _ = writeln!(w, "    - {{ cidr: 127.0.{}.0/24, region_ms: {{ {} }} }}", r.octet, ms.join(", "));
    }
    let _ = writeln!(w, "  # Every region's checker probes every region's gateway; a region leaves the");
    let _ = writeln!(w, "  # answers after 3 failed probes seen by a majority of the other regions.");
    let _ = writeln!(
        w,
        "  health:\n    interval: 500ms\n    timeout: 400ms\n    failure_threshold: 3\n    checks:"
    );
    for r in &lab.regions {
        let _ = writeln!(
            w,
            "      - {{ name: {0}, region: {0}, port: {1}, path: /-/ready }}",
            r.name,
            r.admin().port()
        );
    }
    let _ =
        writeln!(w, "  # Manual failover: `meridian routing-control set REGION off` takes a region out of");
    let _ = writeln!(w, "  # every answer whatever its health; at least one region stays on.");
    let _ = writeln!(w, "  routing_controls:\n    controls:");
    for r in &lab.regions {
        let _ = writeln!(w, "      - {{ name: {0}, region: {0} }}", r.name);
    }
    let _ = writeln!(w, "    safety_rules:");
    let _ = writeln!(
        w,
        "      - {{ name: one-region-on, kind: assertion, controls: [{}], min_on: 1 }}",
        names.join(", ")
    );
    let _ = writeln!(w, "    wait_period: 2s");
    y
}

/// The lab director's node id (its node token is bound to it and to the lab's first region).
pub const DIRECTOR_ID: &str = "director-1";

/// The checkers, one per region: `(region, id, last-known-good snapshot prefix)`; creates the
/// snapshots directory.
pub fn generate_checkers(lab: &LabConfig, dir: &Path) -> Result<Vec<(String, String, PathBuf)>, LabError> {
    let d = dir.join("snapshots");
    std::fs::create_dir_all(&d).map_err(|e| LabError::io(format!("creating {}", d.display()), e))?;
    Ok(lab.regions.iter().map(|r| (r.name.clone(), checker_id(r), d.join(checker_id(r)))).collect())
}

/// The report token file the director and the checkers are given.
pub fn report_token_file(dir: &Path) -> PathBuf {
    dir.join("report.token")
}

/// Writes a new random report token (mode 0600; a file left by an earlier run is replaced).
pub fn write_report_token(dir: &Path) -> Result<PathBuf, LabError> {
    let path = report_token_file(dir);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(LabError::io(format!("removing {}", path.display()), e));
        }
        _ => {}
    }
    let mut text =
        String::from("# Generated by `meridian up`: checkers' report token, new at every start.\n");
    text.push_str(&crate::plane::new_token()?);
    crate::plane::write_secret(&path, &text)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn every_lab_start_writes_a_new_report_token_only_its_owner_reads() {
        let dir = tempfile::tempdir().unwrap();
        let token = |p: &Path| {
            let text = std::fs::read_to_string(p).unwrap();
            let lines: Vec<String> = text.lines().filter(|l| !l.starts_with('#')).map(String::from).collect();
            assert_eq!(lines.len(), 1, "one token: {text}");
            lines[0].clone()
        };
        let path = write_report_token(dir.path()).unwrap();
        assert_eq!(path, report_token_file(dir.path()));
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let first = token(&path);
        assert!(first.len() > 32 && first.bytes().all(|b| b.is_ascii_graphic()), "{first}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let second = token(&write_report_token(dir.path()).unwrap());
        assert_ne!(first, second);
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
