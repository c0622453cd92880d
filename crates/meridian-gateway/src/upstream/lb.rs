//! Load balancing: weighted round robin, least-request (P2C), consistent hash.
