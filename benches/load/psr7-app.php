<?php
// The PSR-7 app both PSR-7 benchmark entries run (psr7-worker.php under ringrunner,
// psr7-fpm.php under php-fpm): one handler, so the two measure the same work.
declare(strict_types=1);
require_once '/usr/share/php/Nyholm/Psr7/autoload.php';

use Nyholm\Psr7\Factory\Psr17Factory;
use Psr\Http\Message\ResponseInterface;
use Psr\Http\Message\ServerRequestInterface;

function handle(Psr17Factory $factory, ServerRequestInterface $request): ResponseInterface
{
    $name = $request->getQueryParams()['name'] ?? 'world';
    return $factory->createResponse(200)
        ->withHeader('Content-Type', 'text/plain')
        ->withBody($factory->createStream("Hello, $name!\n"));
}
