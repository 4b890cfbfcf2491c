<?php
/**
 * The producer side from PHP (jobs.v1 protobuf), printed as JSON:
 *   php jobs_call.php DSN push PIPELINE NAME ID PAYLOAD [DELAY] [PRIORITY] [HEADERS_JSON]
 *   php jobs_call.php DSN many PIPELINE COUNT [BATCH] [NAME] [PREFIX] [DELAY] [AUTO_ACK] [PAYLOAD]
 *     (jobs NAME, default ack, ids PREFIX0 … PREFIX<N-1>, default prefix job-, by PushBatch,
 *     each delayed DELAY seconds, default 0; AUTO_ACK `auto` pushes them with auto_ack;
 *     PAYLOAD default 1 KiB of `p`)
 *   php jobs_call.php DSN big PIPELINE ID BYTES   (a job `ack` whose payload is BYTES long)
 *   php jobs_call.php DSN pause|resume|destroy NAME…    php jobs_call.php DSN list|stat
 *   php jobs_call.php DSN declare '{"name":…,"driver":"memory",…}'
 * Errors print `ERROR: <text>` and exit 1.
 */
declare(strict_types=1);

require_once __DIR__ . '/Jobs.php';

use RingRunnerTest\JobsProducer;
use RingRunnerTest\RpcClient;
use RingRunnerTest\RpcError;

$args = array_slice($argv, 1);
$dsn = array_shift($args);
$op = array_shift($args);
$jobs = new JobsProducer(RpcClient::connect($dsn));
try {
    $result = match ($op) {
        'push' => $jobs->push(JobsProducer::job($args[0], $args[1], $args[2], $args[3], (int) ($args[4] ?? 0),
            (int) ($args[5] ?? 0), json_decode($args[6] ?? '{}', true))) ?? true,
        'many' => (function () use ($jobs, $args): bool {
            [$pipeline, $count] = [$args[0], (int) $args[1]];
            $batch = (int) ($args[2] ?? 500);
            [$name, $prefix, $delay] = [$args[3] ?? 'ack', $args[4] ?? 'job-', (int) ($args[5] ?? 0)];
            $autoAck = ($args[6] ?? '') === 'auto';
            $payload = $args[7] ?? str_repeat('p', 1024);
            for ($start = 0; $start < $count; $start += $batch) {
                $chunk = [];
                for ($i = $start; $i < min($count, $start + $batch); $i++) {
                    $chunk[] = JobsProducer::job($pipeline, $name, "$prefix$i", $payload, $delay, 0, [], $autoAck);
                }
                $jobs->pushBatch($chunk);
            }
            return true;
        })(),
        'big' => $jobs->push(JobsProducer::job($args[0], 'ack', $args[1], str_repeat('b', (int) $args[2]))) ?? true,
        'pause', 'resume', 'destroy' => $jobs->pipelines(ucfirst($op), $args),
        'list' => $jobs->pipelines('List'),
        'stat' => $jobs->stat(),
        'declare' => $jobs->declare(json_decode($args[0], true)) ?? true,
    };
    echo json_encode($result), "\n";
} catch (RpcError $error) {
    echo 'ERROR: ', $error->getMessage(), "\n";
    exit(1);
}
