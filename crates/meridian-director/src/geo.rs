//! Where a client network is: the config's `dns.geo` rows, then a MaxMind-format database
//! (GeoIP2 / GeoLite2 Country or City, or any database with the same fields) given to the
//! director with `--geo-database`.
//!
//! A config row that contains the address wins over the database whatever its prefix length,
//! so operators can correct or pin networks the database gets wrong. From the database, the
//! network it answers for (its record's prefix) is the row, so the EDNS Client Subnet scope
//! says exactly how far the answer applies.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ipnet::IpNet;
use meridian_model::Location;
use meridian_model::dns::GeoRow;
use serde::Deserialize;

use crate::table;

/// A two-letter code (continent or ISO 3166-1 country), upper case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Code([u8; 2]);

impl Code {
    pub(crate) fn new(s: &str) -> Option<Code> {
        match s.as_bytes() {
            [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
                Some(Code([a.to_ascii_uppercase(), b.to_ascii_uppercase()]))
            }
            _ => None,
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

/// What is known about where a client network is.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Place {
    pub continent: Option<Code>,
    pub country: Option<Code>,
    pub location: Option<Location>,
}

impl Place {
    pub(crate) fn country(&self) -> Option<&str> {
        self.country.as_ref().map(Code::as_str)
    }

    pub(crate) fn continent(&self) -> Option<&str> {
        self.continent.as_ref().map(Code::as_str)
    }

    fn is_empty(&self) -> bool {
        self.continent.is_none() && self.country.is_none() && self.location.is_none()
    }
}

/// The config's rows (longest prefix first) and the database, if one is loaded.
#[derive(Default)]
pub(crate) struct GeoTable {
    rows: Vec<(IpNet, Place)>,
    db: Option<Arc<GeoDatabase>>,
}

impl GeoTable {
    /// From the config's rows (already parsed; any order).
    pub(crate) fn from_rows(rows: Vec<(IpNet, &GeoRow)>) -> GeoTable {
        let mut rows: Vec<(IpNet, Place)> = rows
            .into_iter()
            .map(|(net, r)| {
                let place = Place {
                    continent: r.continent.as_deref().and_then(Code::new),
                    country: r.country.as_deref().and_then(Code::new),
                    location: r.location,
                };
                (net.trunc(), place)
            })
            .collect();
        rows.sort_by_key(|(n, _)| std::cmp::Reverse(n.prefix_len()));
        GeoTable { rows, db: None }
    }

    pub(crate) fn set_database(&mut self, db: Option<Arc<GeoDatabase>>) {
        self.db = db;
    }

    /// The network containing `ip` and where it is: a config row first, then the database.
    pub(crate) fn lookup(&self, ip: IpAddr) -> Option<(IpNet, Place)> {
        if let Some((net, place)) = table::lookup(&self.rows, ip) {
            return Some((net, *place));
        }
        self.db.as_ref()?.lookup(ip)
    }
}

/// Why a database could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("geo database {path}: {message}")]
pub struct GeoDatabaseError {
    path: PathBuf,
    message: String,
}

/// A MaxMind-format database, read into memory once.
pub struct GeoDatabase {
    reader: maxminddb::Reader<Vec<u8>>,
    path: PathBuf,
}

impl std::fmt::Debug for GeoDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoDatabase").field("path", &self.path).field("type", &self.database_type()).finish()
    }
}

/// The fields read from a record (GeoIP2 Country and City layout); everything else is skipped.
#[derive(Deserialize)]
struct Record<'a> {
    #[serde(borrow, default)]
    continent: Option<Coded<'a>>,
    #[serde(borrow, default)]
    country: Option<IsoCoded<'a>>,
    #[serde(default)]
    location: Option<Coordinates>,
}

#[derive(Deserialize)]
struct Coded<'a> {
    #[serde(borrow, default)]
    code: Option<&'a str>,
}

#[derive(Deserialize)]
struct IsoCoded<'a> {
    #[serde(borrow, default)]
    iso_code: Option<&'a str>,
}

#[derive(Deserialize)]
struct Coordinates {
    #[serde(default)]
    latitude: Option<f64>,
    #[serde(default)]
    longitude: Option<f64>,
}

impl GeoDatabase {
    /// Reads and checks the file: it must be a MaxMind DB whose search tree and data section
    /// are consistent.
    pub fn open(path: &Path) -> Result<GeoDatabase, GeoDatabaseError> {
        let fail = |message: String| GeoDatabaseError { path: path.to_path_buf(), message };
        let reader = maxminddb::Reader::open_readfile(path).map_err(|e| fail(e.to_string()))?;
        reader.verify().map_err(|e| fail(format!("not a valid MaxMind DB: {e}")))?;
        Ok(GeoDatabase { reader, path: path.to_path_buf() })
    }

    /// The file it was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The database's type from its metadata, e.g. `GeoIP2-City`.
    pub fn database_type(&self) -> &str {
        &self.reader.metadata().database_type
    }

    /// The database's network containing `ip` and where it is; `None` when the database has
    /// no record for it, or the record has no continent, country or coordinates.
    pub(crate) fn lookup(&self, ip: IpAddr) -> Option<(IpNet, Place)> {
        let found = self.reader.lookup(ip).ok()?;
        let record: Record<'_> = match found.decode() {
            Ok(Some(r)) => r,
            Ok(None) => return None,
            Err(e) => {
                tracing::debug!(%ip, error = %e, path = %self.path.display(), "geo database record not readable");
                return None;
            }
        };
        let network = found.network().ok()?;
        let net = IpNet::new(network.network(), network.prefix()).ok()?;
        let location = match record.location {
            Some(Coordinates { latitude: Some(lat), longitude: Some(lon) }) => Some(Location { lat, lon }),
            _ => None,
        };
        let place = Place {
            continent: record.continent.and_then(|c| c.code).and_then(Code::new),
            country: record.country.and_then(|c| c.iso_code).and_then(Code::new),
            location,
        };
        (!place.is_empty()).then_some((net, place))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_two_letters_upper_cased() {
        assert_eq!(Code::new("eu").unwrap().as_str(), "EU");
        assert!(Code::new("EUR").is_none());
        assert!(Code::new("4U").is_none());
    }

    #[test]
    fn a_file_that_is_not_a_database_is_a_clear_error() {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), b"not a database").unwrap();
        let e = GeoDatabase::open(f.path()).unwrap_err().to_string();
        assert!(e.starts_with(&format!("geo database {}", f.path().display())), "{e}");
    }
}
