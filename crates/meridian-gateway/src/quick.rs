//! Quick mode, like `caddy reverse-proxy`: one listener, one upstream, no files.

use meridian_model::{Bootstrap, ConfigError, ConfigErrors, ValidConfig};

/// The region name quick mode runs in.
pub const QUICK_REGION: &str = "local";

/// Bootstrap and global config for `meridian gateway --listen L --upstream U`. Both are built
/// as the YAML a user would write, so quick mode gets exactly the defaults of a config file.
pub fn configs(listen: &str, upstream: &str, admin: &str) -> Result<(Bootstrap, ValidConfig), ConfigErrors> {
    for (what, v) in [("--listen", listen), ("--upstream", upstream), ("--admin", admin)] {
        if v.contains(['"', '\n']) {
            return Err(ConfigError::new(what, format!("invalid address {v:?}")).into());
        }
    }
    let global = format!(
        "deployment: quick\n\
         regions: [{{ name: {QUICK_REGION} }}]\n\
         services:\n  - name: upstream\n    concurrency_limit: 100000\n    endpoints: {{ {QUICK_REGION}: [{{ address: \"{upstream}\" }}] }}\n\
         routes:\n  - name: default\n    match: {{ path: {{ prefix: / }} }}\n    service: upstream\n"
    );
    // Like `caddy reverse-proxy`: no body size limit in quick mode.
    let bootstrap = format!(
        "node: {{ id: quick, region: {QUICK_REGION} }}\n\
         listeners:\n  - name: quick\n    address: \"{listen}\"\n    limits: {{ max_body_bytes: {} }}\n\
         admin: {{ address: \"{admin}\" }}\n\
         config: {{ source: file, path: \"<quick mode>\" }}\n",
        u64::MAX
    );
    let valid = meridian_model::parse_global(&global)?;
    let bootstrap = meridian_model::parse_bootstrap(&bootstrap)?;
    Ok((bootstrap, valid))
}

#[cfg(test)]
mod tests {
    #[test]
    fn quick_configs_are_valid() {
        let (b, v) = super::configs("127.0.0.1:8080", "127.0.0.1:9000", "127.0.0.1:0").unwrap();
        assert_eq!(b.listeners[0].limits.max_body_bytes, u64::MAX);
        assert_eq!(v.config().services[0].endpoints["local"][0].address, "127.0.0.1:9000");
        assert!(super::configs("127.0.0.1:8080", "bad\"addr", "127.0.0.1:0").is_err());
    }
}
