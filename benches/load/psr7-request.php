<?php
// The ServerRequest both PSR-7 workers build, as spiral/roadrunner-http's PSR7Worker shapes
// one: server params, protocol, headers, cookies, query, parsed body, body stream.
declare(strict_types=1);
require_once '/usr/share/php/Nyholm/Psr7/autoload.php';

use Nyholm\Psr7\Factory\Psr17Factory;
use Psr\Http\Message\ServerRequestInterface;

/**
 * @param array<string, string[]> $headers @param array<string, string> $cookies
 * @param array<string, mixed> $query
 */
function to_server_request(
    Psr17Factory $factory,
    string $remoteAddr,
    string $protocol,
    string $method,
    string $uri,
    array $headers,
    array $cookies,
    array $query,
    bool $parsed,
    string $body,
): ServerRequestInterface {
    $now = microtime(true);
    $server = [
        'REQUEST_URI' => (string) parse_url($uri, PHP_URL_PATH),
        'REMOTE_ADDR' => $remoteAddr,
        'REQUEST_METHOD' => $method,
        'SERVER_PROTOCOL' => $protocol,
        'REQUEST_TIME' => (int) $now,
        'REQUEST_TIME_FLOAT' => $now,
    ];
    foreach ($headers as $name => $values) {
        $server['HTTP_' . strtoupper(str_replace('-', '_', $name))] = implode(', ', $values);
    }
    $request = $factory->createServerRequest($method, $uri, $server)
        ->withProtocolVersion(substr($protocol, 5) ?: '1.1')
        ->withCookieParams($cookies)
        ->withQueryParams($query);
    foreach ($headers as $name => $values) {
        $request = $request->withHeader($name, $values);
    }
    if ($parsed) {
        return $request->withParsedBody($body === '' ? [] : json_decode($body, true));
    }
    return $request->withBody($factory->createStream($body));
}
