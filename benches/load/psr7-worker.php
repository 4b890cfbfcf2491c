<?php
// A PSR-7 worker as spiral/roadrunner-http's PSR7Worker shapes one, on Debian's
// php-nyholm-psr7 and our goridge client: the protobuf context becomes a ServerRequest
// (server params, protocol, headers, cookies, query, parsed body, body stream), the
// handler returns a Response, and its status, headers and body go back to rr.
declare(strict_types=1);
require __DIR__ . '/../../php-client-tests/php/Http.php';
require '/usr/share/php/Nyholm/Psr7/autoload.php';
require_once __DIR__ . '/psr7-app.php';

use Nyholm\Psr7\Factory\Psr17Factory;
use Psr\Http\Message\ServerRequestInterface;
use RingRunnerTest\HttpRequest;

function to_server_request(Psr17Factory $factory, HttpRequest $r): ServerRequestInterface
{
    $now = microtime(true);
    $server = [
        'REQUEST_URI' => (string) parse_url($r->uri, PHP_URL_PATH),
        'REMOTE_ADDR' => $r->remoteAddr,
        'REQUEST_METHOD' => $r->method,
        'SERVER_PROTOCOL' => $r->protocol,
        'REQUEST_TIME' => (int) $now,
        'REQUEST_TIME_FLOAT' => $now,
    ];
    foreach ($r->headers as $name => $values) {
        $server['HTTP_' . strtoupper(str_replace('-', '_', $name))] = implode(', ', $values);
    }
    $request = $factory->createServerRequest($r->method, $r->uri, $server)
        ->withProtocolVersion(substr($r->protocol, 5) ?: '1.1')
        ->withCookieParams($r->cookies)
        ->withQueryParams($r->query());
    foreach ($r->headers as $name => $values) {
        $request = $request->withHeader($name, $values);
    }
    if ($r->parsed) {
        return $request->withParsedBody($r->body === '' ? [] : json_decode($r->body, true));
    }
    return $request->withBody($factory->createStream($r->body));
}

$factory = new Psr17Factory();
$http = RingRunnerTest\HttpWorker::create();
while ($raw = $http->waitRequest()) {
    $response = handle($factory, to_server_request($factory, $raw));
    $http->respond($response->getStatusCode(), (string) $response->getBody(), $response->getHeaders());
}
