"""schemathesis hooks (SCHEMATHESIS_HOOKS=schemathesis_hooks, loaded by the
schemathesis run of test_api_openapi.py in its own venv): the API takes
application/msgpack bodies, which schemathesis cannot encode by itself."""

import msgpack
import schemathesis

MP_MIN, MP_MAX = -(1 << 63), (1 << 64) - 1


def _representable(v):
    """v with integers msgpack cannot hold made floats. The document keeps
    positive msgpack data in range; schemathesis's negative cases (data that
    breaks the schema on purpose) may go beyond, and the server must see
    some msgpack body to refuse rather than the run failing here."""
    if isinstance(v, bool):
        return v
    if isinstance(v, int):
        return v if MP_MIN <= v <= MP_MAX else float(v)
    if isinstance(v, list):
        return [_representable(x) for x in v]
    if isinstance(v, dict):
        return {k: _representable(x) for k, x in v.items()}
    return v


@schemathesis.serializer("application/msgpack")
def to_msgpack(ctx, value):
    return msgpack.packb(_representable(value), use_bin_type=True)
