<?php
// TCP test worker: a line server. Every event is appended to $TCP_EVENTS (one JSON line:
// event, server, uuid, body) so tests can see what reached PHP.
//   CONNECTED  → WRITE "hello <uuid> <server> <remote_addr>\r\n"
//   "quit"     → WRITECLOSE "bye\r\n"         "crash"   → exit mid-connection
//   "silent"   → CONTINUE (nothing written)    "bogus"   → an unknown command (closes)
//   "close"    → CLOSE                          "error"   → an error frame
//   "big N"    → WRITE N bytes of 'z' then "\r\n"
//   other DATA → WRITE "echo:" + the message    CLOSE     → CLOSE
declare(strict_types=1);
require __DIR__ . '/../Tcp.php';

$events = getenv('TCP_EVENTS') ?: '';
$worker = RingRunnerTest\TcpWorker::create();
while ($request = $worker->waitRequest()) {
    if ($events !== '') {
        file_put_contents($events, json_encode([
            'event' => $request->event, 'server' => $request->server,
            'uuid' => $request->uuid, 'body' => $request->body,
        ]) . "\n", FILE_APPEND | LOCK_EX);
    }
    if ($request->event === 'CONNECTED') {
        $worker->respond('WRITE', "hello {$request->uuid} {$request->server} {$request->remoteAddr}\r\n");
        continue;
    }
    if ($request->event === 'CLOSE') {
        $worker->respond('CLOSE');
        continue;
    }
    $line = rtrim($request->body, "\r\n");
    match (true) {
        $line === 'quit' => $worker->respond('WRITECLOSE', "bye\r\n"),
        $line === 'crash' => exit(1),
        $line === 'silent' => $worker->respond('CONTINUE'),
        $line === 'bogus' => $worker->respond('NONSENSE', "never written\r\n"),
        $line === 'close' => $worker->respond('CLOSE'),
        $line === 'error' => $worker->error('boom'),
        str_starts_with($line, 'big ') => $worker->respond('WRITE', str_repeat('z', (int) substr($line, 4)) . "\r\n"),
        default => $worker->respond('WRITE', 'echo:' . $request->body),
    };
}
