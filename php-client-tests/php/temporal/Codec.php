<?php
/**
 * The temporal worker protocol's protobuf messages, hand-encoded from spec/temporal.md
 * (`temporal.v1.Frame`, `Message`) and Temporal's API messages it carries (`Payloads`,
 * `Payload`, `Failure`, `Header`). Test use only: the real SDK is temporal/sdk.
 */
declare(strict_types=1);

namespace RingRunnerTest\Temporal;

require_once __DIR__ . '/../Protobuf.php';

use RingRunnerTest\Protobuf;

/** `temporal.v1.Message`: a request when $command is set, else a response. */
final class Message
{
    public function __construct(
        public int $id = 0,
        public string $command = '',
        public ?array $options = null,
        /** @var mixed[]|null decoded payload values; null = no payloads field */
        public ?array $payloads = null,
        public ?Failure $failure = null,
    ) {
    }

    public function encode(): string
    {
        $out = '';
        if ($this->id !== 0) {
            $out .= Protobuf::varintField(1, $this->id);
        }
        if ($this->command !== '') {
            $out .= Protobuf::field(2, $this->command);
        }
        if ($this->options !== null) {
            $out .= Protobuf::field(3, json_encode((object) $this->options, JSON_THROW_ON_ERROR));
        }
        if ($this->failure !== null) {
            $out .= Protobuf::field(4, $this->failure->encode());
        }
        if ($this->payloads !== null) {
            $out .= Protobuf::field(5, Payloads::encode($this->payloads));
        }
        return $out;
    }

    public static function decode(string $bytes): self
    {
        $message = new self();
        foreach (Protobuf::fields($bytes) as [$number, $value]) {
            match ($number) {
                1 => $message->id = $value,
                2 => $message->command = $value,
                3 => $message->options = $value === '' ? [] : json_decode($value, true, 64, JSON_THROW_ON_ERROR),
                4 => $message->failure = Failure::decode($value),
                5 => $message->payloads = Payloads::decode($value),
                default => null,
            };
        }
        return $message;
    }
}

/** `temporal.v1.Frame`. */
final class FrameCodec
{
    /** @param Message[] $messages */
    public static function encode(array $messages): string
    {
        $out = '';
        foreach ($messages as $message) {
            $out .= Protobuf::field(1, $message->encode());
        }
        return $out;
    }

    /** @return Message[] */
    public static function decode(string $bytes): array
    {
        $messages = [];
        foreach (Protobuf::fields($bytes) as [$number, $value]) {
            if ($number === 1) {
                $messages[] = Message::decode($value);
            }
        }
        return $messages;
    }
}

/** `Payloads` of `json/plain` values (`binary/null` for null), as the SDK's converter does. */
final class Payloads
{
    public static function encode(array $values): string
    {
        $out = '';
        foreach ($values as $value) {
            $payload = $value === null
                ? self::metadata('binary/null')
                : self::metadata('json/plain') . Protobuf::field(2, json_encode($value, JSON_THROW_ON_ERROR));
            $out .= Protobuf::field(1, $payload);
        }
        return $out;
    }

    private static function metadata(string $encoding): string
    {
        return Protobuf::field(1, Protobuf::field(1, 'encoding') . Protobuf::field(2, $encoding));
    }

    public static function decode(string $bytes): array
    {
        $values = [];
        foreach (Protobuf::fields($bytes) as [$number, $payload]) {
            if ($number !== 1) {
                continue;
            }
            $encoding = '';
            $data = '';
            foreach (Protobuf::fields($payload) as [$field, $value]) {
                if ($field === 1) {
                    $entry = Protobuf::fields($value);
                    if (($entry[0][1] ?? '') === 'encoding') {
                        $encoding = $entry[1][1] ?? '';
                    }
                } elseif ($field === 2) {
                    $data = $value;
                }
            }
            $values[] = $encoding === 'json/plain' ? json_decode($data, true, 512, JSON_THROW_ON_ERROR) : null;
        }
        return $values;
    }
}

/** `temporal.api.failure.v1.Failure` (message, source, stack trace, cause, the info kind). */
final class Failure
{
    public function __construct(
        public string $message = '',
        public string $source = 'PHP_SDK',
        public string $stackTrace = '',
        public ?Failure $cause = null,
        /** application type for an application failure; 'canceled' for a cancellation */
        public string $type = '',
        public bool $canceled = false,
    ) {
    }

    public static function fromThrowable(\Throwable $error): self
    {
        return new self($error->getMessage(), 'PHP_SDK', $error->getTraceAsString(), null, $error::class);
    }

    public function encode(): string
    {
        $out = Protobuf::field(1, $this->message) . Protobuf::field(2, $this->source);
        if ($this->stackTrace !== '') {
            $out .= Protobuf::field(3, $this->stackTrace);
        }
        if ($this->cause !== null) {
            $out .= Protobuf::field(4, $this->cause->encode());
        }
        // application_failure_info = 5 { type = 1 }; canceled_failure_info = 7 {}
        $out .= $this->canceled ? Protobuf::field(7, '') : Protobuf::field(5, Protobuf::field(1, $this->type));
        return $out;
    }

    public static function decode(string $bytes): self
    {
        $failure = new self('', '');
        foreach (Protobuf::fields($bytes) as [$number, $value]) {
            match ($number) {
                1 => $failure->message = $value,
                2 => $failure->source = $value,
                3 => $failure->stackTrace = $value,
                4 => $failure->cause = self::decode($value),
                5 => $failure->type = (string) (Protobuf::fields($value)[0][1] ?? ''),
                7 => $failure->canceled = true,
                default => null,
            };
        }
        return $failure;
    }

    /** The innermost cause's message (an activity failure wraps the application failure). */
    public function rootMessage(): string
    {
        return $this->cause !== null ? $this->cause->rootMessage() : $this->message;
    }
}
