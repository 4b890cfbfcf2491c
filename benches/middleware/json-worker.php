<?php
// A worker answering every request with the same 100 KiB JSON document (a list of records,
// as an API returns), for the gzip benchmark.
declare(strict_types=1);
require __DIR__ . '/../../php-client-tests/php/Http.php';

$records = [];
for ($i = 0; strlen(json_encode($records)) < 100 * 1024; $i++) {
    $records[] = ['id' => $i, 'name' => "user $i", 'email' => "user$i@example.com", 'active' => $i % 3 !== 0, 'score' => $i * 7 % 101];
}
$body = json_encode($records);
$http = RingRunnerTest\HttpWorker::create();
while ($http->waitRequest()) {
    $http->respond(200, $body, ['Content-Type' => 'application/json']);
}
