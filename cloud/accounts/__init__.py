"""Broker accounts with the registry as the source of truth: the records (models, store) and
what the API does with them (service): app and device credentials, provisioning claims,
certificates and their revocation."""
