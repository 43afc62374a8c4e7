"""Running one job over many processes: launchers, device placement, sharding and merging."""
