<?php
// Benchmark producer: pushes COUNT jobs of 1 KiB (the push time first) to PIPELINE in
// batches of BATCH over RPC (jobs.v1 protobuf); prints `pushed=N seconds=S`.
declare(strict_types=1);
require __DIR__ . '/../../php-client-tests/php/Jobs.php';

[, $dsn, $pipeline, $count, $batch] = $argv;
$jobs = new RingRunnerTest\JobsProducer(RingRunnerTest\RpcClient::connect($dsn));
$started = microtime(true);
for ($i = 0; $i < (int) $count; $i += (int) $batch) {
    $chunk = [];
    for ($j = $i; $j < min((int) $count, $i + (int) $batch); $j++) {
        $payload = sprintf('%.6f ', microtime(true));
        $chunk[] = RingRunnerTest\JobsProducer::job($pipeline, 'bench', "b-$j", str_pad($payload, 1024, 'x'));
    }
    $jobs->pushBatch($chunk);
}
printf("pushed=%d seconds=%.6f\n", (int) $count, microtime(true) - $started);
