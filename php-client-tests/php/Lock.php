<?php
/**
 * A lock client written from the spec (devops § lock), with the API of
 * `roadrunner-php/lock`'s `RoadRunner\Lock\Lock`: the `lock.v1beta1.Request` encoded by hand
 * and sent with the PROTO codec over our goridge RPC client; ttl and wait in seconds,
 * sent as microseconds (rounded); `exists` without an id sends `*`.
 */
declare(strict_types=1);

namespace RingRunnerTest;

require_once __DIR__ . '/Rpc.php';
require_once __DIR__ . '/Protobuf.php';

final class LockClient
{
    public function __construct(private RpcClient $rpc)
    {
    }

    /** The id on success (a uuid4 when none is given), false when the wait ran out. */
    public function lock(string $resource, ?string $id = null, float $ttl = 0, float $wait = 0): string|false
    {
        $id ??= self::uuid4();
        return $this->call('Lock', $resource, $id, $ttl, $wait) ? $id : false;
    }

    public function lockRead(string $resource, ?string $id = null, float $ttl = 0, float $wait = 0): string|false
    {
        $id ??= self::uuid4();
        return $this->call('LockRead', $resource, $id, $ttl, $wait) ? $id : false;
    }

    public function release(string $resource, string $id): bool
    {
        return $this->call('Release', $resource, $id);
    }

    public function forceRelease(string $resource): bool
    {
        return $this->call('ForceRelease', $resource, '');
    }

    public function exists(string $resource, ?string $id = null): bool
    {
        return $this->call('Exists', $resource, $id ?? '*');
    }

    public function updateTTL(string $resource, string $id, float $ttl): bool
    {
        return $this->call('UpdateTTL', $resource, $id, $ttl);
    }

    /** `lock.<method>` with a Request; the Response's `ok`. */
    public function call(string $method, string $resource, string $id, ?float $ttl = null, ?float $wait = null): bool
    {
        // proto3: empty strings are left out; the optional ints are sent when set.
        $request = ($resource === '' ? '' : Protobuf::field(1, $resource))
            . ($id === '' ? '' : Protobuf::field(2, $id));
        if ($ttl !== null) {
            $request .= Protobuf::varintField(3, (int) round($ttl * 1e6));
        }
        if ($wait !== null) {
            $request .= Protobuf::varintField(4, (int) round($wait * 1e6));
        }
        $reply = $this->rpc->call('lock.' . $method, $request, Frame::CODEC_PROTO);
        foreach (Protobuf::fields($reply) as [$number, $value]) {
            if ($number === 1) {
                return $value !== 0;
            }
        }
        return false;
    }

    private static function uuid4(): string
    {
        $bytes = random_bytes(16);
        $bytes[6] = chr((ord($bytes[6]) & 0x0f) | 0x40);
        $bytes[8] = chr((ord($bytes[8]) & 0x3f) | 0x80);
        return vsprintf('%s%s-%s-%s-%s-%s%s%s', str_split(bin2hex($bytes), 4));
    }
}
