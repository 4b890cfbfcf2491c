<?php
/**
 * Calls one RPC method and prints the reply as JSON: `php rpc_call.php DSN METHOD [ARG-JSON]
 * [raw|proto]`. Errors print `ERROR: <text>` and exit 1. With `proto` ARG is the protobuf
 * message in hex and the reply prints in hex. Repeat a call with `--repeat N` (last
 * argument) to time round trips: prints `calls=N seconds=S`.
 */
declare(strict_types=1);

require_once __DIR__ . '/Rpc.php';

use RingRunnerTest\Frame;
use RingRunnerTest\RpcClient;
use RingRunnerTest\RpcError;

$args = array_slice($argv, 1);
$repeat = 0;
if (count($args) >= 2 && $args[count($args) - 2] === '--repeat') {
    $repeat = (int) array_pop($args);
    array_pop($args);
}
[$dsn, $method] = $args;
$mode = $args[3] ?? '';
$arg = isset($args[2]) ? ($mode === 'proto' ? hex2bin($args[2]) : json_decode($args[2], true)) : true;
$codec = match ($mode) {
    'raw' => Frame::CODEC_RAW,
    'proto' => Frame::CODEC_PROTO,
    default => Frame::CODEC_JSON,
};
$client = RpcClient::connect($dsn);
try {
    if ($repeat > 0) {
        $started = hrtime(true);
        for ($i = 0; $i < $repeat; $i++) {
            $client->call($method, $arg, $codec);
        }
        printf("calls=%d seconds=%.6f\n", $repeat, (hrtime(true) - $started) / 1e9);
        exit(0);
    }
    $reply = $client->call($method, $arg, $codec);
    echo match ($codec) {
        Frame::CODEC_JSON => json_encode($reply),
        Frame::CODEC_PROTO => bin2hex($reply),
        default => $reply,
    }, "\n";
} catch (RpcError $error) {
    echo 'ERROR: ', $error->getMessage(), "\n";
    exit(1);
}
