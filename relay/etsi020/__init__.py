"""ETSI GS QKD 020 V1.1.1: the interoperable KMS-to-KMS API between gateways of different domains."""
