//! The bootstrap of one node, on its own (see [`super::bootstrap_against`] for the rest).

use std::collections::HashMap;
use std::path::Path;

use super::{Errors, syntax};
use crate::bootstrap::{Bootstrap, ConfigSource, Listener};

pub fn check(b: &Bootstrap, errs: &mut Errors) {
    errs.check(|| "node.id".into(), syntax::ident(&b.node.id));
    errs.check(|| "node.region".into(), syntax::region_name(&b.node.region));
    if b.listeners.is_empty() {
        errs.push("listeners", "at least one listener is required");
    }
    errs.names("listeners", b.listeners.iter().map(|l| l.name.as_str()), syntax::ident);
    let mut bound = HashMap::new();
    for (i, l) in b.listeners.iter().enumerate() {
        let p = format!("listeners[{i}]");
        match syntax::socket_addr(&l.address, true) {
            Err(m) => errs.push(format!("{p}.address"), m),
            // Port 0 binds an ephemeral port, so two of them never clash.
            Ok(addr) if addr.port() != 0 => match bound.get(&addr) {
                Some(first) => errs.push(
                    format!("{p}.address"),
                    format!("address {addr} is also used by listeners[{first}]"),
                ),
                None => {
                    bound.insert(addr, i);
                }
            },
            Ok(_) => {}
        }
        listener(&p, l, errs);
    }
    match syntax::socket_addr(&b.admin.address, true) {
        Err(m) => errs.push("admin.address", m),
        Ok(addr) => {
            if let Some(i) = bound.get(&addr) {
                errs.push("admin.address", format!("address {addr} is also used by listeners[{i}]"));
            }
        }
    }
    match &b.config {
        ConfigSource::File { path, watch_interval } => {
            non_empty_path("config.path", path, errs);
            errs.positive(|| "config.watch_interval".into(), *watch_interval);
        }
        ConfigSource::Control { urls, token_file } => {
            if urls.is_empty() {
                errs.push("config.urls", "at least one control URL is required");
            }
            for (i, u) in urls.iter().enumerate() {
                errs.check(|| format!("config.urls[{i}]"), control_url(u));
            }
            non_empty_path("config.token_file", token_file, errs);
            if b.snapshot_path.is_none() {
                errs.push(
                    "snapshot_path",
                    "required with `source: control` (the node boots from it when no control instance is reachable)",
                );
            }
        }
    }
    if let Some(path) = &b.snapshot_path {
        non_empty_path("snapshot_path", path, errs);
    }
    if b.workers == Some(0) {
        errs.push("workers", "must be at least 1");
    }
    for (i, t) in b.trusted_proxies.iter().enumerate() {
        errs.check(|| format!("trusted_proxies[{i}]"), syntax::cidr_or_ip(t));
    }
    if let Some(path) = &b.access_log.path {
        non_empty_path("access_log.path", path, errs);
    }
    errs.positive(|| "access_log.flush_interval".into(), b.access_log.flush_interval);
}

fn listener(p: &str, l: &Listener, errs: &mut Errors) {
    if let Some(tls) = &l.tls {
        if tls.certificates.is_empty() {
            errs.push(format!("{p}.tls.certificates"), "at least one certificate is required");
        }
        for (j, c) in tls.certificates.iter().enumerate() {
            let cp = format!("{p}.tls.certificates[{j}]");
            non_empty_path(&format!("{cp}.cert"), &c.cert, errs);
            non_empty_path(&format!("{cp}.key"), &c.key, errs);
            for (k, name) in c.server_names.iter().enumerate() {
                errs.check(|| format!("{cp}.server_names[{k}]"), syntax::host_pattern(name));
            }
        }
        if tls.min_version != "1.2" && tls.min_version != "1.3" {
            errs.push(
                format!("{p}.tls.min_version"),
                format!("unsupported TLS version {:?}: use \"1.2\" or \"1.3\"", tls.min_version),
            );
        }
    }
    let lim = &l.limits;
    let p = format!("{p}.limits");
    for (field, zero) in [
        ("max_header_count", lim.max_header_count == 0),
        ("max_header_bytes", lim.max_header_bytes == 0),
        ("max_body_bytes", lim.max_body_bytes == 0),
        ("max_concurrent_streams", lim.max_concurrent_streams == 0),
    ] {
        if zero {
            errs.push(format!("{p}.{field}"), "must be greater than 0");
        }
    }
    errs.positive(|| format!("{p}.header_read_timeout"), lim.header_read_timeout);
    errs.positive(|| format!("{p}.idle_timeout"), lim.idle_timeout);
}

/// `http://host:port[/]`: the control instance's admin address.
fn control_url(u: &str) -> Result<(), String> {
    let rest = u.strip_prefix("http://").ok_or_else(|| format!("{u:?}: expected http://host:port"))?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    match rest.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && !rest.contains('/') && port.parse::<u16>().is_ok() => {
            Ok(())
        }
        _ => Err(format!("{u:?}: expected http://host:port")),
    }
}

fn non_empty_path(path: &str, value: &Path, errs: &mut Errors) {
    if value.as_os_str().is_empty() {
        errs.push(path, "must not be empty");
    }
}
