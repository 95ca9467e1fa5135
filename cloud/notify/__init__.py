"""Results to applications: functional responses, app notifications and signed webhooks."""
