"""S3 on loopback for the tests: moto in server mode with a bucket for message bodies
and an IAM user's access key to sign with.

Unlike the SES server, request authentication stays off: moto's S3 signature check
rejects the signed list requests of the `object_store` crate (whose signing is tested
against AWS by its own suite), so the key is used but not verified.

Prints one line `READY <port> <access_key_id> <secret_access_key> <bucket>` and serves
until its standard input closes (the test process ending) or it is killed.
"""

import sys

import boto3
import moto_aws

BUCKET = "sendmux-bodies"


def main() -> None:
    server, port, setup, key = moto_aws.start("s3")
    boto3.client("s3", **setup).create_bucket(Bucket=BUCKET)
    print(f"READY {port} {key['AccessKeyId']} {key['SecretAccessKey']} {BUCKET}", flush=True)
    try:
        sys.stdin.read()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
