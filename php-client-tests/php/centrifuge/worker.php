<?php
// Centrifugo proxy worker for the centrifuge suite, written from spec/centrifuge.md: the
// context is the call's metadata as JSON with "type" => [<event>], the body the request
// message (centrifugal.centrifugo.proxy.<Event>Request), the answer the <Event>Response.
// Metadata x-action says what to do (default allow):
//   allow      → result; its data field holds JSON {type, user, channel, method, data,
//                x-test, rr_mode} of what arrived (ConnectResult also sets user "php-<client>")
//   refuse     → error {code 403, message "<type> refused by php"}
//   disconnect → disconnect {code 4501, reason "kicked by php"}
//   crash      → exit(3) mid-event              hang    → never answers (sleeps 60 s)
//   garbage    → a body that is not protobuf     stream  → a streamed (two-frame) reply
//   soft-error → an ERROR frame "php says no"
//   publish-rpc / disconnect-rpc / unknown-rpc → centrifuge.Publish {channel: x-channel,
//                data: {"from":"php"}} / centrifuge.Disconnect {user "bob", 4100 "bye from
//                php"} / centrifuge.NoSuch through rr's RPC (protobuf codec); the result's
//                data is JSON {ok, error, reply_b64, elapsed_ms}.
declare(strict_types=1);
require __DIR__ . '/../Goridge.php';
require __DIR__ . '/../Rpc.php';
require __DIR__ . '/../Protobuf.php';

use RingRunnerTest\Frame;
use RingRunnerTest\Protobuf;
use RingRunnerTest\RpcClient;
use RingRunnerTest\RpcError;
use RingRunnerTest\Worker;

/** The request fields the answer echoes, by event: [field number => name]. */
const REQUEST_FIELDS = [
    'connect' => [1 => 'client', 10 => 'data'],
    'refresh' => [1 => 'client', 10 => 'user'],
    'subscribe' => [1 => 'client', 10 => 'user', 11 => 'channel', 14 => 'data'],
    'publish' => [1 => 'client', 10 => 'user', 11 => 'channel', 12 => 'data'],
    'rpc' => [1 => 'client', 10 => 'user', 11 => 'method', 12 => 'data'],
    'sub_refresh' => [1 => 'client', 10 => 'user', 11 => 'channel'],
    'notifychannelstate' => [],
];

/** The number of the result's bytes field that carries the echo, by event. */
const RESULT_DATA_FIELD = [
    'connect' => 5,
    'refresh' => 3,
    'subscribe' => 4,
    'publish' => 1,
    'rpc' => 1,
    'sub_refresh' => 3,
    'notifychannelstate' => 0,
];

function request_fields(string $type, string $body): array
{
    $names = REQUEST_FIELDS[$type] ?? [];
    $out = [];
    foreach (Protobuf::fields($body) as [$number, $value]) {
        if (isset($names[$number])) {
            $out[$names[$number]] = $value;
        }
    }
    return $out;
}

function result(string $type, array $echo, array $request): string
{
    $field = RESULT_DATA_FIELD[$type] ?? 0;
    $result = $field > 0 ? Protobuf::field($field, json_encode($echo)) : '';
    if ($type === 'connect') {
        $result = Protobuf::field(1, 'php-' . ($request['client'] ?? '')) . $result;
    }
    return Protobuf::field(1, $result);
}

function call_api(string $method, string $message): array
{
    $started = microtime(true);
    $out = ['ok' => false, 'error' => '', 'reply_b64' => ''];
    try {
        $rpc = RpcClient::connect((string) getenv('RR_RPC'));
        $reply = $rpc->call($method, $message, Frame::CODEC_PROTO);
        $out['ok'] = true;
        $out['reply_b64'] = base64_encode($reply);
    } catch (RpcError $error) {
        $out['error'] = $error->getMessage();
    }
    $out['elapsed_ms'] = (int) ((microtime(true) - $started) * 1000);
    return $out;
}

$worker = Worker::create();
while (($payload = $worker->waitPayload()) !== null) {
    $context = json_decode($payload->context, true, 16, JSON_THROW_ON_ERROR);
    $type = $context['type'][0] ?? '';
    $action = $context['x-action'][0] ?? 'allow';
    $request = request_fields($type, $payload->body);
    switch ($action) {
        case 'refuse':
            $error = Protobuf::varintField(1, 403) . Protobuf::field(2, "$type refused by php");
            $worker->respond(Protobuf::field(2, $error));
            break;
        case 'disconnect':
            $disconnect = Protobuf::varintField(1, 4501) . Protobuf::field(2, 'kicked by php');
            $worker->respond(Protobuf::field(3, $disconnect));
            break;
        case 'crash':
            exit(3);
        case 'hang':
            sleep(60);
            $worker->respond('');
            break;
        case 'garbage':
            $worker->respond('{"user":"not protobuf"}');
            break;
        case 'stream':
            $worker->respondChunk(result($type, ['part' => 1], $request), true);
            $worker->respondChunk(result($type, ['part' => 2], $request), false);
            break;
        case 'soft-error':
            $worker->error('php says no');
            break;
        case 'publish-rpc':
            $publish = Protobuf::field(1, $context['x-channel'][0] ?? 'news')
                . Protobuf::field(2, '{"from":"php"}');
            $worker->respond(result($type, call_api('centrifuge.Publish', $publish), $request));
            break;
        case 'disconnect-rpc':
            $disconnect = Protobuf::field(1, 'bob')
                . Protobuf::field(2, Protobuf::varintField(1, 4100) . Protobuf::field(2, 'bye from php'));
            $worker->respond(result($type, call_api('centrifuge.Disconnect', $disconnect), $request));
            break;
        case 'unknown-rpc':
            $worker->respond(result($type, call_api('centrifuge.NoSuch', ''), $request));
            break;
        default:
            $echo = $request + [
                'type' => $type,
                'x-test' => $context['x-test-header'][0] ?? null,
                'rr_mode' => getenv('RR_MODE'),
            ];
            $worker->respond(result($type, $echo, $request));
    }
}
