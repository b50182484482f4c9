"""Amazon SES on loopback for the tests: moto in server mode with request
authentication turned on, so every SESv2 call must carry a valid SigV4 signature made
with the access key this script creates.

Prints one line `READY <port> <access_key_id> <secret_access_key>` and serves until
its standard input closes (the test process ending) or it is killed. Verified sender
identities are given as arguments.
"""

import socket
import sys
import urllib.request

import boto3
from moto.server import ThreadedMotoServer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    setup = dict(endpoint_url=url, region_name="us-east-1", aws_access_key_id="setup", aws_secret_access_key="setup")
    iam = boto3.client("iam", **setup)
    iam.create_user(UserName="sendmux")
    key = iam.create_access_key(UserName="sendmux")["AccessKey"]
    iam.put_user_policy(
        UserName="sendmux",
        PolicyName="ses",
        PolicyDocument='{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ses:*","Resource":"*"}]}',
    )
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
