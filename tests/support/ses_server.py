"""Amazon SES on loopback for the tests: moto in server mode with request
authentication turned on, so every SESv2 call must carry a valid SigV4 signature made
with the access key this script creates.

Prints one line `READY <port> <access_key_id> <secret_access_key>` and serves until
its standard input closes (the test process ending) or it is killed. Verified sender
identities are given as arguments.
"""

import sys
import urllib.request

import boto3
import moto_aws


def main() -> None:
    server, port, setup, key = moto_aws.start("ses")
    url = f"http://127.0.0.1:{port}"
    ses = boto3.client("sesv2", **setup)
    for identity in sys.argv[1:]:
        ses.create_email_identity(EmailIdentity=identity)
    # From now on every request must be signed by a key that exists.
    urllib.request.urlopen(urllib.request.Request(
            f"{url}/moto-api/reset-auth", data=b"0", method="POST", headers={"Content-Type": "text/plain"}
        )).read()
    print(f"READY {port} {key['AccessKeyId']} {key['SecretAccessKey']}", flush=True)
    try:
        sys.stdin.read()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
