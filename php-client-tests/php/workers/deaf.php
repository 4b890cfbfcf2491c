<?php
// A worker that stops reading its input after the handshake: it answers the pid request,
// then fills its own stdin pipe so that the next frame the server writes to it cannot get
// through, and sleeps without reading. `dd` opens the pipe again for writing through
// /proc (PHP's fopen resolves the link and fails); non-blocking, it writes until the pipe
// is full. Then "stdin full" on stderr and, when an argument names a file, that file.
// Pipes relay only (over a socket relay stdin is /dev/null).
declare(strict_types=1);
require __DIR__ . '/../Goridge.php';

use RingRunnerTest\Frame;
use RingRunnerTest\Relay;

$relay = Relay::fromEnvironment();
$relay->receive(); // the pid request
$relay->send(new Frame(Frame::CONTROL, json_encode(['pid' => getmypid()])));

$stdin = '/proc/' . getmypid() . '/fd/0';
foreach ([65536, 4096, 1] as $block) {
    exec("dd if=/dev/zero of=$stdin bs=$block oflag=nonblock conv=notrunc status=none < /dev/null 2>/dev/null");
}
fwrite(STDERR, "deaf worker " . getmypid() . ": stdin full\n");
if (isset($argv[1])) {
    file_put_contents($argv[1], (string) getmypid());
}
while (true) {
    sleep(60);
}
