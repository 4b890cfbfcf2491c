<?php
// The PHP echo worker of benches/grpc/run (our goridge client, no framework): the same
// echo over both plugins. RR_MODE=grpc: the request message back, no headers.
// RR_MODE=http: the request body back with 200.
declare(strict_types=1);
require __DIR__ . '/../../php-client-tests/php/Http.php';

if (getenv('RR_MODE') === 'grpc') {
    $worker = RingRunnerTest\Worker::create();
    while ($payload = $worker->waitPayload()) {
        $worker->respond($payload->body, '{}');
    }
    exit(0);
}
$http = RingRunnerTest\HttpWorker::create();
while ($request = $http->waitRequest()) {
    $http->respond(200, $request->body, ['Content-Type' => 'application/octet-stream']);
}
