"""X.509 material for mutual TLS: a private CA, per-entity certificates, TLS contexts, peer identities."""
