"""S3 on loopback for the tests: moto in server mode with a bucket for message bodies
and an IAM user's access key to sign with.

Unlike the SES server, request authentication stays off: moto's S3 signature check
rejects the signed list requests of the `object_store` crate (whose signing is tested
against AWS by its own suite), so the key is used but not verified.

Prints one line `READY <port> <access_key_id> <secret_access_key> <bucket>` and serves
until its standard input closes (the test process ending) or it is killed.
"""

import socket
import sys

import boto3
from moto.server import ThreadedMotoServer

BUCKET = "sendmux-bodies"


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
        PolicyName="s3",
        PolicyDocument='{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}',
    )
    boto3.client("s3", **setup).create_bucket(Bucket=BUCKET)
    print(f"READY {port} {key['AccessKeyId']} {key['SecretAccessKey']} {BUCKET}", flush=True)
    try:
        sys.stdin.read()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
