#!/usr/bin/env python3
"""Writes the seed corpus of nasty inputs, one file per input, under
fuzz/seeds/<target>/. Both harnesses read it: the bounded stable tests
(crates/*/tests/fuzz_*.rs) replay and mutate every seed, and `cargo fuzz run`
takes the folder as a read-only extra corpus (see docs/SECURITY.md).
Deterministic: running it again rewrites the same bytes. Run from anywhere."""
import base64
import json
import os
import shutil

ROOT = os.path.dirname(os.path.abspath(__file__))

HELLO = b"EHLO c.test\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<box@here.test>\r\n"

smtp = {
    "plain_transaction": HELLO + b"DATA\r\nSubject: hi\r\n\r\nbody\r\n.\r\nQUIT\r\n",
    "bare_lf_everywhere": b"EHLO c\nMAIL FROM:<a@x.test>\nRCPT TO:<box@here.test>\nDATA\nSubject: x\n\nbody\n.\nQUIT\n",
    "bare_cr_only": b"EHLO c\rMAIL FROM:<a@x.test>\rRCPT TO:<box@here.test>\rDATA\r.\rQUIT\r",
    "lone_dot_with_bare_lf_in_data": HELLO + b"DATA\r\nline\n.\nmore\r\n.\n\r\n.\r\nQUIT\r\n",
    "nuls_in_commands": b"EHLO c\x00.test\r\nMAIL FROM:<a\x00@x.test>\r\nRCPT TO:<box@here.test\x00>\r\n\x00\x00\x00\r\nQUIT\r\n",
    "nuls_in_data": HELLO + b"DATA\r\nSubject: \x00\r\n\r\n\x00\x00\r\n.\r\n",
    "line_of_1000": b"EHLO c\r\nNOOP " + b"x" * 993 + b"\r\nQUIT\r\n",
    "line_of_1001": b"EHLO c\r\nNOOP " + b"x" * 994 + b"\r\nQUIT\r\n",
    "line_of_5000_then_command": b"EHLO c\r\nNOOP " + b"y" * 5000 + b"\r\nNOOP\r\nQUIT\r\n",
    "long_line_without_end": b"EHLO c\r\n" + b"z" * 20000,
    "long_address": b"EHLO c\r\nMAIL FROM:<" + b"a" * 900 + b"@x.test>\r\nRCPT TO:<" + b"b" * 990 + b"@here.test>\r\n",
    "pipelined_everything": HELLO * 3 + b"RSET\r\n" + HELLO + b"DATA\r\n.\r\n" + b"NOOP\r\n" * 50 + b"QUIT\r\n",
    "pipelined_past_quit": b"HELO c\r\nQUIT\r\nHELO d\r\nMAIL FROM:<a@x.test>\r\n",
    "starttls_mid_pipeline": b"EHLO c\r\nSTARTTLS\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<box@here.test>\r\nDATA\r\nx\r\n.\r\n",
    "starttls_twice": b"EHLO c\r\nSTARTTLS\r\nEHLO c\r\nSTARTTLS\r\nQUIT\r\n",
    "bdat": b"EHLO c\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<box@here.test>\r\nBDAT 5 LAST\r\nhello\r\nBDAT 99999999999999999999\r\nQUIT\r\n",
    "auth_and_lhlo": b"LHLO c\r\nAUTH PLAIN AGFAYg==\r\nAUTH LOGIN\r\n*\r\nQUIT\r\n",
    "size_params": b"EHLO c\r\nMAIL FROM:<a@x.test> SIZE=18446744073709551616\r\nMAIL FROM:<a@x.test> SIZE=-1\r\nMAIL FROM:<a@x.test> SIZE=99999999\r\nMAIL FROM:<a@x.test> BODY=8BITMIME SMTPUTF8 RET=FULL ENVID=x\r\n",
    "unknown_params": b"EHLO c\r\nMAIL FROM:<a@x.test> FOO=BAR\r\nRCPT TO:<box@here.test> NOTIFY=NEVER ORCPT=rfc822;x@y\r\n",
    "too_many_recipients": b"EHLO c\r\nMAIL FROM:<a@x.test>\r\n" + b"".join(b"RCPT TO:<r%d@here.test>\r\n" % i for i in range(30)) + b"DATA\r\nx\r\n.\r\n",
    "twenty_errors": b"BOGUS\r\n" * 25 + b"QUIT\r\n",
    "message_over_the_limit": HELLO + b"DATA\r\n" + (b"a" * 998 + b"\r\n") * 80 + b".\r\nQUIT\r\n",
    "data_without_end": HELLO + b"DATA\r\nSubject: never ends\r\n\r\n" + b"b" * 3000,
    "dot_stuffing": HELLO + b"DATA\r\n..\r\n...\r\n.x\r\n. \r\n.\r\n",
    "invalid_utf8": b"EHLO \xff\xfe\r\nMAIL FROM:<\xc3\x28@x.test> SMTPUTF8\r\nRCPT TO:<\xed\xa0\x80@here.test>\r\nVRFY \xf0\x28\x8c\x28\r\n",
    "utf8_addresses": "EHLO c\r\nMAIL FROM:<ü@exämple.test> SMTPUTF8\r\nRCPT TO:<box@here.test>\r\n".encode(),
    "source_route_and_quotes": b'EHLO c\r\nMAIL FROM:<@a,@b:x@y.test>\r\nRCPT TO:<"a b\\"c"@here.test>\r\nRCPT TO:<>\r\nMAIL FROM:<>\r\n',
    "lowercase_and_spaces": b"ehlo   c\r\nmail from: <a@x.test>\r\nrcpt to:<box@here.test>   \r\n  data\r\n",
    "handler_failures": b"EHLO c\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<fail@here.test>\r\nRCPT TO:<nobody@else.test>\r\nDATA\r\n",
    "empty_lines": b"\r\n\r\n\n\n\r\r\n",
    "only_garbage": bytes(range(256)) * 4,
}

