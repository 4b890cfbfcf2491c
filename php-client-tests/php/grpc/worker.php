<?php
// gRPC test worker for php/grpc/echo.proto and second.proto (message: string text = 1):
//   Ping    → the text back                Meta   → the call's context as JSON; header x-resp-a
//   Headers → new API: x-hdr-new header, x-trl-new and x-trl-num trailers
//   Fail    → GRPCException NOT_FOUND "thing <text> not found" with an ErrorInfo detail
//   Boom    → a plain exception "plain boom: <text>"    Crash → exit(3) mid-call
//   Sleep   → sleeps <text> ms, then the text           Pid   → this worker's pid (after 20 ms)
//   Big     → <text> bytes of 'z'                       NotInPhp is not served (UNKNOWN)
//   Stream  → the text twice, as a reply with the goridge STREAM flag (rr: not supported)
//   RR_MODE and X_GRPC_ENV (grpc.env) reach the reply of Ping as headers x-rr-mode, x-grpc-env.
declare(strict_types=1);
require __DIR__ . '/Grpc.php';

use RingRunnerTest\GrpcCall;
use RingRunnerTest\GrpcException;
use RingRunnerTest\GrpcWorker;
use RingRunnerTest\Protobuf;

function text(string $message): string
{
    foreach (Protobuf::fields($message) as [$number, $value]) {
        if ($number === 1) {
            return $value;
        }
    }
    return '';
}

function msg(string $text): string
{
    return Protobuf::field(1, $text);
}

$ping = function (GrpcCall $call, string $in): string {
    $call->headers['x-rr-mode'] = (string) getenv('RR_MODE');
    $call->headers['x-grpc-env'] = (string) getenv('X_GRPC_ENV');
    return msg(text($in));
};

GrpcWorker::serve([
    'app.main.Echo' => [
        'Ping' => $ping,
        'Meta' => function (GrpcCall $call, string $in): string {
            $call->headers['x-resp-a'] = 'alpha';
            return msg(json_encode(['service' => $call->service, 'method' => $call->method, 'context' => $call->context]));
        },
        'Headers' => function (GrpcCall $call, string $in): string {
            $call->headers['headers'] = json_encode(['x-hdr-new' => 'h']);
            $call->headers['trailers'] = json_encode(['x-trl-new' => 't', 'x-trl-num' => 7]);
            return msg('with headers');
        },
        'Fail' => function (GrpcCall $call, string $in): never {
            $info = Protobuf::field(1, 'NOT_THERE') . Protobuf::field(2, 'example.test');
            $any = Protobuf::field(1, 'type.googleapis.com/google.rpc.ErrorInfo') . Protobuf::field(2, $info);
            throw new GrpcException('thing ' . text($in) . ' not found', GrpcException::NOT_FOUND, [$any]);
        },
        'Boom' => fn (GrpcCall $call, string $in): string => throw new \RuntimeException('plain boom: ' . text($in)),
        'Crash' => fn (GrpcCall $call, string $in): never => exit(3),
        'Sleep' => function (GrpcCall $call, string $in): string {
            // Metadata x-started names a file made once the call is in PHP (a client's cue).
            foreach ($call->getValue('x-started') as $started) {
                touch($started);
            }
            usleep(1000 * (int) text($in));
            return msg(text($in));
        },
        'Pid' => function (GrpcCall $call, string $in): string {
            usleep(20000); // 20 ms, so concurrent calls spread over the workers
            return msg((string) getmypid());
        },
        'Big' => fn (GrpcCall $call, string $in): string => msg(str_repeat('z', (int) text($in))),
        'Stream' => fn (GrpcCall $call, string $in): array => [msg(text($in)), msg(text($in))],
    ],
    'app.other.Alpha' => ['Ping' => fn (GrpcCall $call, string $in): string => msg('alpha:' . text($in))],
    'app.other.Beta' => ['Ping' => fn (GrpcCall $call, string $in): string => msg('beta:' . text($in))],
]);
