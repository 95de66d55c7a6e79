"""`parley`: Parley from a terminal. It talks only to the gateway's public HTTP API, as curl and
the web app do, with the URL and key from flags, the environment or a config file."""
