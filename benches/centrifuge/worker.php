<?php
// The PHP worker of benches/centrifuge/run (our goridge client, no framework), one script for
// both pools. RR_MODE=centrifuge: every proxy event is allowed as user "bench"
// (ConnectResponse{result{user}}, hand-encoded). RR_MODE=http: "hello" with 200.
declare(strict_types=1);
require __DIR__ . '/../../php-client-tests/php/Http.php';

if (getenv('RR_MODE') === 'centrifuge') {
    $worker = RingRunnerTest\Worker::create();
    $allowed = "\x0a\x07\x0a\x05bench";
    while ($worker->waitPayload()) {
        $worker->respond($allowed);
    }
    exit(0);
}
$http = RingRunnerTest\HttpWorker::create();
while ($http->waitRequest()) {
    $http->respond(200, 'hello', ['Content-Type' => 'text/plain']);
}
