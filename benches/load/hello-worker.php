<?php
// The plain PHP hello worker for ringrunner (our goridge client, no framework).
declare(strict_types=1);
require __DIR__ . '/../../php-client-tests/php/Http.php';

$http = RingRunnerTest\HttpWorker::create();
while ($http->waitRequest()) {
    $http->respond(200, "Hello, world!\n", ['Content-Type' => 'text/plain']);
}
