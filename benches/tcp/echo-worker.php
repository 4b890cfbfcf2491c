<?php
// The PHP echo worker for the tcp benchmark (our goridge client): every message back as is.
declare(strict_types=1);
require __DIR__ . '/../../php-client-tests/php/Tcp.php';

$worker = RingRunnerTest\TcpWorker::create();
while ($request = $worker->waitRequest()) {
    match ($request->event) {
        'DATA' => $worker->respond('WRITE', $request->body),
        'CLOSE' => $worker->respond('CLOSE'),
        default => $worker->respond('CONTINUE'),
    };
}
