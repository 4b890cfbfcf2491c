<?php
// Echoes every request: same context, same body, same codec bits.
declare(strict_types=1);
require __DIR__ . '/../Goridge.php';

$worker = RingRunnerTest\Worker::create();
while ($payload = $worker->waitPayload()) {
    $worker->respond($payload->body, $payload->context, $payload->codec);
}
