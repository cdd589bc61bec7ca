# Signing SurfStore calls from Python's standard library, for a cluster
# started with --secret-file or --client-secret-file (README, "Secrets").
#
#   proxy = xmlrpc.client.ServerProxy("http://localhost:9001/RPC2",
#                                     transport=SignedTransport(secret_bytes))
#
# The secret is the file's bytes with surrounding whitespace removed.
import hashlib
import hmac
import os
import time
import xmlrpc.client


def sign(secret, body, now=None):
    """The X-SurfStore-Auth header value for one request body."""
    t = str(int(time.time() if now is None else now))
    n = os.urandom(8).hex()
    signed = b"surfstore-auth-v1\n" + t.encode() + b"\n" + n.encode() + b"\n" + body
    mac = hmac.new(secret, signed, hashlib.sha256)
    return "v1 t=" + t + " n=" + n + " mac=" + mac.hexdigest()


class SignedTransport(xmlrpc.client.Transport):
    """An xmlrpc.client transport that signs every request body."""

    def __init__(self, secret, **kwargs):
        super().__init__(**kwargs)
        self._secret = secret.strip()

    def send_content(self, connection, request_body):
        connection.putheader("X-SurfStore-Auth", sign(self._secret, request_body))
        super().send_content(connection, request_body)
