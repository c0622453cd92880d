//! `control.yaml`: the bootstrap of a control instance (strict: unknown keys are errors).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use meridian_model::Dur;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::store::EtcdOptions;

/// The bootstrap of one control instance.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    /// Admin API and node stream address. Default `127.0.0.1:9700`.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Where the state lives: a path (the embedded redb file, relative to the working directory)
    /// or `{etcd: {endpoints, prefix, timeout}}` (shared by several instances). Default
    /// `control.redb`.
    #[serde(default = "default_store")]
    pub store: StoreConfig,
    /// The deployment id; written into the store at its first open and checked on every later
    /// open. Must equal the `deployment` of every config applied.
    pub deployment: String,
    /// A file holding an admin token (its first line); it is stored hashed at every start, so
    /// the first admin can create the other tokens. Optional.
    #[serde(default)]
    pub admin_token_file: Option<PathBuf>,
    /// Node ids expected in each region (region → ids); a listed node without a live lease
    /// shows as missing.
    #[serde(default)]
    pub expected_nodes: BTreeMap<String, Vec<String>>,
    /// How long a node stays live after its last sign of life (stream ping, ack). Default 15s.
    #[serde(default = "default_lease")]
    pub lease: Dur,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9700))
}

fn default_store() -> StoreConfig {
    StoreConfig::Redb(PathBuf::from("control.redb"))
}

/// The `store` key.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreConfig {
    /// `store: PATH` — the embedded redb file (one instance).
    Redb(PathBuf),
    /// `store: {etcd: {...}}` — a real etcd shared by several instances.
    Etcd(EtcdConfig),
}

/// `store: {etcd: {...}}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdConfig {
    /// Client URLs of the etcd members, `http://host:port` (TLS to etcd is not supported yet).
    pub endpoints: Vec<String>,
    /// Every key starts with it; must end with `/`. Default `/meridian/<deployment>/`.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Deadline of connecting and of each request to etcd; an admin request needing etcd fails
    /// with 503 after it. Default 2s.
    #[serde(default = "default_etcd_timeout")]
    pub timeout: Dur,
}

fn default_etcd_timeout() -> Dur {
    Dur::from_secs(2)
}

impl EtcdConfig {
    /// The connection options, with the prefix defaulted for `deployment`.
    pub fn options(&self, deployment: &str) -> EtcdOptions {
        EtcdOptions {
            endpoints: self.endpoints.clone(),
            prefix: self.prefix.clone().unwrap_or_else(|| format!("/meridian/{deployment}/")),
            timeout: self.timeout.get(),
        }
    }

    fn validate(&self) -> Result<(), String> {
        if self.endpoints.is_empty() {
            return Err("store.etcd.endpoints: must list at least one etcd client URL".into());
        }
        for (i, e) in self.endpoints.iter().enumerate() {
            let Some(rest) = e.strip_prefix("http://") else {
                return Err(format!(
                    "store.etcd.endpoints[{i}]: {e:?} must be http://HOST:PORT (TLS to etcd is not supported yet)"
                ));
            };
            if rest.is_empty() || rest.contains('/') {
                return Err(format!("store.etcd.endpoints[{i}]: {e:?} must be http://HOST:PORT"));
            }
        }
        if let Some(p) = &self.prefix
            && !(p.starts_with('/') && p.ends_with('/'))
        {
            return Err(format!("store.etcd.prefix: {p:?} must start and end with /"));
        }
        if self.timeout.get().is_zero() {
            return Err("store.etcd.timeout: must be more than 0".into());
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for StoreConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<StoreConfig, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StoreConfig;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a redb file path, or {etcd: {endpoints: [...], prefix: ..., timeout: ...}}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StoreConfig, E> {
                if v.trim().is_empty() {
                    return Err(E::custom("store: the redb path must not be empty"));
                }
                Ok(StoreConfig::Redb(PathBuf::from(v)))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<StoreConfig, A::Error> {
                let mut etcd = None;
                while let Some(k) = m.next_key::<String>()? {
                    match k.as_str() {
                        "etcd" if etcd.is_none() => etcd = Some(m.next_value::<EtcdConfig>()?),
                        "etcd" => return Err(de::Error::duplicate_field("etcd")),
                        other => return Err(de::Error::unknown_field(other, &["etcd"])),
                    }
                }
                etcd.map(StoreConfig::Etcd).ok_or_else(|| de::Error::missing_field("etcd"))
            }
        }
        d.deserialize_any(V)
    }
}

fn default_lease() -> Dur {
    Dur::from_secs(15)
}

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
}

