"""A stand-in for Centrifugo's gRPC server API (service centrifugal.centrifugo.api.CentrifugoApi)
for ringrunner's centrifuge tests, on grpcio (the real server library).

Usage: centrifugo_api.py MODE [CA CERT KEY], MODE one of
  ok    every method answers <Method>Response{result: {field 1: 7}} (a PublishResult's
        offset 7; for the other methods an unknown field, which protobuf decoders skip)
  hang  no method ever answers (the call stays open until the client gives up)

With CA, CERT and KEY (PEM files) it serves TLS with CERT and KEY and requires a client
certificate that CA signed.

Prints "listening PORT" once serving on 127.0.0.1, then one JSON line per call as it
arrives: {"method": name, "request_b64": the request message, "encoding": grpc-encoding}.
Request messages are taken as bytes (identity deserializers): no generated code is needed.
"""

import base64
import json
import sys
import threading
from concurrent import futures

import grpc

SERVICE = "centrifugal.centrifugo.api.CentrifugoApi"
OK_ANSWER = b"\x12\x02\x08\x07"  # field 2 (result) {field 1 (offset): 7}
HANG_SECONDS_MAX = 120


class Api(grpc.GenericRpcHandler):
    def __init__(self, mode):
        self.mode = mode
        self.lock = threading.Lock()

    def service(self, details):
        service, _, method = details.method.lstrip("/").partition("/")
        if service != SERVICE:
            return None

        def handle(request, context):
            metadata = dict(context.invocation_metadata())
            with self.lock:
                print(
                    json.dumps(
                        {
                            "method": method,
                            "request_b64": base64.b64encode(request).decode(),
                            "encoding": metadata.get("grpc-encoding", ""),
                        }
                    ),
                    flush=True,
                )
            if self.mode == "hang":
                done = threading.Event()
                context.add_callback(done.set)
                done.wait(HANG_SECONDS_MAX)
            return OK_ANSWER

        return grpc.unary_unary_rpc_method_handler(handle)


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else "ok"
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    server.add_generic_rpc_handlers((Api(mode),))
    if len(sys.argv) > 4:
        ca, cert, key = (open(path, "rb").read() for path in sys.argv[2:5])
        credentials = grpc.ssl_server_credentials(
            [(key, cert)], root_certificates=ca, require_client_auth=True
        )
        port = server.add_secure_port("127.0.0.1:0", credentials)
    else:
        port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"listening {port}", flush=True)
    # Serves until killed.
    server.wait_for_termination()


if __name__ == "__main__":
    main()
