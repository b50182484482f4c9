#!/usr/bin/env python3
"""An independent DKIM verifier for the tests: dkimpy checks the message on stdin against
the TXT records of the test DNS server at HOST:PORT (dnslib). Prints one JSON line:
{"verified": bool, "signatures": [{"d", "s", "a"}]} — every signature must verify.

usage: dkim_verify.py HOST:PORT < message.eml
"""
import json
import sys

import dkim
from dnslib import DNSRecord, QTYPE


def main():
    host, port = sys.argv[1].rsplit(":", 1)

    def dnsfunc(name, timeout=5):
        if isinstance(name, bytes):
            name = name.decode()
        reply = DNSRecord.parse(DNSRecord.question(name.rstrip("."), "TXT").send(host, int(port), timeout=timeout))
        for rr in reply.rr:
            if rr.rtype == QTYPE.TXT:
                return b"".join(rr.rdata.data)
        return None

    message = sys.stdin.buffer.read()
    d = dkim.DKIM(message)
    signatures = []
    verified = True
    headers = [v for (k, v) in d.headers if k.lower() == b"dkim-signature"]
    for i, value in enumerate(headers):
        tags = dkim.util.parse_tag_value(b"".join(value.split()))
        signatures.append({"d": tags.get(b"d", b"").decode(), "s": tags.get(b"s", b"").decode(), "a": tags.get(b"a", b"").decode()})
        try:
            ok = d.verify(idx=i, dnsfunc=dnsfunc)
        except dkim.DKIMException as e:
            print(f"signature {i}: {e}", file=sys.stderr)
            ok = False
        verified = verified and ok
    print(json.dumps({"verified": bool(verified and headers), "signatures": signatures}))


if __name__ == "__main__":
    main()
