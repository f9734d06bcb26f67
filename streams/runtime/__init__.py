"""The runtime: settings as data, credentials and connection strings, state files, the retry policy,
logs, metrics, Kafka configuration and topics."""