def part(ctype, body, extra=b""):
    return b"Content-Type: " + ctype + b"\r\n" + extra + b"\r\n" + body

def nested(depth):
    body = b"innermost\r\n"
    for i in range(depth):
        b = b"b%d" % i
        body = (b"Content-Type: multipart/mixed; boundary=" + b + b"\r\n\r\n--" + b + b"\r\n" + body
                + b"\r\n--" + b + b"--\r\n")
    return b"From: a@x.test\r\nSubject: deep\r\nMIME-Version: 1.0\r\n" + body

def rfc822_nested(depth):
    body = b"Subject: inner\r\n\r\ninnermost\r\n"
    for i in range(depth):
        body = b"Subject: level %d\r\nContent-Type: message/rfc822\r\n\r\n" % i + body
    return body

mime = {
    "simple": b"From: Ann <ann@example.com>\r\nTo: box@mail.test\r\nSubject: Hello\r\n\r\nHi\r\n",
    "multipart_with_attachment": (
        b"From: Ann <ann@example.com>\r\nTo: box@mail.test, Bob <bob@x.test>\r\nSubject: Hello\r\n"
        b"Message-ID: <1@example.com>\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nHi there\r\n"
        b"--b\r\nContent-Type: application/pdf; name=a.pdf\r\nContent-Disposition: attachment; filename=a.pdf\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\nJVBERg==\r\n--b--\r\n"),
    "nested_multipart_200": nested(200),
    "nested_multipart_2000": nested(2000),
    "nested_rfc822_500": rfc822_nested(500),
    "unclosed_multiparts": b"Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\ntext\r\n--a\r\n",
    "empty_boundary": b"Content-Type: multipart/mixed; boundary=\"\"\r\n\r\n--\r\nx\r\n----\r\n",
    "boundary_is_prefix": b"Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\nContent-Type: multipart/mixed; boundary=aa\r\n\r\n--aa\r\nx\r\n--a--\r\n--aa--\r\n",
    "broken_base64": b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=x\r\n\r\n====ab\xff\x00c=d===\r\n!!!!\r\nQUJD\r\n",
    "broken_qp": b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=\r\n=Z=\r\n=4=\r\n=C3=\r\n=FF=FE=00 trailing=",
    "encoded_words": b"Subject: =?utf-8?B?!!!?= =?x-unknown?Q?=FF=?= =?utf-8?Q?a_b?==?utf-8?B?w6k=?=\r\nFrom: =?utf-8?B?AA==?= <a@x.test>\r\n\r\n",
    "invalid_utf8_headers": b"From: \xff\xfe <a@\xc3\x28.test>\r\nTo: \xed\xa0\x80@x.test\r\nSubject: \xf0\x28\x8c\x28\r\n\r\nbody \xff\r\n",
    "nul_headers": b"From: a\x00b <a@x.test>\r\nSubject: \x00\x00\r\nMessage-ID: <\x00@x>\r\n\r\n\x00",
    "huge_header": b"Subject: " + b"s" * 100000 + b"\r\nFrom: a@x.test\r\n\r\nbody\r\n",
    "many_headers": b"X-A: b\r\n" * 5000 + b"\r\nbody\r\n",
    "folded_forever": b"Subject: a\r\n" + b" \r\n" * 5000 + b"\r\n\r\n",
    "many_addresses": b"To: " + b", ".join(b"r%d@x.test" % i for i in range(5000)) + b"\r\n\r\n",
    "group_syntax": b"To: undisclosed:;, grp: a@x.test, \"q\\\" b\" <b@x.test>;, (comment (nested)) c@x.test\r\nFrom: <>\r\n\r\n",
    "bare_lf_message": b"From: a@x.test\nContent-Type: multipart/mixed; boundary=q\n\n--q\nContent-Type: text/html\n\n<p>x\n--q--\n",
    "charset_zoo": b"Content-Type: text/plain; charset=utf-7\r\n\r\n+AGEAYgBj-\r\n",
    "no_header_end": b"From: a@x.test\r\nSubject: x",
    "empty": b"",
    "only_crlf": b"\r\n\r\n\r\n",
    "date_garbage": b"Date: Mon, 99 Foo 99999 99:99:99 +9999\r\n\r\n",
    # Found by the stable harness: trips mail-parser 0.11's debug assertion "Invalid part
    # ID, could not find multipart." (compiled out of release builds).
    "digest_blank_rfc822_part": b"Content-Type:multipart/digest;boundary=b37\n\n--b37\n\nContent-Type:message/rfc822\n\n\n--b37--",
    "rfc2231_params": b"Content-Type: application/x; name*0*=utf-8''%FF%FE; name*1=abc; name*99=z\r\nContent-Disposition: attachment; filename*=''%\r\n\r\nx",
}

