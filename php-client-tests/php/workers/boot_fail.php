<?php
// Dies before the handshake, as a broken deploy does.
fwrite(STDERR, "PHP Fatal error: Uncaught Error: Class \"App\\Kernel\" not found\n");
exit(3);
