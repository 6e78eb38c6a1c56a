"""The user's folder: sdt.toml's schema, the plug and client classes checked statically, and the
``UserProject`` every later stage is handed."""
