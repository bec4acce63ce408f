"""The engine: document schema, stage protocol, Ray runner, shard writer, ledger, manifest, stats."""
