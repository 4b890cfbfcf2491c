<?php
// Benchmark consumer: acks every job and appends its push-to-ack latency (the payload
// starts with the push time, microtime) to $JOBS_LATENCY, one number per line.
declare(strict_types=1);
require __DIR__ . '/../../php-client-tests/php/Jobs.php';

$log = getenv('JOBS_LATENCY') ?: '/dev/null';
$consumer = RingRunnerTest\JobsConsumer::create();
while ($job = $consumer->waitJob()) {
    $pushed = (float) strtok($job->payload, ' ');
    $job->ack();
    file_put_contents($log, sprintf("%.6f\n", microtime(true) - $pushed), FILE_APPEND | LOCK_EX);
}
