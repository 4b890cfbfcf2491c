<?php
// Jobs test consumer: each job it takes is appended to $JOBS_LOG as a JSON line (id, job,
// pipeline, headers, payload, at = microtime, pid); then by the job's name:
//   ack        ack                        nack        nack, dropped
//   retry      requeue with header attempt=N+1 until attempt 2, then ack
//   later      nack with requeue and 1 s delay until attempt 2 (header-less: counts by log)
//   garbage    a reply that is not the protocol's JSON
//   crash      exit mid-job
//   hold       ack once the file the payload names exists (the test's gate)
//   slow       ack after 2 ms
//   by the number of runs of this id the log shows (this one included), then ack:
//   later-once    nack with requeue and a 1 s delay on the first run
//   nack-requeue  nack with requeue (no delay) on the first run
//   crash-once    exit mid-job on the first run
declare(strict_types=1);
require __DIR__ . '/../Jobs.php';

$log = getenv('JOBS_LOG') ?: '';
$consumer = RingRunnerTest\JobsConsumer::create();
while ($job = $consumer->waitJob()) {
    if ($log !== '') {
        file_put_contents($log, json_encode([
            'id' => $job->id, 'job' => $job->name, 'pipeline' => $job->pipeline, 'headers' => $job->headers,
            'payload' => $job->payload, 'at' => microtime(true), 'pid' => getmypid(),
            'driver' => $job->driver, 'queue' => $job->queue,
        ]) . "\n", FILE_APPEND | LOCK_EX);
    }
    $attempt = (int) (($job->headers['attempt'] ?? ['1'])[0]);
    $runs = fn (): int => $log === '' ? 1
        : substr_count((string) file_get_contents($log), '"id":' . json_encode($job->id) . ',');
    match ($job->name) {
        'nack' => $job->nack('no'),
        'retry' => $attempt < 2 ? $job->requeue('again', ['attempt' => [(string) ($attempt + 1)]]) : $job->ack(),
        'later' => $job->payload === 'first' ? $job->nack('later', true, 1) : $job->ack(),
        'garbage' => $job->respondRaw('this is not json'),
        'crash' => exit(1),
        'later-once' => $runs() < 2 ? $job->nack('later', true, 1) : $job->ack(),
        'nack-requeue' => $runs() < 2 ? $job->nack('again', true) : $job->ack(),
        'crash-once' => $runs() < 2 ? exit(1) : $job->ack(),
        'slow' => (function () use ($job): void {
            usleep(2000);
            $job->ack();
        })(),
        'hold' => (function () use ($job): void {
            while (!file_exists($job->payload)) {
                usleep(5000);
            }
            $job->ack();
        })(),
        default => $job->ack(),
    };
}
