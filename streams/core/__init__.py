"""The pure core: the change model, Avro codec, contracts, mode model (no I/O, no Kafka client)."""
