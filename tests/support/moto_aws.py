"""What the moto-backed test servers share: moto in server mode on a free loopback
port, and an IAM user `sendmux` allowed one service, whose access key signs requests."""

import socket

import boto3
from moto.server import ThreadedMotoServer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(service: str):
    """Starts moto; returns (server, port, setup client kwargs, the user's access key)."""
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
        PolicyName=service,
        PolicyDocument='{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"%s:*","Resource":"*"}]}'
        % service,
    )
    return server, port, setup, key
