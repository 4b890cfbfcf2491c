<?php
// The PSR-7 worker with the protobuf request context decoded the way RoadRunner's PHP
// package does without the C extension: Debian's pure-PHP google/protobuf library and the
// classes protoc generates from http.proto (into the folder PROTO_CLASSES names; the load
// benchmark generates them). Frames travel through our goridge client.
declare(strict_types=1);
require __DIR__ . '/../../php-client-tests/php/Goridge.php';
require_once __DIR__ . '/psr7-request.php';
require_once __DIR__ . '/psr7-app.php';

$generated = (string) getenv('PROTO_CLASSES');
spl_autoload_register(function (string $class) use ($generated): void {
    $path = str_replace('\\', '/', $class) . '.php';
    foreach (['/usr/share/php/', $generated . '/'] as $root) {
        if (is_file($root . $path)) {
            require $root . $path;
            return;
        }
    }
});

use Http\V1\HeaderValue;
use Http\V1\Request;
use Http\V1\Response;
use Nyholm\Psr7\Factory\Psr17Factory;
use RingRunnerTest\Frame;

/** @return array<string, string[]> */
function header_map(\Google\Protobuf\Internal\MapField $map): array
{
    $out = [];
    foreach ($map as $name => $value) {
        $out[$name] = iterator_to_array($value->getValue());
    }
    return $out;
}

$factory = new Psr17Factory();
$worker = RingRunnerTest\Worker::create();
while ($payload = $worker->waitPayload()) {
    $context = new Request();
    $context->mergeFromString($payload->context);
    parse_str($context->getRawQuery(), $query);
    $cookies = array_map(fn (array $values) => $values[0] ?? '', header_map($context->getCookies()));
    $request = to_server_request(
        $factory, $context->getRemoteAddr(), $context->getProtocol(), $context->getMethod(),
        $context->getUri(), header_map($context->getHeader()), $cookies, $query,
        $context->getParsed(), $payload->body,
    );
    $response = handle($factory, $request);
    $reply = new Response();
    $reply->setStatus($response->getStatusCode());
    $headers = [];
    foreach ($response->getHeaders() as $name => $values) {
        $headers[$name] = (new HeaderValue())->setValue($values);
    }
    $reply->setHeaders($headers);
    $worker->respond((string) $response->getBody(), $reply->serializeToString(), Frame::CODEC_PROTO);
}
