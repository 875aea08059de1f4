"""schemathesis hooks for tests/openapi.rs: long polls answer at once."""
import schemathesis


@schemathesis.hook
def map_query(ctx, query):
    if query and "wait_ms" in query:
        query["wait_ms"] = 0
    return query
