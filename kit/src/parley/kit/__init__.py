"""What every Parley service shares and nothing owns.

settings   ServiceSettings: PARLEY_* environment, placeholder secrets refused outside dev
logs       JSON logs carrying the request id
errors     ParleyError and its kinds, mapped to gRPC status codes (and HTTP by the gateway)
identity   who a call is for: gRPC metadata set by the gateway
db         async SQLAlchemy engine (psycopg 3) and per-service Alembic migrations
bus        NATS JetStream: streams, durable consumers, parking of poison messages
outbox     the transactional outbox and its relay
rpc        grpc.aio server (health, reflection, interceptor) and channels
runtime    one service's process: start in order, stop in reverse on SIGTERM
tokens     tiktoken counting with the bundled offline cl100k_base
contracts  facts that cross services, defined once: subjects, message ids, limits, document types, tiers
ids        uuid ids from callers: parsed, or NotFound
paging     opaque cursor page tokens for every List call
timestamps datetimes to protobuf Timestamps
devstack   embedded PostgreSQL + NATS and the whole platform for `make run` and tests
testing    the pytest plugin that starts real PostgreSQL and NATS once per session
"""
