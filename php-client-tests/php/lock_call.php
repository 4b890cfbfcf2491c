<?php
/**
 * One lock operation from PHP: `php lock_call.php DSN OP RESOURCE [ID|-] [TTL_S] [WAIT_S]`,
 * printed as JSON `{"result": …, "started": t, "ended": t}` (wall-clock seconds around the
 * call, comparable between processes). OP: lock, lockRead, release, forceRelease, exists,
 * updateTTL (TTL_S the new ttl). An ID of `-` is none (lock: a uuid4; exists: `*`); an empty one is
 * sent empty (rr's error).
 *   contend DSN RESOURCE ID HOLD_S FILE: lock (wait 60 s), hold HOLD_S, append
 *   `ID START END` to FILE, release; prints the release's answer.
 * Errors print `ERROR: <text>` and exit 1.
 */
declare(strict_types=1);

require_once __DIR__ . '/Lock.php';

use RingRunnerTest\LockClient;
use RingRunnerTest\RpcClient;
use RingRunnerTest\RpcError;

[, $dsn, $op, $resource] = $argv;
$id = ($argv[4] ?? '-') === '-' ? null : $argv[4];
$ttl = (float) ($argv[5] ?? 0);
$wait = (float) ($argv[6] ?? 0);
$lock = new LockClient(RpcClient::connect($dsn));
try {
    $started = microtime(true);
    $result = match ($op) {
        'lock' => $lock->lock($resource, $id, $ttl, $wait),
        'lockRead' => $lock->lockRead($resource, $id, $ttl, $wait),
        'release' => $lock->release($resource, (string) $id),
        'forceRelease' => $lock->forceRelease($resource),
        'exists' => $lock->exists($resource, $id),
        'updateTTL' => $lock->updateTTL($resource, (string) $id, $ttl),
        'contend' => (function () use ($lock, $resource, $id, $argv): bool {
            if ($lock->lock($resource, $id, 0, 60) !== $id) {
                throw new RuntimeException("$id did not get the lock");
            }
            $holdStarted = microtime(true);
            usleep((int) ((float) $argv[5] * 1e6));
            $line = sprintf("%s %.6f %.6f\n", $id, $holdStarted, microtime(true));
            file_put_contents($argv[6], $line, FILE_APPEND | LOCK_EX);
            return $lock->release($resource, $id);
        })(),
    };
    echo json_encode(['result' => $result, 'started' => $started, 'ended' => microtime(true)]), "\n";
} catch (RpcError $error) {
    echo 'ERROR: ', $error->getMessage(), "\n";
    exit(1);
}
