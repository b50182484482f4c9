"""Schemathesis hooks for tests/api/schema.rs: raw mail bodies (`message/rfc822`, the
inject operations) go on the wire as their text, as `text/plain` bodies do."""

import schemathesis

schemathesis.serializer.alias("message/rfc822", "text/plain")
