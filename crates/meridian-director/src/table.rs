//! Client-network tables (longest prefix match) and distances.

use std::net::IpAddr;

use ipnet::IpNet;
use meridian_model::Location;

/// The most specific row containing `ip`. Rows are sorted longest prefix first (see
/// `View::build`), so the first hit wins. A linear scan: tables are small in this slice; a
/// prefix trie (or the MaxMind reader) replaces it when they are not.
pub(crate) fn lookup<T>(rows: &[(IpNet, T)], ip: IpAddr) -> Option<(IpNet, &T)> {
    rows.iter().find(|(net, _)| net.contains(&ip)).map(|(n, t)| (*n, t))
}

/// Great-circle distance in kilometres (haversine).
pub(crate) fn km(a: Location, b: Location) -> f64 {
    let (la1, la2) = (a.lat.to_radians(), b.lat.to_radians());
    let dlat = la2 - la1;
    let dlon = (b.lon - a.lon).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * 6371.0 * h.sqrt().asin()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_wins_and_distances_are_plausible() {
        let mut rows: Vec<(IpNet, u8)> =
            vec![("10.0.0.0/8".parse().unwrap(), 8), ("10.1.0.0/16".parse().unwrap(), 16)];
        rows.sort_by_key(|(n, _)| std::cmp::Reverse(n.prefix_len()));
        assert_eq!(lookup(&rows, "10.1.2.3".parse().unwrap()).unwrap().1, &16);
        assert_eq!(lookup(&rows, "10.2.2.3".parse().unwrap()).unwrap().1, &8);
        assert!(lookup(&rows, "11.0.0.1".parse().unwrap()).is_none());
        let dublin = Location { lat: 53.3, lon: -6.3 };
        let virginia = Location { lat: 38.9, lon: -77.4 };
        assert!((5400.0..5600.0).contains(&km(dublin, virginia)), "{}", km(dublin, virginia));
    }
}
