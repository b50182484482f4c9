"""Amazon SES on loopback for the tests: moto in server mode with request
authentication turned on, so every SESv2 call must carry a valid SigV4 signature made
with the access key this script creates.

Prints one line `READY <port> <access_key_id> <secret_access_key>` and serves until
its standard input closes (the test process ending) or it is killed. Verified sender
identities are given as arguments; `--sent=PATH` keeps PATH holding the raw messages
SES was given (a JSON list of {source, destinations, raw}), rewritten as they come.
"""

import json
import os
import sys
import threading
import time
import urllib.request

import boto3
import moto_aws


def keep_sent(path: str) -> None:
    """Rewrites `path` with every raw message moto's SES holds, whenever there are more."""
    from moto.ses.models import RawMessage, ses_backends

    written = -1
    while True:
        sent = [
            {"source": m.source, "destinations": m.destinations, "raw": m.raw_data}
            for account in list(ses_backends.values())
            for backend in list(account.values())
            for m in list(backend.sent_messages)
            if isinstance(m, RawMessage)
        ]
        if len(sent) != written:
            with open(path + ".tmp", "w") as f:
                json.dump(sent, f)
            os.replace(path + ".tmp", path)
            written = len(sent)
        time.sleep(0.05)


def main() -> None:
    sent = [a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--sent=")]
    identities = [a for a in sys.argv[1:] if not a.startswith("--")]
    server, port, setup, key = moto_aws.start("ses")
    url = f"http://127.0.0.1:{port}"
    ses = boto3.client("sesv2", **setup)
    for identity in identities:
        ses.create_email_identity(EmailIdentity=identity)
    # From now on every request must be signed by a key that exists.
    urllib.request.urlopen(urllib.request.Request(
            f"{url}/moto-api/reset-auth", data=b"0", method="POST", headers={"Content-Type": "text/plain"}
        )).read()
    if sent:
        threading.Thread(target=keep_sent, args=(sent[0],), daemon=True).start()
    print(f"READY {port} {key['AccessKeyId']} {key['SecretAccessKey']}", flush=True)
    try:
        sys.stdin.read()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
