"""A gRPC client for ringrunner's tests, on grpcio (the real client library).

Reads a JSON plan from stdin and prints one JSON result per line, flushed as each
finishes. Messages are hand-encoded protobuf with one `string text = 1` field (identity
serializers), so no generated code is needed.

Plan: {"target": "127.0.0.1:PORT", "tls": {"ca": PEM path, "cert": ..., "key": ...}?,
       "compression": "gzip" (every request message gzip-compressed)?,
       "authority": ":authority to send instead of the target's"?,
       "calls": [call, ...]}
call: {"method": "/app.main.Echo/Ping", "text": "hi" | "raw_b64": "...",
       "metadata": [[k, v], ...], "timeout": seconds, "repeat": N (concurrent copies),
       "cancel_when_started": a file path (sent as metadata x-started; the worker makes the
       file when the call reaches it, and the client then cancels: RST_STREAM CANCEL),
       "kind": "unary" (default) | "watch" (server stream: reads "count" messages, printing
       {"watched": status} as each arrives) | "stream" (bidirectional: sends one message
       per [field number, text] of "requests" (a string field each), returns
       {"responses": [each response's bytes as latin-1 text]})}
Result: {"code": "OK", "details": str, "text": str, "raw_b64": str, "initial": [[k, v]],
         "trailing": [[k, v]]}, or for repeat: {"codes": {code: n}, "texts": [...]}.
"""

import base64
import json
import os
import sys
import time

import grpc


def varint(n):
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def encode_text(text):
    data = text.encode()
    return b"\x0a" + varint(len(data)) + data


def decode_text(message):
    """The first length-delimited field 1 of a message, or its varint field 1 as text."""
    at = 0
    while at < len(message):
        key, at = read_varint(message, at)
        if key & 7 == 2:
            size, at = read_varint(message, at)
            if key >> 3 == 1:
                return message[at:at + size].decode(errors="replace")
            at += size
        elif key & 7 == 0:
            value, at = read_varint(message, at)
            if key >> 3 == 1:
                return str(value)
        else:
            return ""
    return ""


def read_varint(data, at):
    value, shift = 0, 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, at


def pairs(metadata):
    out = []
    for key, value in metadata or ():
        if isinstance(value, bytes):
            value = value.decode(errors="replace")
        out.append([key, value])
    return out


def request_bytes(call):
    if "raw_b64" in call:
        return base64.b64decode(call["raw_b64"])
    return encode_text(call.get("text", ""))


def outcome_of(error_or_response, call_obj):
    if isinstance(error_or_response, grpc.RpcError):
        error = error_or_response
        return {
            "code": error.code().name,
            "details": error.details() or "",
            "initial": pairs(error.initial_metadata()),
            "trailing": pairs(error.trailing_metadata()),
        }
    response = error_or_response
    return {
        "code": "OK",
        "details": "",
        "text": decode_text(response),
        "raw_b64": base64.b64encode(response).decode(),
        "initial": pairs(call_obj.initial_metadata()),
        "trailing": pairs(call_obj.trailing_metadata()),
    }


def unary(channel, call):
    stub = channel.unary_unary(call["method"])
    metadata = [
        (key, value.encode() if key.endswith("-bin") else value)
        for key, value in call.get("metadata", [])
    ]
    timeout = call.get("timeout")
    repeat = call.get("repeat")
    if "cancel_when_started" in call:
        # Cancels once the worker has the call: it makes this file (metadata x-started).
        started = call["cancel_when_started"]
        metadata.append(("x-started", started))
        future = stub.future(request_bytes(call), metadata=metadata, timeout=timeout)
        deadline = time.monotonic() + 20
        while not os.path.exists(started) and time.monotonic() < deadline and not future.done():
            time.sleep(0.01)  # a file has no event to wait on: look every 10 ms
        future.cancel()
        return {"code": "CANCELLED" if future.cancelled() else "NOT_CANCELLED"}
    if repeat:
        futures = [
            stub.future(request_bytes(call), metadata=metadata, timeout=timeout)
            for _ in range(repeat)
        ]
        codes, texts = {}, []
        for future in futures:
            try:
                texts.append(decode_text(future.result()))
                codes["OK"] = codes.get("OK", 0) + 1
            except grpc.RpcError as error:
                codes[error.code().name] = codes.get(error.code().name, 0) + 1
                texts.append(error.details())
        return {"codes": codes, "texts": texts}
    try:
        response, call_obj = stub.with_call(
            request_bytes(call), metadata=metadata, timeout=timeout
        )
        return outcome_of(response, call_obj)
    except grpc.RpcError as error:
        return outcome_of(error, None)


def watch(channel, call):
    stub = channel.unary_stream(call["method"])
    stream = stub(request_bytes(call), timeout=call.get("timeout"))
    statuses = []
    try:
        for message in stream:
            statuses.append(decode_text(message))
            print(json.dumps({"watched": statuses[-1]}), flush=True)
            if len(statuses) >= call.get("count", 1):
                stream.cancel()
                break
    except grpc.RpcError as error:
        if error.code() != grpc.StatusCode.CANCELLED:
            return {"code": error.code().name, "statuses": statuses}
    return {"code": "OK", "statuses": statuses}


def stream(channel, call):
    """A bidirectional call: every request sent, every response read."""
    stub = channel.stream_stream(call["method"])
    requests = []
    for number, text in call["requests"]:
        data = text.encode()
        requests.append(varint(number << 3 | 2) + varint(len(data)) + data)
    try:
        responses = list(stub(iter(requests), timeout=call.get("timeout")))
    except grpc.RpcError as error:
        return {"code": error.code().name, "details": error.details() or ""}
    return {"code": "OK", "responses": [r.decode("latin-1") for r in responses]}


def channel_for(plan):
    options = [
        ("grpc.max_receive_message_length", 64 << 20),
        ("grpc.max_send_message_length", 64 << 20),
        ("grpc.enable_retries", 0),
    ]
    if plan.get("authority"):
        options.append(("grpc.default_authority", plan["authority"]))
    tls = plan.get("tls")
    if not tls:
        compression = grpc.Compression.Gzip if plan.get("compression") == "gzip" else None
        return grpc.insecure_channel(plan["target"], options=options, compression=compression)

    def read(name):
        return open(tls[name], "rb").read() if tls.get(name) else None

    credentials = grpc.ssl_channel_credentials(
        root_certificates=read("ca"), private_key=read("key"), certificate_chain=read("cert")
    )
    return grpc.secure_channel(plan["target"], credentials, options=options)


def main():
    plan = json.load(sys.stdin)
    with channel_for(plan) as channel:
        for call in plan["calls"]:
            run = {"watch": watch, "stream": stream}.get(call.get("kind"), unary)
            print(json.dumps(run(channel, call)), flush=True)


if __name__ == "__main__":
    main()
