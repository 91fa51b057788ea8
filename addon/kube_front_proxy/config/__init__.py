"""config.yaml: the settings, strict YAML reading, live reload, and the runtime built from them."""