email = {
    "minimal": {"from": "a@x.test", "to": ["b@y.test"], "subject": "s", "text": "t"},
    "full": {
        "from": "Ada <a@x.test>", "to": ["b@y.test", "\"Q, R\" <q@y.test>"], "cc": ["c@y.test"],
        "bcc": ["d@y.test"], "reply_to": "r@x.test", "subject": "s", "text": "t", "html": "<p>h</p>",
        "headers": {"X-Custom": "v"}, "tags": {"k": "v"},
        "attachments": [{"filename": "a.pdf", "content_type": "application/pdf",
                          "content": base64.b64encode(b"%PDF").decode()}],
    },
    "header_injection": {"from": "a@x.test\r\nBcc: e@evil.test", "to": ["b@y.test\nBcc: e@evil.test"],
                          "subject": "s\r\nBcc: e@evil.test", "text": "t", "headers": {"X-A": "v\r\nBcc: e@evil.test"}},
    "reserved_headers": {"from": "a@x.test", "to": ["b@y.test"], "subject": "s", "text": "t",
                          "headers": {"Bcc": "x", "x-sendmux-team": "y", "": "z", "A B": "c", "a:b": "d"}},
    "too_many_recipients": {"from": "a@x.test", "to": ["r%d@y.test" % i for i in range(60)], "subject": "s", "text": "t"},
    "bad_attachments": {"from": "a@x.test", "to": ["b@y.test"], "subject": "s", "text": "t", "attachments": [
        {"filename": "../../etc/passwd", "content": "AAAA"}, {"filename": "x", "content_type": "a/b/c", "content": "!!"},
        {"filename": "x", "content": "====="}]},
    "wrong_types": {"from": 1, "to": "b@y.test", "subject": None, "text": ["t"], "tags": [1]},
    "unknown_field": {"from": "a@x.test", "to": ["b@y.test"], "subject": "s", "text": "t", "evil": True},
    "nul_and_unicode": {"from": "\u0000@x.test", "to": ["\ud7ff@y.test", "b@\u00fc.test"], "subject": "\u2028", "text": "\u0000"},
}
raw_json = {
    "deep_arrays": b"[" * 10000 + b"]" * 10000,
    "deep_objects": b'{"a":' * 5000 + b"1" + b"}" * 5000,
    "deep_in_field": b'{"from":"a@x.test","to":' + b"[" * 3000 + b"]" * 3000 + b"}",
    "trailing": b'{"from":"a@x.test","to":["b@y.test"],"subject":"s","text":"t"} {}',
    "duplicate_keys": b'{"from":"a@x.test","from":"b@x.test","to":[],"to":["b@y.test"],"subject":"s","text":"t"}',
    "lone_surrogate": b'{"from":"\\ud800@x.test","to":["b@y.test"],"subject":"\\udfff","text":"t"}',
    "invalid_utf8": b'{"from":"\xff@x.test","to":["b@y.test"],"subject":"s","text":"t"}',
    "huge_number": b'{"from":"a@x.test","to":["b@y.test"],"subject":"s","text":"t","tags":{"a":1e99999}}',
    "not_json": b"\x00\x01 not json",
    "empty": b"",
    "whitespace": b" \r\n\t ",
}

def write(target, items):
    d = os.path.join(ROOT, target)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    for name, data in sorted(items.items()):
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)

write("smtp_session", smtp)
write("inbound_mime", mime)
emails = {k: json.dumps(v).encode() for k, v in email.items()}
emails.update(raw_json)
write("send_request", emails)
