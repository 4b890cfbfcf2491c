<?php
/**
 * Calls one RPC method and prints the reply as JSON: `php rpc_call.php DSN METHOD [ARG-JSON]
 * [raw]`. Errors print `ERROR: <text>` and exit 1. Repeat a call with `--repeat N` (last
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
$arg = isset($args[2]) ? json_decode($args[2], true) : true;
$codec = ($args[3] ?? '') === 'raw' ? Frame::CODEC_RAW : Frame::CODEC_JSON;
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
    echo $codec === Frame::CODEC_JSON ? json_encode($reply) : $reply, "\n";
} catch (RpcError $error) {
    echo 'ERROR: ', $error->getMessage(), "\n";
    exit(1);
}
