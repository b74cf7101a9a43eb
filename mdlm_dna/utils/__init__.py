"""What every layer of the package shares: user errors, typed config and argument checks, where the shipped
configs and data live, Hydra resolvers, the documentation read from the YAML comments, and run-folder locks.
Nothing here imports another part of the package (``--help`` text is built lazily)."""
