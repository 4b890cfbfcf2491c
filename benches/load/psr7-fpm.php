<?php
// The PSR-7 app of psr7-worker.php under php-fpm: the same nyholm ServerRequest built from
// PHP's globals (server params, protocol, headers, cookies, query, parsed body, body
// stream), the same handler, the Response emitted with header() and echo.
declare(strict_types=1);
require '/usr/share/php/Nyholm/Psr7/autoload.php';
require_once __DIR__ . '/psr7-app.php';

use Nyholm\Psr7\Factory\Psr17Factory;
use Psr\Http\Message\ServerRequestInterface;

function from_globals(Psr17Factory $factory): ServerRequestInterface
{
    $uri = 'http://' . ($_SERVER['HTTP_HOST'] ?? 'localhost') . ($_SERVER['REQUEST_URI'] ?? '/');
    $method = $_SERVER['REQUEST_METHOD'] ?? 'GET';
    $request = $factory->createServerRequest($method, $uri, $_SERVER)
        ->withProtocolVersion(substr($_SERVER['SERVER_PROTOCOL'] ?? 'HTTP/1.1', 5) ?: '1.1')
        ->withCookieParams($_COOKIE)
        ->withQueryParams($_GET);
    foreach (getallheaders() as $name => $value) {
        $request = $request->withHeader($name, $value);
    }
    if ($_POST !== []) {
        return $request->withParsedBody($_POST);
    }
    return $request->withBody($factory->createStream((string) file_get_contents('php://input')));
}

$factory = new Psr17Factory();
$response = handle($factory, from_globals($factory));
http_response_code($response->getStatusCode());
foreach ($response->getHeaders() as $name => $values) {
    foreach ($values as $value) {
        header("$name: $value", false);
    }
}
echo $response->getBody();
