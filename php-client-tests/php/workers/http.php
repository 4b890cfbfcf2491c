<?php
// HTTP test worker: routes by path.
//   /hello            200 "Hello from PHP"        /echo      the request as JSON
//   /status/N         status N, empty body         /cookies   two Set-Cookie lines
//   /error            error frame                  /crash     exit mid-request
//   /slow?ms=N        sleep, then the pid           /stream?n=N  N chunks, 103 first if hints=1
//   /big?kb=N         N KiB of 'x'                  /pid       this worker's pid
//   /badstatus        status 999                    /garbage   an undecodable context
//   /upload           the form fields and each uploaded file as the worker finds it on disk
//   /len              the body's length and crc32, as "LEN CRC"
//   /env?name=X       the worker's environment variable X
//   /hex?name=X       the first value of request header X, hex-encoded (bytes as received)
//   /rpc              informer.Workers("http") asked of the server over RR_RPC
//   /bigstream?n=N&kb=K  N frames of K KiB of 'z' (stops when the server says so)
//   /trailers         "hello" with X-Checksum named by a Trailer header (spec http §3.1d);
//                     ?stream=1: in two frames; a trailer with CR/LF in its value beside it
declare(strict_types=1);
require __DIR__ . '/../Http.php';
require __DIR__ . '/../Rpc.php';

use RingRunnerTest\HttpWorker;
use RingRunnerTest\Frame;

