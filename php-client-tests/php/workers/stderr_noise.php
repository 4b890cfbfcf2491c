<?php
// Writes to stderr at boot and on every request, then echoes.
declare(strict_types=1);
require __DIR__ . '/../Goridge.php';

fwrite(STDERR, "booting noisily\n");
$worker = RingRunnerTest\Worker::create();
while ($payload = $worker->waitPayload()) {
    fwrite(STDERR, "handling " . strlen($payload->body) . " bytes\n");
    $worker->respond($payload->body, $payload->context);
}
