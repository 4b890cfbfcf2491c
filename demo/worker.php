<?php
// The demo app: a PHP HTTP worker on ringrunner's own goridge client.
declare(strict_types=1);
require __DIR__ . '/../php-client-tests/php/Http.php';

$http = RingRunnerTest\HttpWorker::create();
$served = 0;
while ($request = $http->waitRequest()) {
    $served++;
    $name = htmlspecialchars((string) ($request->query()['name'] ?? 'world'));
    $body = "<!DOCTYPE html>\n<title>ringrunner demo</title>\n"
        . "<h1>Hello, $name!</h1>\n"
        . "<p>{$request->method} {$request->uri} from {$request->remoteAddr}; "
        . "PHP worker " . getmypid() . " has served $served requests.</p>\n";
    $http->respond(200, $body, ['Content-Type' => 'text/html; charset=utf-8']);
}
