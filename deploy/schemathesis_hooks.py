"""schemathesis hooks for deploy/contract.

A client sends a fresh Idempotency-Key with every distinct request (API.md: the
same key with a different body is 422 idempotency_key_reused, by design). The
generator draws keys from a small alphabet and repeats them across different
bodies, so each well-formed key is replaced by a fresh UUID before the call;
malformed keys (the negative cases) are sent as generated.
"""

import re
import uuid

import schemathesis

WELL_FORMED = re.compile(r"^[\x21-\x7e]{1,255}$")


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    headers = case.headers or {}
    for name in list(headers):
        if name.lower() == "idempotency-key" and isinstance(headers[name], str) and WELL_FORMED.match(headers[name]):
            headers[name] = str(uuid.uuid4())
    return None
