<?php
// Boots like behave.php unless the file named by $BOOT_FAIL_FLAG exists: a deploy that breaks
// while the server runs.
declare(strict_types=1);
$flag = getenv('BOOT_FAIL_FLAG');
if ($flag !== false && file_exists($flag)) {
    fwrite(STDERR, "boot failure requested by $flag\n");
    exit(3);
}
require __DIR__ . '/behave.php';
