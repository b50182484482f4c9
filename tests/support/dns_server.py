#!/usr/bin/env python3
"""A tiny authoritative DNS server for tests and the benchmark: serves the TXT records
of a JSON file ({"name": ["text", ...]}) over UDP on 127.0.0.1, answers NXDOMAIN for
every other name, and prints its port on the first line of stdout.

usage: dns_server.py RECORDS.json [PORT]
"""
import json
import socket
import sys

from dnslib import DNSRecord, QTYPE, RCODE, RR, TXT


def main():
    records = {k.rstrip(".").lower(): v for k, v in json.load(open(sys.argv[1])).items()}
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", port))
    print(sock.getsockname()[1], flush=True)
    while True:
        data, addr = sock.recvfrom(4096)
        try:
            request = DNSRecord.parse(data)
        except Exception:
            continue
        reply = request.reply()
        name = str(request.q.qname).rstrip(".").lower()
        if name in records:
            if request.q.qtype in (QTYPE.TXT, QTYPE.ANY):
                for text in records[name]:
                    chunks = [text[i:i + 255] for i in range(0, len(text), 255)] or [""]
                    reply.add_answer(RR(request.q.qname, QTYPE.TXT, rdata=TXT(chunks), ttl=60))
        else:
            reply.header.rcode = RCODE.NXDOMAIN
        sock.sendto(reply.pack(), addr)


if __name__ == "__main__":
    main()
