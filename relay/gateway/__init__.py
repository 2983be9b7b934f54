"""The relay gateway: routing, hop-by-hop forwarding, pools, and its ETSI 014 / 020 / gRPC faces."""
