<?php
// A PSR-7 worker as spiral/roadrunner-http's PSR7Worker shapes one, on Debian's
// php-nyholm-psr7 and our goridge client (the context in rr's default JSON codec): the
// context becomes a ServerRequest, the handler returns a Response, and its status, headers
// and body go back to rr.
declare(strict_types=1);
require __DIR__ . '/../../php-client-tests/php/Http.php';
require_once __DIR__ . '/psr7-request.php';
require_once __DIR__ . '/psr7-app.php';

use Nyholm\Psr7\Factory\Psr17Factory;

$factory = new Psr17Factory();
$http = RingRunnerTest\HttpWorker::create();
while ($r = $http->waitRequest()) {
    $request = to_server_request(
        $factory, $r->remoteAddr, $r->protocol, $r->method, $r->uri, $r->headers,
        $r->cookies, $r->query(), $r->parsed, $r->body,
    );
    $response = handle($factory, $request);
    $http->respond($response->getStatusCode(), (string) $response->getBody(), $response->getHeaders());
}
