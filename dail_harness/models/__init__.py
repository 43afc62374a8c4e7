"""Model resolution and loading: the `tiny-random` alias, local paths, hub ids."""
