"""The tariff switching domain: relay schedules that switch tariff (or load) relays by time."""
