"""Analysis methods: the Method API, the registry, and the built-in methods."""