$http = HttpWorker::create();
while ($request = $http->waitRequest()) {
    $path = $request->path();
    $query = $request->query();
    switch (true) {
        case $path === '/hello':
            $http->respond(200, "Hello from PHP\n", ['Content-Type' => 'text/plain']);
            break;
        case $path === '/echo':
            $http->respond(200, json_encode([
                'remote_addr' => $request->remoteAddr, 'protocol' => $request->protocol,
                'method' => $request->method, 'uri' => $request->uri,
                'headers' => $request->headers, 'cookies' => $request->cookies,
                'raw_query' => $request->rawQuery, 'parsed' => $request->parsed,
                'body' => $request->body, 'uploads' => $request->uploads,
                'codec' => $http->contextCodec(),
            ], JSON_INVALID_UTF8_SUBSTITUTE), ['Content-Type' => 'application/json']);
            break;
        case str_starts_with($path, '/status/'):
            $http->respond((int) substr($path, 8), '', ['X-Status' => 'set']);
            break;
        case $path === '/cookies':
            $http->respond(200, 'ok', ['Set-Cookie' => ['a=1; Path=/', 'b=2; HttpOnly']]);
            break;
        case $path === '/error':
            $http->error('Uncaught TypeError <b>x</b>');
            break;
        case $path === '/crash':
            exit(1);
        case $path === '/slow':
            usleep(((int) ($query['ms'] ?? 100)) * 1000);
            $http->respond(200, (string) getmypid());
            break;
        case $path === '/stream':
            $n = (int) ($query['n'] ?? 3);
            if (($query['hints'] ?? '') === '1') {
                $http->respondChunk('', true, 103, ['Link' => '</app.css>; rel=preload']);
                $http->respondChunk('<html>', true, 200, ['Content-Type' => 'text/html']);
            }
            try {
                for ($i = 0; $i < $n; $i++) {
                    $status = ($i === 0 && ($query['hints'] ?? '') !== '1') ? 200 : null;
                    $http->respondChunk("chunk $i\n", $i < $n - 1, $status);
                    if (isset($query['ms']) && $i < $n - 1) {
                        usleep((int) $query['ms'] * 1000);
                    }
                }
            } catch (RingRunnerTest\StreamStopped) {
                $http->respondChunk('', false);
            }
            break;
        case $path === '/big':
            $http->respond(200, str_repeat('x', 1024 * (int) ($query['kb'] ?? 1)));
            break;
        case $path === '/upload':
            $files = $request->uploads === '' ? null : json_decode($request->uploads, true);
            $http->respond(200, json_encode([
                'parsed' => $request->parsed,
                'fields' => $request->body === '' ? null : json_decode($request->body, true),
                'files' => $files === null ? null : inspect_uploads($files),
            ]), ['Content-Type' => 'application/json']);
            break;
        case $path === '/len':
            $http->respond(200, strlen($request->body) . ' ' . hash('crc32b', $request->body));
            break;
        case $path === '/hex':
            $http->respond(200, bin2hex(($request->headers[(string) ($query['name'] ?? '')] ?? [''])[0]));
            break;
        case $path === '/env':
            $http->respond(200, (string) getenv((string) ($query['name'] ?? '')));
            break;
        case $path === '/rpc':
            // An app calling the server back over RR_RPC, as Octane and the jobs/kv SDKs do.
            $rpc = \RingRunnerTest\RpcClient::connect((string) getenv('RR_RPC'));
            $reply = $rpc->call('informer.Workers', 'http');
            $http->respond(200, json_encode($reply), ['Content-Type' => 'application/json']);
            break;
        case $path === '/pid':
            $http->respond(200, (string) getmypid());
            break;
        case $path === '/garbage':
            $http->respondRaw("\xff\xff\xff", 'body');
            break;
        case $path === '/sendfile':
            // The file to send in X-Sendfile (the sendfile middleware replaces this answer).
            $http->respond(201, 'the worker body', [
                'X-Sendfile' => [$query['path'] ?? ''], 'Content-Type' => ['text/html'],
                'X-Extra' => ['kept'],
            ]);
            break;
        case $path === '/badheaders':
            // Names that are not tokens and values with line breaks or NUL, beside good ones.
            $http->respond(200, 'ok', [
                "X-A\r\nX-Injected" => ['1'], 'X-Good' => ['kept'], 'Bad Name' => ['x'],
                'X-Split' => ["a\r\nX-Injected: 2"], 'X-Nul' => ["a\0b"], 'X-Many' => ['one', "t\nwo"],
                '' => ['empty'],
            ]);
            break;
        case $path === '/bigstream':
            $n = (int) ($query['n'] ?? 4);
            $piece = str_repeat('z', 1024 * (int) ($query['kb'] ?? 1024));
            try {
                for ($i = 0; $i < $n; $i++) {
                    $http->respondChunk($piece, $i < $n - 1, $i === 0 ? 200 : null);
                }
            } catch (RingRunnerTest\StreamStopped) {
                $http->respondChunk('', false);
            }
            break;
        case $path === '/trailers':
            // X-Absent is named but not set; X-Split's value would split the trailer section.
            $headers = [
                'Trailer' => ['X-Checksum, X-Absent', 'X-Split'], 'X-Checksum' => ['sum-1'],
                'X-Split' => ["a\r\nX-Injected: 2"], 'X-Kept' => ['head'],
                'Content-Type' => ['text/plain'],
            ];
            if (($query['stream'] ?? '') === '1') {
                $http->respondChunk('hel', true, 200, $headers);
                $http->respondChunk('lo', false);
            } else {
                $http->respond(200, 'hello', $headers);
            }
            break;
        case $path === '/badstatus':
            $http->respond(999, 'nope');
            break;
        default:
            $http->respond(404, "not found: $path\n");
    }
}

/** Each file object gains what the worker sees at tmpName: its bytes and permission bits. */
function inspect_uploads(array $tree): array
{
    if (array_key_exists('tmpName', $tree) && !is_array($tree['tmpName'])) {
        $path = $tree['tmpName'];
        $data = $path !== '' && is_file($path) ? file_get_contents($path) : null;
        // Binary files travel hex-encoded: JSON carries only UTF-8.
        $tree['content'] = $data === null || preg_match('//u', $data) ? $data : 'hex:' . bin2hex($data);
        $tree['perms'] = $path !== '' && is_file($path) ? sprintf('%o', fileperms($path) & 0777) : null;
        return $tree;
    }
    return array_map(fn ($node) => is_array($node) ? inspect_uploads($node) : $node, $tree);
}
