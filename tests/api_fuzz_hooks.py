"""schemathesis hooks for tests/tests/api_fuzz.rs (loaded through SCHEMATHESIS_HOOKS).

`POST /api/v1/write` takes a snappy-compressed protobuf body (`application/x-protobuf`,
Prometheus remote write); schemathesis has no serializer for that media type, so the generated
binary string is sent as it is. The server must answer such bytes as the document says (401
without a sender token), never with a 5xx.
"""

import schemathesis


@schemathesis.serializer("application/x-protobuf")
def protobuf(ctx, value):
    if isinstance(value, bytes):
        return value
    return str(value).encode()
