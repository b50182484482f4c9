#!/usr/bin/env python3
"""A tiny authoritative DNS server for tests and the benchmark: serves the records of a
JSON file ({"name": ["text", ...]}) over UDP on 127.0.0.1, answers NXDOMAIN for every
other name, and prints its port on the first line of stdout.

Each string is a TXT record, except one starting with "MX " ("MX 10 mx.example.com"),
which is an MX record. The file is read again whenever it changes, so a test can
publish and withdraw records while the server runs (replace the file atomically).

usage: dns_server.py RECORDS.json [PORT]
"""
import json
import os
import socket
import sys

from dnslib import DNSRecord, MX, QTYPE, RCODE, RR, TXT


class Records:
    def __init__(self, path):
        self.path = path
        self.stamp = None
        self.records = {}
        self.load()

    def load(self):
        try:
            st = os.stat(self.path)
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
            if stamp == self.stamp:
                return
            with open(self.path) as f:
                records = {k.rstrip(".").lower(): v for k, v in json.load(f).items()}
        except (OSError, ValueError):
            return
        self.stamp, self.records = stamp, records


def main():
    records = Records(sys.argv[1])
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
        records.load()
        reply = request.reply()
        name = str(request.q.qname).rstrip(".").lower()
        if name in records.records:
            for value in records.records[name]:
                if value.startswith("MX "):
                    if request.q.qtype in (QTYPE.MX, QTYPE.ANY):
                        preference, exchange = value[3:].split(None, 1)
                        reply.add_answer(RR(request.q.qname, QTYPE.MX, rdata=MX(exchange, int(preference)), ttl=60))
                elif request.q.qtype in (QTYPE.TXT, QTYPE.ANY):
                    chunks = [value[i:i + 255] for i in range(0, len(value), 255)] or [""]
                    reply.add_answer(RR(request.q.qname, QTYPE.TXT, rdata=TXT(chunks), ttl=60))
        else:
            reply.header.rcode = RCODE.NXDOMAIN
        sock.sendto(reply.pack(), addr)


if __name__ == "__main__":
    main()
