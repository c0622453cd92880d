//! Proxy headers: hop-by-hop removal, Via, X-Forwarded-*, Forwarded, trusted proxies.
