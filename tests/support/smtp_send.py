#!/usr/bin/env python3
"""Sends mail with Python's smtplib, a real SMTP client, and reports every reply as JSON.

usage: smtp_send.py HOST PORT FROM TO[,TO...] [--starttls] [--count N] [--threads T]
The message is read from stdin. With --count/--threads, T connections each send N
copies and the output is {"replies": [[code, text], ...]} (one per DATA); otherwise
{"ehlo": [..], "mail": [..], "rcpt": [[..]], "data": [..] | null}.
"""
import json
import smtplib
import ssl
import sys
import threading


def one_connection(host, port, sender, rcpts, msg, starttls, count, out):
    s = smtplib.SMTP(host, port, timeout=60)
    result = {}
    code, text = s.ehlo("client.test")
    result["ehlo"] = [code, text.decode("utf-8", "replace")]
    if starttls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        code, text = s.starttls(context=ctx)
        result["starttls"] = [code, text.decode("utf-8", "replace")]
        code, text = s.ehlo("client.test")
        result["ehlo_tls"] = [code, text.decode("utf-8", "replace")]
    for _ in range(count):
        options = ["SIZE=%d" % len(msg)] if s.has_extn("size") else []
        code, text = s.mail(sender, options)
        result["mail"] = [code, text.decode("utf-8", "replace")]
        result["rcpt"] = []
        ok = code == 250
        any_rcpt = False
        for r in rcpts if ok else []:
            code, text = s.rcpt(r)
            result["rcpt"].append([code, text.decode("utf-8", "replace")])
            any_rcpt = any_rcpt or code == 250
        if ok and any_rcpt:
            code, text = s.data(msg)
            result["data"] = [code, text.decode("utf-8", "replace")]
        else:
            result["data"] = None
            s.rset()
        out.append(result["data"])
    s.quit()
    return result


def main():
    host, port, sender, rcpts = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4].split(",")
    args = sys.argv[5:]
    starttls = "--starttls" in args
    count = int(args[args.index("--count") + 1]) if "--count" in args else 1
    threads = int(args[args.index("--threads") + 1]) if "--threads" in args else 0
    msg = sys.stdin.buffer.read()
    if threads == 0:
        print(json.dumps(one_connection(host, port, sender, rcpts, msg, starttls, count, [])))
        return
    replies, errors = [], []

    def worker():
        try:
            one_connection(host, port, sender, rcpts, msg, starttls, count, replies)
        except Exception as e:  # reported, so the test can show what went wrong
            errors.append(repr(e))

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    print(json.dumps({"replies": replies, "errors": errors}))


if __name__ == "__main__":
    main()