impl ControlConfig {
    pub fn parse(yaml: &str) -> Result<ControlConfig, String> {
        let c: ControlConfig = serde_saphyr::from_str(yaml).map_err(|e| e.to_string())?;
        if c.deployment.trim().is_empty() {
            return Err("deployment: must not be empty".into());
        }
        if let StoreConfig::Etcd(e) = &c.store {
            e.validate()?;
        }
        Ok(c)
    }

    pub fn load(path: &Path) -> Result<ControlConfig, BootstrapError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|source| BootstrapError::Read { path: p.clone(), source })?;
        ControlConfig::parse(&text).map_err(|message| BootstrapError::Parse { path: p, message })
    }

    /// The store for people: `redb file PATH` or `etcd at URLS, prefix P`.
    pub fn store_description(&self) -> String {
        match &self.store {
            StoreConfig::Redb(p) => format!("redb file {}", p.display()),
            StoreConfig::Etcd(e) => {
                let o = e.options(&self.deployment);
                format!("etcd at {}, prefix {}", o.endpoints.join(", "), o.prefix)
            }
        }
    }

    /// The admin token from `admin_token_file`, if set.
    pub fn admin_token(&self) -> Result<Option<String>, BootstrapError> {
        let Some(f) = &self.admin_token_file else { return Ok(None) };
        let text = std::fs::read_to_string(f)
            .map_err(|source| BootstrapError::Read { path: f.display().to_string(), source })?;
        let t = text.lines().next().unwrap_or("").trim().to_string();
        if t.is_empty() {
            return Err(BootstrapError::Parse {
                path: f.display().to_string(),
                message: "empty token".into(),
            });
        }
        Ok(Some(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_with_defaults() {
        let c = ControlConfig::parse("deployment: d\n").unwrap();
        assert_eq!(c.listen.port(), 9700);
        assert_eq!(c.store, StoreConfig::Redb(PathBuf::from("control.redb")));
        assert_eq!(c.lease.get().as_secs(), 15);
        assert!(ControlConfig::parse("deployment: d\ncolour: blue\n").unwrap_err().contains("colour"));
        assert!(ControlConfig::parse("listen: 127.0.0.1:1\n").is_err());
    }

    #[test]
    fn store_is_a_path_or_etcd() {
        let c = ControlConfig::parse("deployment: d\nstore: /var/lib/meridian/c.redb\n").unwrap();
        assert_eq!(c.store, StoreConfig::Redb(PathBuf::from("/var/lib/meridian/c.redb")));
        let c = ControlConfig::parse(
            "deployment: d\nstore:\n  etcd:\n    endpoints: [\"http://127.0.0.1:2379\"]\n",
        )
        .unwrap();
        let StoreConfig::Etcd(e) = &c.store else { panic!("{c:?}") };
        let o = e.options("d");
        assert_eq!((o.prefix.as_str(), o.timeout.as_secs()), ("/meridian/d/", 2));
        let with = |etcd: &str| ControlConfig::parse(&format!("deployment: d\nstore:\n  etcd: {etcd}\n"));
        assert!(with("{endpoints: [\"http://a:1\"], prefix: /x/, timeout: 500ms}").is_ok());
        assert!(with("{endpoints: [\"http://a:1\"], colour: blue}").unwrap_err().contains("colour"));
        assert!(with("{endpoints: []}").unwrap_err().contains("store.etcd.endpoints"));
        assert!(with("{endpoints: [\"a:1\"]}").unwrap_err().contains("store.etcd.endpoints[0]"));
        assert!(with("{endpoints: [\"http://a:1\"], prefix: x}").unwrap_err().contains("store.etcd.prefix"));
        let other = ControlConfig::parse("deployment: d\nstore: {consul: {}}\n").unwrap_err();
        assert!(other.contains("consul"), "{other}");
    }
}
