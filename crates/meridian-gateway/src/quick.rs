//! Quick mode, like `caddy reverse-proxy`: one listener, one upstream, no files.

use std::collections::BTreeMap;
use std::path::PathBuf;

use meridian_model::{
    Admin, Bootstrap, ConfigErrors, ConfigSource as SourceSpec, Endpoint, GlobalConfig, Listener,
    ListenerLimits, NodeIdentity, PathMatch, Region, Route, RouteMatch, Service, ValidConfig,
};

/// The region name quick mode runs in.
pub const QUICK_REGION: &str = "local";

/// Bootstrap and global config for `meridian gateway --listen L --upstream U`.
pub fn configs(listen: &str, upstream: &str, admin: &str) -> Result<(Bootstrap, ValidConfig), ConfigErrors> {
    let global = GlobalConfig {
        deployment: "quick".into(),
        regions: vec![Region {
            name: QUICK_REGION.into(),
            public_addresses: vec![],
            peer_address: None,
            location: None,
        }],
        services: vec![Service {
            name: "upstream".into(),
            endpoints: BTreeMap::from([(
                QUICK_REGION.to_string(),
                vec![Endpoint { address: upstream.to_string(), weight: 1 }],
            )]),
            protocol: Default::default(),
            load_balancing: Default::default(),
            concurrency_limit: 100_000,
            pool: Default::default(),
            resolve_interval: meridian_model::Dur::from_secs(30),
        }],
        routes: vec![Route {
            name: "default".into(),
            matcher: RouteMatch { path: Some(PathMatch::Prefix("/".into())), ..Default::default() },
            service: "upstream".into(),
            policies: vec![],
            timeouts: Default::default(),
            retries: Default::default(),
            max_body_bytes: None,
            strip_prefix: false,
        }],
        policies: vec![],
        consumers: vec![],
    };
    let valid = meridian_model::validate_global(global)?;
    let bootstrap = Bootstrap {
        node: NodeIdentity { id: "quick".into(), region: QUICK_REGION.into() },
        listeners: vec![Listener {
            name: "quick".into(),
            address: listen.to_string(),
            tls: None,
            // Like `caddy reverse-proxy`: no body size limit in quick mode.
            limits: ListenerLimits { max_body_bytes: u64::MAX, ..ListenerLimits::default() },
        }],
        admin: Admin { address: admin.to_string() },
        config: SourceSpec::File {
            path: PathBuf::from("<quick mode>"),
            watch_interval: meridian_model::Dur::from_secs(1),
        },
        snapshot_path: None,
        workers: None,
        trusted_proxies: vec![],
        access_log: Default::default(),
        shutdown: Default::default(),
    };
    Ok((bootstrap, valid))
}
