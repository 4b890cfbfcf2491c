<?php
// A worker whose behaviour each request chooses with its body, "command:argument":
//   echo:X      reply X (context echoed too)     pid       reply this process's pid
//   error:MSG   ERROR frame with MSG             sleep:MS  sleep, then reply "slept"
//   crash       exit(7) mid-request              stop      ask to be stopped (re-run elsewhere)
//   stderr:TXT  write TXT to stderr, reply "ok"  leak:MIB  keep MIB more MiB, reply the total
//   stream:N    reply in N chunks "0".."N-1"     garbage   write non-frame bytes to stdout
//   env:NAME    reply the value of $NAME
//   stop_once:DIR  the first worker to create DIR asks to be stopped, later ones reply a pid
declare(strict_types=1);
require __DIR__ . '/../Goridge.php';

$worker = RingRunnerTest\Worker::create();
$leaked = [];
while ($payload = $worker->waitPayload()) {
    [$command, $argument] = array_pad(explode(':', $payload->body, 2), 2, '');
    switch ($command) {
        case 'echo':
            $worker->respond($argument, $payload->context, $payload->codec);
            break;
        case 'env':
            $worker->respond((string) getenv($argument));
            break;
        case 'pid':
            $worker->respond((string) getmypid());
            break;
        case 'error':
            $worker->error($argument);
            break;
        case 'sleep':
            usleep(1000 * (int) $argument);
            $worker->respond('slept');
            break;
        case 'crash':
            exit(7);
        case 'stop':
            $worker->stop();
            break;
        case 'stop_once':
            // The first worker to see this asks to be stopped; the re-run gets a pid.
            if (@mkdir($argument)) {
                $worker->stop();
            } else {
                $worker->respond((string) getmypid());
            }
            break;
        case 'stderr':
            fwrite(STDERR, $argument . "\n");
            $worker->respond('ok');
            break;
        case 'leak':
            $leaked[] = str_repeat('x', 1024 * 1024 * (int) $argument);
            $worker->respond((string) count($leaked));
            break;
        case 'stream':
            $chunks = (int) $argument;
            try {
                for ($i = 0; $i < $chunks; $i++) {
                    $worker->respondChunk((string) $i, $i < $chunks - 1, $i === 0 ? 'ctx' : '');
                }
            } catch (RingRunnerTest\StreamStopped) {
                $worker->respond(''); // confirms the end of the stream (spec §5 rule 7)
            }
            break;
        case 'garbage':
            fwrite(STDOUT, "Warning: something printed to stdout\n");
            fflush(STDOUT);
            break;
        default:
            $worker->respond($payload->body, $payload->context, $payload->codec);
    }
}
