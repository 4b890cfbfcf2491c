<?php
/**
 * One `service.*` call with the protobuf messages `spiral/roadrunner-services` sends,
 * printed as JSON: `php service_call.php DSN METHOD [ARG-JSON]`.
 *   Create {"name", "command", "process_num", "exec_timeout", "remain_after_exit", "env",
 *           "restart_sec", "service_name_in_logs", "timeout_stop_sec"}   → {"ok": true}
 *   Terminate | Restart | Status | Statuses {"name"}   List
 * Errors print `ERROR: <text>` and exit 1.
 */
declare(strict_types=1);

require_once __DIR__ . '/Rpc.php';
require_once __DIR__ . '/Protobuf.php';

use RingRunnerTest\Frame;
use RingRunnerTest\Protobuf as P;
use RingRunnerTest\RpcClient;
use RingRunnerTest\RpcError;

[, $dsn, $method] = $argv;
$arg = isset($argv[3]) ? json_decode($argv[3], true) : [];
$message = match ($method) {
    'Create' => (function (array $c): string {
        $out = P::field(1, $c['name']) . P::field(2, $c['command']);
        $out .= P::varintField(3, $c['process_num'] ?? 1);
        if (!empty($c['exec_timeout'])) { $out .= P::varintField(4, $c['exec_timeout']); }
        if (!empty($c['remain_after_exit'])) { $out .= P::varintField(5, 1); }
        foreach ($c['env'] ?? [] as $key => $value) {
            $out .= P::field(6, P::field(1, (string) $key) . P::field(2, (string) $value));
        }
        if (!empty($c['restart_sec'])) { $out .= P::varintField(7, $c['restart_sec']); }
        if (!empty($c['timeout_stop_sec'])) { $out .= P::varintField(9, $c['timeout_stop_sec']); }
        return $out;
    })($arg),
    'List' => '',
    default => P::field(1, $arg['name'] ?? ''),
};
$status = function (string $bytes): array {
    $out = ['cpu_percent' => 0.0, 'pid' => 0, 'memory_usage' => 0, 'command' => '', 'error' => null];
    foreach (P::fields($bytes) as [$number, $value]) {
        match ($number) {
            1 => $out['cpu_percent'] = $value,
            2 => $out['pid'] = $value,
            3 => $out['memory_usage'] = $value,
            4 => $out['command'] = $value,
            5 => $out['error'] = array_column(P::fields($value), 1, 0)[2] ?? '',
            default => null,
        };
    }
    return $out;
};
try {
    $reply = RpcClient::connect($dsn)->call('service.' . $method, $message, Frame::CODEC_PROTO);
    $result = match ($method) {
        'List' => array_map(fn ($f) => $f[1], P::fields($reply)),
        'Statuses' => array_map(fn ($f) => $status($f[1]), P::fields($reply)),
        'Status' => $status($reply),
        default => ['ok' => (bool) (array_column(P::fields($reply), 1, 0)[2] ?? false)],
    };
    echo json_encode($result), "\n";
} catch (RpcError $error) {
    echo 'ERROR: ', $error->getMessage(), "\n";
    exit(1);
}
