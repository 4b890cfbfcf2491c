<?php
/**
 * One kv operation from PHP, printed as JSON: `php kv_call.php DSN STORAGE OP [ARG-JSON] [TTL]`.
 *   set {"k": value, …} [ttl]   get ["k", …]   has "k"   ttl ["k", …]   delete ["k", …]   clear
 *   call METHOD [[key, value, timeout], …]   (raw items, for the calls the package never makes)
 *   bench N   N set + get round trips of a 1 KiB value: prints `calls=2N seconds=S`
 *   sized KEY BYTES   sets KEY to a string of BYTES bytes
 * Errors print `ERROR: <text>` and exit 1.
 */
declare(strict_types=1);

require_once __DIR__ . '/Kv.php';

use RingRunnerTest\KvStorage;
use RingRunnerTest\RpcClient;
use RingRunnerTest\RpcError;

[, $dsn, $storage, $op] = $argv;
$arg = isset($argv[4]) ? json_decode($argv[4], true) : null;
$kv = new KvStorage(RpcClient::connect($dsn), $storage);
try {
    $result = match ($op) {
        'set' => $kv->setMultiple($arg, isset($argv[5]) ? (int) $argv[5] : null) ?? true,
        'get' => $kv->getMultiple($arg),
        'has' => $kv->has($arg),
        'ttl' => $kv->getMultipleTtl($arg),
        'delete' => $kv->deleteMultiple($arg) ?? true,
        'clear' => $kv->clear() ?? true,
        'call' => $kv->call($argv[4], json_decode($argv[5], true)),
        'sized' => $kv->call('Set', [[$arg, str_repeat('x', (int) $argv[5]), '']]) === [] ? true : false,
        'bench' => (function () use ($kv, $arg): string {
            $value = str_repeat('v', 1024);
            $started = hrtime(true);
            for ($i = 0; $i < $arg; $i++) {
                $kv->setMultiple(["bench$i" => $value]);
                if ($kv->getMultiple(["bench$i"]) !== ["bench$i" => $value]) {
                    throw new RuntimeException("bench$i read back wrong");
                }
            }
            return sprintf('calls=%d seconds=%.6f', 2 * $arg, (hrtime(true) - $started) / 1e9);
        })(),
    };
    echo json_encode($result), "\n";
} catch (RpcError $error) {
    echo 'ERROR: ', $error->getMessage(), "\n";
    exit(1);
}
