<?php
// Checks our PHP goridge client against spec/relay-vectors.json: every vector decodes and
// re-encodes byte for byte. Prints "N passed, M failed" and exits non-zero on a failure.
declare(strict_types=1);
require __DIR__ . '/Goridge.php';

use RingRunnerTest\Frame;

$vectors = json_decode(file_get_contents($argv[1]), true, 64, JSON_THROW_ON_ERROR);
$passed = $failed = 0;
foreach ($vectors as $vector) {
    $wire = hex2bin($vector['hex']);
    $offset = 0;
    $frame = Frame::read(function (int $length) use ($wire, &$offset): string {
        $bytes = substr($wire, $offset, $length);
        $offset += $length;
        return $bytes;
    });
    $fields = $vector['fields'];
    $ok = $frame->encode() === $wire
        && $offset === strlen($wire)
        && $frame->options === $fields['options']
        && $frame->flags === hexdec($fields['flags'])
        && $frame->stream === hexdec($fields['byte10']);
    if ($ok) {
        $passed++;
    } else {
        $failed++;
        fwrite(STDERR, "vector {$vector['name']} failed\n");
    }
}
echo "$passed passed, $failed failed\n";
exit($failed === 0 ? 0 : 1);
