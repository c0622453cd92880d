//! Geolocation and geoproximity from a MaxMind-format database written by Debian's
//! libmaxmind-db-writer-perl (`tests/data/write-geo-db.pl`); fails when the Perl module is
//! missing, never skips.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use meridian_director::{AllHealthy, GeoDatabase};

use super::{EXAMPLE, answer_ips, start_opts};

/// Writes `networks` (lines of `CIDR CONTINENT COUNTRY [LAT LON]`) as a database at `out`.
fn write_db(out: &Path, networks: &str) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/write-geo-db.pl");
    let mut child = Command::new("perl")
        .arg(script)
        .arg(out)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("perl must be installed");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(networks.as_bytes()).unwrap();
    let done = child.wait_with_output().unwrap();
    assert!(
        done.status.success(),
        "writing the test database needs Debian's libmaxmind-db-writer-perl (this test does not skip): {}",
        String::from_utf8_lossy(&done.stderr)
    );
}

const NETWORKS: &str = "\
# GeoIP2 City-like records
198.51.100.0/24 EU IE 53.3 -6.3
203.0.113.0/25  OC AU -33.9 151.2
192.0.2.0/24    NA US 40.7 -74.0
100.64.0.0/10   SA BR
2001:db8:ab::/48 OC AU
";

/// The example's config with its `dns.geo` table replaced by one override row: the upper half
/// of 198.51.100.0/24 (Ireland in the database) pinned to Australia.
fn config() -> String {
    let start = EXAMPLE.find("  geo:\n").expect("the example has a geo table");
    let rest = &EXAMPLE[start + "  geo:\n".len()..];
    let end: usize = rest.lines().take_while(|l| l.starts_with("    ")).map(|l| l.len() + 1).sum();
    format!(
        "{}  geo:\n    - {{ cidr: 198.51.100.128/25, continent: OC, country: AU }}\n{}",
        &EXAMPLE[..start],
        &rest[end..]
    )
}

#[tokio::test]
async fn answers_follow_a_maxmind_database_behind_the_config_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("geo.mmdb");
    write_db(&path, NETWORKS);
    let db = GeoDatabase::open(&path).unwrap();
    assert_eq!(db.database_type(), "Meridian-Test-City");
    let d = start_opts(&config(), Arc::new(AllHealthy), Some(Arc::new(db))).await;

    // Country rule from the database; the scope is the database's network.
    let ie = d.dig("+subnet=198.51.100.0/25 geo.api.example.com A").await;
    assert_eq!(answer_ips(&ie), ["127.0.2.1"], "IE is in EU: {ie}");
    assert!(ie.contains("CLIENT-SUBNET: 198.51.100.0/25/24"), "{ie}");
    // The config's row wins over the database, whatever their prefix lengths.
    let pinned = d.dig("+subnet=198.51.100.200/32 geo.api.example.com A").await;
    assert_eq!(answer_ips(&pinned), ["127.0.3.1"], "pinned to AU by the config: {pinned}");
    assert!(pinned.contains("CLIENT-SUBNET: 198.51.100.200/32/25"), "{pinned}");
    let au = d.dig("+subnet=203.0.113.0/24 geo.api.example.com A").await;
    assert_eq!(answer_ips(&au), ["127.0.3.1"], "{au}");
    assert!(au.contains("CLIENT-SUBNET: 203.0.113.0/24/25"), "{au}");
    // A continent with no rule falls to the default rule; so does a network not in the database.
    let br = d.dig("+subnet=100.64.5.0/24 geo.api.example.com A").await;
    assert_eq!(answer_ips(&br), ["127.0.1.1"], "{br}");
    assert!(br.contains("CLIENT-SUBNET: 100.64.5.0/24/10"), "{br}");
    let unknown = d.dig("+subnet=10.9.0.0/16 geo.api.example.com A").await;
    assert_eq!(answer_ips(&unknown), ["127.0.1.1"], "{unknown}");
    // IPv6 networks of the database.
    let au6 = d.dig("+subnet=2001:db8:ab:1::/64 geo.api.example.com A").await;
    assert_eq!(answer_ips(&au6), ["127.0.3.1"], "{au6}");
    assert!(au6.contains("CLIENT-SUBNET: 2001:db8:ab:1::/64/48"), "{au6}");
    // Geoproximity from the database's coordinates: New York is nearest us-east-1.
    let near = d.dig("+subnet=192.0.2.0/24 near.api.example.com A").await;
    assert_eq!(answer_ips(&near), ["127.0.1.1"], "{near}");
    // Without a subnet, the resolver's own address decides (127.0.0.1: in no table).
    let plain = d.dig("geo.api.example.com A").await;
    assert_eq!(answer_ips(&plain), ["127.0.1.1"], "{plain}");
}

#[test]
fn a_database_that_is_not_one_is_refused_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.mmdb");
    write_db(&path, NETWORKS);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.truncate(bytes.len() / 3);
    std::fs::write(&path, &bytes).unwrap();
    let e = GeoDatabase::open(&path).unwrap_err().to_string();
    assert!(e.contains("broken.mmdb"), "{e}");
    let missing = GeoDatabase::open(&dir.path().join("absent.mmdb")).unwrap_err().to_string();
    assert!(missing.contains("absent.mmdb"), "{missing}");
}
