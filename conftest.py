# Real PostgreSQL and NATS for every test directory (see parley.kit.testing).
pytest_plugins = ["parley.kit.testing"]
