<?php
// Jobs test consumer: each job it takes is appended to $JOBS_LOG as a JSON line (id, job,
// pipeline, headers, payload, at = microtime, pid); then by the job's name:
//   ack        ack                        nack        nack, dropped
//   retry      requeue with header attempt=N+1 until attempt 2, then ack
//   later      nack with requeue and 1 s delay until attempt 2 (header-less: counts by log)
//   garbage    a reply that is not the protocol's JSON
//   crash      exit mid-job
//   hold       ack once the file the payload names exists (the test's gate)
declare(strict_types=1);
require __DIR__ . '/../Jobs.php';

$log = getenv('JOBS_LOG') ?: '';
$consumer = RingRunnerTest\JobsConsumer::create();
while ($job = $consumer->waitJob()) {
    if ($log !== '') {
        file_put_contents($log, json_encode([
            'id' => $job->id, 'job' => $job->name, 'pipeline' => $job->pipeline, 'headers' => $job->headers,
            'payload' => $job->payload, 'at' => microtime(true), 'pid' => getmypid(),
        ]) . "\n", FILE_APPEND | LOCK_EX);
    }
    $attempt = (int) (($job->headers['attempt'] ?? ['1'])[0]);
    match ($job->name) {
        'nack' => $job->nack('no'),
        'retry' => $attempt < 2 ? $job->requeue('again', ['attempt' => [(string) ($attempt + 1)]]) : $job->ack(),
        'later' => $job->payload === 'first' ? $job->nack('later', true, 1) : $job->ack(),
        'garbage' => $job->respondRaw('this is not json'),
        'crash' => exit(1),
        'hold' => (function () use ($job): void {
            while (!file_exists($job->payload)) {
                usleep(5000);
            }
            $job->ack();
        })(),
        default => $job->ack(),
    };
}
